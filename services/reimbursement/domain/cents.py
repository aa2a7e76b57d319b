"""PLN amounts: Decimal only, rounded half-up to the grosz once, at the last step of a calculation."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def to_cents(amount: Decimal) -> Decimal:
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def is_cent_amount(amount: Decimal) -> bool:
    """Finite, with no digits below the grosz (1.5, 1.50 and 1.500 all pass; 1.505 does not)."""
    if not amount.is_finite():
        return False
    exponent = amount.normalize().as_tuple().exponent
    return isinstance(exponent, int) and exponent >= -2

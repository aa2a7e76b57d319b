"""Subsidy (dofinansowanie NFZ) and patient share (dopłata pacjenta) of one realisation.

subsidy = min(pieces x price, value limit) x rate, rounded half-up to the grosz once at the end;
patient share = pieces x price - subsidy. Up to the limit the patient pays the share the rate leaves
(30 %, or nothing with a 100 % entitlement); above it, everything over the limit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from .cents import is_cent_amount, to_cents
from .errors import ReimbursementError, RulesNotLoaded
from .orders import GroupCode, normalise_entitlements, require_whole
from .rules import RULE_SETS, RuleSet, rule_set_on


@dataclass(frozen=True)
class Quote:
    rules_valid_from: dt.date
    rate: Decimal  # the NFZ share up to the limit: 0.70 or 1.00
    per_piece_limit: Decimal | None  # None under monthly-limit rules
    value_limit: Decimal  # the whole realisation's limit: pieces x per-piece, or months x monthly
    total: Decimal  # pieces x price: what the products cost
    subsidy: Decimal
    patient_share: Decimal


def price_realisation(
    *,
    group_code: GroupCode,
    pieces: int,
    months: int,
    unit_price: Decimal,
    entitlements: Iterable[str],
    realized_on: dt.date,
    rule_sets: Sequence[RuleSet] = RULE_SETS,
) -> Quote:
    """Price a realisation by the rules in force on ``realized_on``, for every month it supplies.

    ``entitlements`` are the ones in force on the realisation date (see entitlements_in_force),
    not necessarily those the doctor wrote on the order.
    """
    require_whole("pieces", pieces, minimum=1)
    require_whole("months", months, minimum=1)
    _check_unit_price(unit_price)
    codes = normalise_entitlements(entitlements)
    rules = rule_set_on(realized_on, rule_sets)
    if not rules.limits.loaded:
        raise RulesNotLoaded(
            "realized_on",
            f"the reimbursement rules in force on {realized_on} (valid from {rules.valid_from}) have no limit amounts "
            "loaded: the source does not give them, so a realisation on that date cannot be computed until an "
            "operator loads them",
        )
    limit = rules.limits.limit(group_code, pieces=pieces, months=months, entitlements=codes)
    rate = rules.rate_for(group_code.code, codes)
    total = pieces * unit_price
    # Rounding per piece would drift (3 x 0.75 x 70 % is 1.575 -> 1.58, not 3 x 0.53 = 1.59).
    subsidy = to_cents(min(total, limit.amount) * rate)
    return Quote(
        rules_valid_from=rules.valid_from,
        rate=rate,
        per_piece_limit=limit.per_piece,
        value_limit=to_cents(limit.amount),
        total=to_cents(total),
        subsidy=subsidy,
        # From the rounded subsidy, so the two always add up to the total to the grosz.
        patient_share=to_cents(total - subsidy),
    )


def _check_unit_price(unit_price: Decimal) -> None:
    # A float would carry binary noise into every product; the API hands over decimal strings.
    if not isinstance(unit_price, Decimal) or not is_cent_amount(unit_price):
        raise ReimbursementError("unit_price", f"must be an amount in PLN with at most 2 decimal places: {unit_price}")
    if unit_price <= 0:
        raise ReimbursementError("unit_price", f"must be more than 0.00, not {unit_price}")

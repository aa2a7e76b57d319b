"""Dated reimbursement rule sets: what the law said on a given day, as data rather than if-chains.

The rule set in force on the REALISATION DATE applies to the whole realisation, also to months
after a change of law ("liczy się data realizacji całego zaopatrzenia"): a December realisation for
December-February is paid entirely by December's rules.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from types import MappingProxyType

from .cents import is_cent_amount
from .errors import ReimbursementError, RulesNotLoaded
from .orders import GroupCode, ProductCode, ProductGroup

FULL_RATE = Decimal("1.00")


@dataclass(frozen=True)
class ValueLimit:
    """The most money the rate is applied to in one realisation (limit wartościowy)."""

    amount: Decimal
    per_piece: Decimal | None  # None where the law set a monthly limit instead


@dataclass(frozen=True)
class PerPieceLimits:
    """From 2023: a value limit per piece, by full group code (code + product group)."""

    by_group: Mapping[GroupCode, Decimal]

    @property
    def loaded(self) -> bool:
        return True

    def limit(self, group_code: GroupCode, *, pieces: int, months: int, entitlements: frozenset[str]) -> ValueLimit:
        per_piece = self.by_group.get(group_code)
        if per_piece is None:
            raise ReimbursementError("group", f"the rule set has no per-piece limit for {group_code}")
        return ValueLimit(amount=per_piece * pieces, per_piece=per_piece)


@dataclass(frozen=True)
class MonthlyLimits:
    """Before 2023: a value limit per MONTH, higher for some entitlements from a number of pieces.

    The source gives the shape (47ZN had to take at least 91 pieces a month for the higher limit)
    but no amounts, so ``standard`` and ``higher`` stay None until an operator loads them.
    """

    higher_entitlements: frozenset[str]
    higher_min_pieces_per_month: int
    standard: Decimal | None = None
    higher: Decimal | None = None

    @property
    def loaded(self) -> bool:
        return self.standard is not None and self.higher is not None

    def limit(self, group_code: GroupCode, *, pieces: int, months: int, entitlements: frozenset[str]) -> ValueLimit:
        if self.standard is None or self.higher is None:
            raise RulesNotLoaded("realized_on", "the monthly limit amounts of these rules have not been loaded")
        # The source counts pieces "a month"; a realisation for several months is judged by its
        # average, so 182 pieces for two months reach the higher limit exactly as 91 for one.
        reaches_higher = bool(entitlements & self.higher_entitlements) and (
            pieces >= self.higher_min_pieces_per_month * months
        )
        monthly = self.higher if reaches_higher else self.standard
        return ValueLimit(amount=monthly * months, per_piece=None)


@dataclass(frozen=True)
class RuleSet:
    """Everything that decides a realisation's money and size, valid from ``valid_from`` on."""

    valid_from: dt.date
    basis: str  # where the rules come from, for an operator reading the table
    max_months_per_realisation: int
    rates: Mapping[ProductCode, Decimal]  # NFZ share up to the limit without a 100 % entitlement
    full_rate_entitlements: frozenset[str]
    limits: PerPieceLimits | MonthlyLimits

    def rate_for(self, code: ProductCode, entitlements: frozenset[str]) -> Decimal:
        return FULL_RATE if entitlements & self.full_rate_entitlements else self.rates[code]


def _per_piece_table(by_group: Mapping[ProductGroup, str]) -> Mapping[GroupCode, Decimal]:
    # The source lists P.100.X and P.101.X side by side with one amount: the code no longer matters.
    return MappingProxyType(
        {GroupCode(code, group): Decimal(amount) for code in ProductCode for group, amount in by_group.items()}
    )


# The source names these "np." (for example) as the entitlements paid 100 % up to the limit, both
# before 2023 ("w dalszym ciągu") and after; an operator extends this set when the law names more.
FULL_RATE_ENTITLEMENTS = frozenset({"47OR", "47IB", "47IW"})

RULES_2020 = RuleSet(
    valid_from=dt.date(2020, 1, 1),
    basis=(
        "eZWM FAQ: from January 2020 one realisation may cover 4, 5 or 6 months; until 2022-12-31 P.100 paid "
        "in full up to the limit, P.101 patients paid 30 %; the limit was monthly, 47ZN reached the higher "
        "limit from 91 pieces a month. Amounts not given by the source: loaded by an operator."
    ),
    max_months_per_realisation=6,
    rates=MappingProxyType({ProductCode.P100: FULL_RATE, ProductCode.P101: Decimal("0.70")}),
    full_rate_entitlements=FULL_RATE_ENTITLEMENTS,
    limits=MonthlyLimits(higher_entitlements=frozenset({"47ZN"}), higher_min_pieces_per_month=91),
)

RULES_2023 = RuleSet(
    valid_from=dt.date(2023, 1, 1),
    basis="eZWM FAQ 'Nowe limity obowiązujące od 1 stycznia 2023 r.': per-piece limits, 30 % patient share",
    max_months_per_realisation=6,
    rates=MappingProxyType({ProductCode.P100: Decimal("0.70"), ProductCode.P101: Decimal("0.70")}),
    full_rate_entitlements=FULL_RATE_ENTITLEMENTS,
    limits=PerPieceLimits(
        _per_piece_table(
            {
                ProductGroup.PW: "1.00",
                ProductGroup.MCH1: "1.70",
                ProductGroup.PP: "1.70",
                ProductGroup.MCH2: "2.30",
                ProductGroup.PM2: "2.30",
            }
        )
    ),
)

RULE_SETS: tuple[RuleSet, ...] = (RULES_2020, RULES_2023)


def rule_set_on(day: dt.date, rule_sets: Sequence[RuleSet] = RULE_SETS) -> RuleSet:
    """The rule set in force on ``day``: the latest one whose ``valid_from`` is not after it."""
    in_force = [r for r in rule_sets if r.valid_from <= day]
    if not in_force:
        earliest = min((r.valid_from for r in rule_sets), default=None)
        raise ReimbursementError("realized_on", f"no reimbursement rules are known for {day} (earliest: {earliest})")
    return max(in_force, key=lambda r: r.valid_from)


def with_monthly_amounts(rule_set: RuleSet, *, standard: Decimal, higher: Decimal) -> RuleSet:
    """The operator's load of the pre-2023 monthly limit amounts into a rule set of that shape."""
    if not isinstance(rule_set.limits, MonthlyLimits):
        raise ReimbursementError("limits", f"the rules from {rule_set.valid_from} have no monthly limits to load")
    for name, amount in (("standard", standard), ("higher", higher)):
        if not is_cent_amount(amount) or amount <= 0:
            raise ReimbursementError(name, f"must be a positive amount in PLN with at most 2 decimal places: {amount}")
    if higher < standard:
        raise ReimbursementError("higher", "the higher monthly limit must not be below the standard one")
    return replace(rule_set, limits=replace(rule_set.limits, standard=standard, higher=higher))


def replace_rule_set(rule_sets: Iterable[RuleSet], new: RuleSet) -> tuple[RuleSet, ...]:
    """The table with ``new`` in place of the set valid from the same day (or added)."""
    return tuple(sorted([r for r in rule_sets if r.valid_from != new.valid_from] + [new], key=lambda r: r.valid_from))

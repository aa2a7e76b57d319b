"""Subsidy and patient share: the source's examples, every group x entitlement class x price below /
at / above the limit, half-up rounding once at the end, the dated rule sets and the 2023 switch."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.reimbursement.domain import (
    FULL_RATE_ENTITLEMENTS,
    RULE_SETS,
    RULES_2020,
    RULES_2023,
    GroupCode,
    MonthlyLimits,
    PerPieceLimits,
    ProductCode,
    ProductGroup,
    ReimbursementError,
    RulesNotLoaded,
    price_realisation,
    replace_rule_set,
    rule_set_on,
    with_monthly_amounts,
)

D = Decimal
IN_2023 = dt.date(2023, 3, 15)


def gc(text: str) -> GroupCode:
    return GroupCode.parse(text)


def quote(group: str, pieces: int, price: str, entitlements: tuple[str, ...] = (), **kw: Any) -> Any:
    defaults: dict[str, Any] = {"months": 1, "realized_on": IN_2023}
    return price_realisation(
        group_code=gc(group), pieces=pieces, unit_price=D(price), entitlements=entitlements, **{**defaults, **kw}
    )


# ----------------------------------------------------------------------------- the source's examples


def test_source_example_price_below_the_limit_is_subsidised_at_seventy_percent() -> None:
    # "0,80 zł x 70% = 0,56 zł" per piece.
    q = quote("P.100.PW", 1, "0.80")
    assert (q.subsidy, q.patient_share, q.total) == (D("0.56"), D("0.24"), D("0.80"))
    assert q.per_piece_limit == D("1.00")
    assert q.rate == D("0.70")


def test_domain_example_180_pieces_at_1_50_in_mch1() -> None:
    # DOMAIN.md's worked example (not in the source itself, but it follows from it).
    q = quote("P.100.MCH1", 180, "1.50", months=3)
    assert (q.subsidy, q.patient_share) == (D("189.00"), D("81.00"))
    assert q.value_limit == D("306.00")


@pytest.mark.parametrize(
    ("group", "limit"),
    [
        ("P.100.PW", "1.00"),
        ("P.101.PW", "1.00"),
        ("P.100.MCH1", "1.70"),
        ("P.100.PP", "1.70"),
        ("P.101.MCH1", "1.70"),
        ("P.101.PP", "1.70"),
        ("P.100.MCH2", "2.30"),
        ("P.100.PM2", "2.30"),
        ("P.101.MCH2", "2.30"),
        ("P.101.PM2", "2.30"),
    ],
)
def test_the_2023_per_piece_limit_table(group: str, limit: str) -> None:
    assert quote(group, 1, "0.50").per_piece_limit == D(limit)
    assert isinstance(RULES_2023.limits, PerPieceLimits)
    assert RULES_2023.limits.by_group[gc(group)] == D(limit)


def test_the_2023_table_covers_every_full_group_code_and_nothing_else() -> None:
    assert isinstance(RULES_2023.limits, PerPieceLimits)
    assert set(RULES_2023.limits.by_group) == {GroupCode(c, g) for c in ProductCode for g in ProductGroup}


# ----------------------------------------------------------------------------- the full table

# 90 pieces; per limit class: (price, total, subsidy 70 %, patient 70 %, subsidy 100 %, patient 100 %).
TABLE = {
    "1.00": [
        ("0.80", "72.00", "50.40", "21.60", "72.00", "0.00"),  # below the limit
        ("1.00", "90.00", "63.00", "27.00", "90.00", "0.00"),  # at the limit
        ("1.25", "112.50", "63.00", "49.50", "90.00", "22.50"),  # above: the excess is the patient's
    ],
    "1.70": [
        ("1.50", "135.00", "94.50", "40.50", "135.00", "0.00"),
        ("1.70", "153.00", "107.10", "45.90", "153.00", "0.00"),
        ("2.10", "189.00", "107.10", "81.90", "153.00", "36.00"),
    ],
    "2.30": [
        ("1.99", "179.10", "125.37", "53.73", "179.10", "0.00"),
        ("2.30", "207.00", "144.90", "62.10", "207.00", "0.00"),
        ("2.75", "247.50", "144.90", "102.60", "207.00", "40.50"),
    ],
}
LIMIT_OF = {"PW": "1.00", "MCH1": "1.70", "PP": "1.70", "MCH2": "2.30", "PM2": "2.30"}
SEVENTY = [(), ("47ZN",), ("47DN",), ("47ZND",), ("47ZN", "47DN"), ("99XX",)]
FULL = [("47OR",), ("47IB",), ("47IW",), ("47ZN", "47or"), (" 47iw ",)]

CASES = [
    pytest.param(
        f"{code.value}.{group}",
        ents,
        price,
        total,
        s70,
        p70,
        s100,
        p100,
        id=f"{code.value}.{group}-{price}-{'+'.join(ents) or 'none'}",
    )
    for code in ProductCode
    for group, limit in LIMIT_OF.items()
    for price, total, s70, p70, s100, p100 in TABLE[limit]
    for ents in SEVENTY + FULL
]


@pytest.mark.parametrize(("group", "ents", "price", "total", "s70", "p70", "s100", "p100"), CASES)
def test_every_group_entitlement_class_and_price_position(
    group: str, ents: tuple[str, ...], price: str, total: str, s70: str, p70: str, s100: str, p100: str
) -> None:
    q = quote(group, 90, price, ents)
    full = ents in FULL
    assert q.rate == (D("1.00") if full else D("0.70"))
    assert q.total == D(total)
    assert q.subsidy == D(s100 if full else s70)
    assert q.patient_share == D(p100 if full else p70)
    assert q.subsidy + q.patient_share == q.total
    assert q.rules_valid_from == dt.date(2023, 1, 1)


def test_the_full_rate_entitlements_are_the_ones_the_source_names() -> None:
    assert frozenset({"47OR", "47IB", "47IW"}) == FULL_RATE_ENTITLEMENTS
    assert RULES_2023.full_rate_entitlements == RULES_2020.full_rate_entitlements == FULL_RATE_ENTITLEMENTS


# ----------------------------------------------------------------------------- rounding


@pytest.mark.parametrize(
    ("group", "pieces", "price", "subsidy", "patient"),
    [
        ("P.100.PW", 1, "0.75", "0.53", "0.22"),  # 0.525: half-up, where half-even would give 0.52
        ("P.100.PW", 3, "0.75", "1.58", "0.67"),  # 1.575 once; per piece it would be 3 x 0.53 = 1.59
        ("P.100.PW", 7, "0.83", "4.07", "1.74"),  # 4.067
        ("P.101.MCH1", 7, "1.69", "8.28", "3.55"),  # 8.281
        ("P.101.MCH2", 7, "2.29", "11.22", "4.81"),  # 11.221
        ("P.101.PM2", 7, "2.31", "11.27", "4.90"),  # above: 7 x 2.30 x 0.7 = 11.27 exactly
        ("P.100.PP", 1, "0.01", "0.01", "0.00"),  # 0.007
        ("P.100.PP", 1, "0.02", "0.01", "0.01"),  # 0.014
    ],
)
def test_rounding_is_half_up_once_at_the_end(group: str, pieces: int, price: str, subsidy: str, patient: str) -> None:
    q = quote(group, pieces, price)
    assert (q.subsidy, q.patient_share) == (D(subsidy), D(patient))


def test_amounts_always_carry_two_decimal_places() -> None:
    q = quote("P.100.PW", 10, "1")
    assert [str(v) for v in (q.total, q.subsidy, q.patient_share, q.value_limit)] == ["10.00", "7.00", "3.00", "10.00"]


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"unit_price": D("0")}, "unit_price", "more than 0.00"),
        ({"unit_price": D("-1.00")}, "unit_price", "more than 0.00"),
        ({"unit_price": D("1.005")}, "unit_price", "2 decimal places"),
        ({"unit_price": D("NaN")}, "unit_price", "2 decimal places"),
        ({"unit_price": D("Infinity")}, "unit_price", "2 decimal places"),
        ({"unit_price": 1.5}, "unit_price", "2 decimal places"),
        ({"pieces": 0}, "pieces", "at least 1"),
        ({"pieces": True}, "pieces", "whole number"),
        ({"months": 0}, "months", "at least 1"),
        ({"entitlements": ["47 OR"]}, "entitlements", "entitlement code"),
    ],
)
def test_bad_money_input_names_its_field(changes: dict[str, Any], field: str, fragment: str) -> None:
    kwargs: dict[str, Any] = {
        "group_code": gc("P.100.PW"),
        "pieces": 1,
        "months": 1,
        "unit_price": D("1.00"),
        "entitlements": (),
        "realized_on": IN_2023,
    }
    with pytest.raises(ReimbursementError) as caught:
        price_realisation(**{**kwargs, **changes})
    assert caught.value.field == field
    assert fragment in caught.value.message


def test_a_price_written_with_trailing_zeros_is_fine() -> None:
    assert quote("P.100.PW", 2, "0.800").subsidy == D("1.12")


# ----------------------------------------------------------------------------- dated rule sets

# Invented amounts for the tests only: the source gives none for the old monthly limits.
OLD_STANDARD = D("77.00")
OLD_HIGHER = D("120.00")
LOADED = replace_rule_set(RULE_SETS, with_monthly_amounts(RULES_2020, standard=OLD_STANDARD, higher=OLD_HIGHER))
LAST_OLD_DAY = dt.date(2022, 12, 31)
FIRST_NEW_DAY = dt.date(2023, 1, 1)


def test_the_rule_table_is_dated_and_ordered() -> None:
    assert [r.valid_from for r in RULE_SETS] == [dt.date(2020, 1, 1), dt.date(2023, 1, 1)]
    assert rule_set_on(LAST_OLD_DAY) is RULES_2020
    assert rule_set_on(FIRST_NEW_DAY) is RULES_2023
    assert rule_set_on(dt.date(2035, 6, 1)) is RULES_2023
    assert rule_set_on(FIRST_NEW_DAY, tuple(reversed(RULE_SETS))) is RULES_2023  # order of the table is irrelevant
    for rules in RULE_SETS:
        assert set(rules.rates) == set(ProductCode)
        assert all(D("0") < rate <= D("1") for rate in rules.rates.values())


def test_until_amounts_are_loaded_a_2022_realisation_is_refused_saying_so() -> None:
    with pytest.raises(RulesNotLoaded) as caught:
        quote("P.100.MCH1", 60, "1.20", realized_on=LAST_OLD_DAY)
    assert caught.value.field == "realized_on"
    assert caught.value.message == (
        "the reimbursement rules in force on 2022-12-31 (valid from 2020-01-01) have no limit amounts loaded: "
        "the source does not give them, so a realisation on that date cannot be computed until an operator loads them"
    )
    assert isinstance(caught.value, ReimbursementError)


def test_the_switch_at_2023_01_01_without_old_amounts() -> None:
    with pytest.raises(RulesNotLoaded):
        quote("P.100.MCH1", 60, "1.20", realized_on=LAST_OLD_DAY)
    q = quote("P.100.MCH1", 60, "1.20", realized_on=FIRST_NEW_DAY)
    assert (q.rate, q.subsidy, q.patient_share) == (D("0.70"), D("50.40"), D("21.60"))


def test_the_switch_at_2023_01_01_with_old_amounts_loaded() -> None:
    # P.100 paid nothing up to the limit until 2022-12-31, 30 % from 2023-01-01.
    old = quote("P.100.MCH1", 60, "1.20", realized_on=LAST_OLD_DAY, rule_sets=LOADED)
    new = quote("P.100.MCH1", 60, "1.20", realized_on=FIRST_NEW_DAY, rule_sets=LOADED)
    assert (old.rules_valid_from, old.rate, old.subsidy, old.patient_share) == (
        dt.date(2020, 1, 1),
        D("1.00"),
        D("72.00"),
        D("0.00"),
    )
    assert old.per_piece_limit is None
    assert old.value_limit == OLD_STANDARD
    assert (new.rules_valid_from, new.rate, new.subsidy, new.patient_share) == (
        dt.date(2023, 1, 1),
        D("0.70"),
        D("50.40"),
        D("21.60"),
    )


def test_a_december_to_february_realisation_done_in_december_uses_december_rules_throughout() -> None:
    # 180 x 1.50 = 270.00 against 3 x 77.00 = 231.00 of monthly limit; P.101 pays 30 % and the excess.
    december = quote("P.101.MCH1", 180, "1.50", months=3, realized_on=dt.date(2022, 12, 20), rule_sets=LOADED)
    assert (december.value_limit, december.subsidy, december.patient_share) == (D("231.00"), D("161.70"), D("108.30"))
    january = quote("P.101.MCH1", 180, "1.50", months=3, realized_on=dt.date(2023, 1, 2), rule_sets=LOADED)
    assert (january.subsidy, january.patient_share) == (D("189.00"), D("81.00"))


@pytest.mark.parametrize(
    ("group", "ents", "pieces", "months", "price", "limit", "subsidy", "patient"),
    [
        ("P.100.PW", (), 60, 1, "1.20", "77.00", "72.00", "0.00"),  # P.100: nothing to pay up to the limit
        ("P.100.MCH2", (), 90, 1, "1.00", "77.00", "77.00", "13.00"),  # ... and the excess above it
        ("P.101.PW", (), 60, 1, "1.20", "77.00", "50.40", "21.60"),  # P.101: 30 %
        ("P.101.PW", (), 90, 1, "1.00", "77.00", "53.90", "36.10"),
        ("P.101.PW", ("47OR",), 90, 1, "1.00", "77.00", "77.00", "13.00"),  # 100 % entitlement then too
        ("P.101.PW", ("47ZN",), 90, 1, "1.20", "77.00", "53.90", "54.10"),  # 90 pieces: standard limit
        ("P.101.PW", ("47ZN",), 91, 1, "1.20", "120.00", "76.44", "32.76"),  # 91: the higher limit
        ("P.100.PW", ("47ZN",), 91, 1, "1.40", "120.00", "120.00", "7.40"),
        ("P.101.PW", ("47ZN",), 181, 2, "1.20", "154.00", "107.80", "109.40"),  # 2 months need 182
        ("P.101.PW", ("47ZN",), 182, 2, "1.20", "240.00", "152.88", "65.52"),
        ("P.101.PW", ("47DN",), 91, 1, "1.20", "77.00", "53.90", "55.30"),  # only 47ZN reaches it
    ],
)
def test_pre_2023_rules_with_amounts_loaded(
    group: str, ents: tuple[str, ...], pieces: int, months: int, price: str, limit: str, subsidy: str, patient: str
) -> None:
    q = quote(group, pieces, price, ents, months=months, realized_on=dt.date(2022, 6, 15), rule_sets=LOADED)
    assert (q.value_limit, q.subsidy, q.patient_share) == (D(limit), D(subsidy), D(patient))
    assert q.subsidy + q.patient_share == q.total


def test_the_old_rule_set_keeps_what_the_source_says() -> None:
    assert isinstance(RULES_2020.limits, MonthlyLimits)
    assert RULES_2020.limits.higher_entitlements == frozenset({"47ZN"})
    assert RULES_2020.limits.higher_min_pieces_per_month == 91
    assert (RULES_2020.limits.standard, RULES_2020.limits.higher) == (None, None)
    assert not RULES_2020.limits.loaded
    assert RULES_2020.rates == {ProductCode.P100: D("1.00"), ProductCode.P101: D("0.70")}
    assert RULES_2023.rates == {ProductCode.P100: D("0.70"), ProductCode.P101: D("0.70")}


def test_a_rule_set_passed_in_directly_is_used() -> None:
    amounts = MonthlyLimits(frozenset({"47ZN"}), 91, standard=D("50.00"), higher=D("80.00"))
    rules = (dataclasses.replace(RULES_2020, limits=amounts), RULES_2023)
    q = quote("P.101.PW", 60, "1.00", realized_on=dt.date(2021, 5, 5), rule_sets=rules)
    assert (q.subsidy, q.patient_share) == (D("35.00"), D("25.00"))


@pytest.mark.parametrize(
    ("standard", "higher", "field"),
    [
        ("0", "120.00", "standard"),
        ("-1.00", "120.00", "standard"),
        ("77.001", "120.00", "standard"),
        ("77.00", "NaN", "higher"),
        ("77.00", "76.99", "higher"),
    ],
)
def test_loading_old_amounts_checks_them(standard: str, higher: str, field: str) -> None:
    with pytest.raises(ReimbursementError) as caught:
        with_monthly_amounts(RULES_2020, standard=D(standard), higher=D(higher))
    assert caught.value.field == field


def test_monthly_amounts_cannot_be_loaded_into_per_piece_rules() -> None:
    with pytest.raises(ReimbursementError, match="no monthly limits"):
        with_monthly_amounts(RULES_2023, standard=OLD_STANDARD, higher=OLD_HIGHER)


def test_loading_leaves_the_shipped_table_untouched() -> None:
    assert not rule_set_on(LAST_OLD_DAY).limits.loaded
    assert rule_set_on(LAST_OLD_DAY, LOADED).limits.loaded


def test_before_2020_no_rules_are_known() -> None:
    with pytest.raises(ReimbursementError, match="no reimbursement rules are known for 2019-12-31") as caught:
        quote("P.100.PW", 1, "1.00", realized_on=dt.date(2019, 12, 31), rule_sets=LOADED)
    assert caught.value.field == "realized_on"


# ----------------------------------------------------------------------------- properties

group_codes = st.sampled_from([GroupCode(c, g) for c in ProductCode for g in ProductGroup])
prices = st.integers(1, 100_000).map(lambda cents: D(cents) / 100)
entitlement_sets = st.sampled_from([(), ("47ZN",), ("47DN",), ("47OR",), ("47IB",), ("47IW",), ("47ZND", "47IW")])
days_2023_on = st.dates(dt.date(2023, 1, 1), dt.date(2040, 12, 31))
days_any = st.dates(dt.date(2020, 1, 1), dt.date(2040, 12, 31))


@given(group_codes, st.integers(1, 2000), st.integers(1, 6), prices, entitlement_sets, days_2023_on)
def test_subsidy_and_patient_share_add_up_and_stay_in_bounds(
    group_code: GroupCode, pieces: int, months: int, price: Decimal, ents: tuple[str, ...], day: dt.date
) -> None:
    q = price_realisation(
        group_code=group_code, pieces=pieces, months=months, unit_price=price, entitlements=ents, realized_on=day
    )
    assert q.subsidy + q.patient_share == pieces * price  # to the grosz, exactly
    assert q.subsidy >= 0
    assert q.patient_share >= 0
    assert q.per_piece_limit is not None
    assert q.subsidy <= pieces * q.per_piece_limit * q.rate + D("0.005")
    assert q.subsidy <= pieces * price * q.rate + D("0.005")
    assert q.subsidy == q.subsidy.quantize(D("0.01"))


@given(group_codes, st.integers(1, 2000), st.integers(1, 6), prices, entitlement_sets, days_any)
def test_under_any_rule_set_the_shares_add_up(
    group_code: GroupCode, pieces: int, months: int, price: Decimal, ents: tuple[str, ...], day: dt.date
) -> None:
    q = price_realisation(
        group_code=group_code,
        pieces=pieces,
        months=months,
        unit_price=price,
        entitlements=ents,
        realized_on=day,
        rule_sets=LOADED,
    )
    assert q.subsidy + q.patient_share == q.total == pieces * price
    assert D("0") <= q.subsidy <= q.value_limit * q.rate + D("0.005")


@given(group_codes, st.integers(1, 500), prices, prices)
def test_a_higher_price_never_lowers_the_subsidy(group_code: GroupCode, pieces: int, a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))
    q_low = price_realisation(
        group_code=group_code, pieces=pieces, months=1, unit_price=low, entitlements=(), realized_on=IN_2023
    )
    q_high = price_realisation(
        group_code=group_code, pieces=pieces, months=1, unit_price=high, entitlements=(), realized_on=IN_2023
    )
    assert q_low.subsidy <= q_high.subsidy

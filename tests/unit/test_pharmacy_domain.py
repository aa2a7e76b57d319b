"""Psychoactive OTC sale rules as pure functions: multiplier, dated limits, the sale check, the CSV file."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.pharmacy import messages
from services.pharmacy.catalogue_csv import CsvFileError, parse_catalogue
from services.pharmacy.domain import (
    Content,
    Decision,
    LimitRule,
    LimitTable,
    Policy,
    ProductCard,
    SaleCheck,
    SaleLine,
    canonical_substance,
    check_sale,
    content_figures,
    looks_like_limited,
    multiplier,
    rounded,
)

D = Decimal
IN_FORCE = dt.date(2017, 1, 1)
SALE_DAY = dt.date(2025, 3, 1)
BEFORE_2017 = dt.date(2016, 6, 1)
AFTER_2017 = dt.date(2018, 6, 1)
RULES = [
    LimitRule("pseudoephedrine", D(720), IN_FORCE),
    LimitRule("codeine", D(240), IN_FORCE),
    LimitRule("dextromethorphan", D(360), IN_FORCE),
]
LIMITS = LimitTable(RULES)
ALL_POLICIES = list(Policy)
ask, block, off, warn_from_card = Policy.ask, Policy.block, Policy.off, Policy.warn_from_card
allow, warn, refuse = Decision.allow, Decision.warn, Decision.block


def card(name: str, *contents: tuple[str, str | None], marketed_on: dt.date = AFTER_2017) -> ProductCard:
    return ProductCard(
        f"id-{name}-{marketed_on}",
        name,
        marketed_on,
        tuple(Content(s, D(mg) if mg is not None else None) for s, mg in contents),
    )


# Advil Zatoki: 4 tablets of 30 mg pseudoephedrine = 120 mg a package, multiplier 1/6 (0.16667).
ADVIL = card("Advil Zatoki", ("pseudoephedrine", "120"), ("ibuprofen", "800"))
ADVIL_2016 = card("Advil Zatoki", ("pseudoephedrine", "120"), ("ibuprofen", "800"), marketed_on=BEFORE_2017)
# One package alone over the limit (900 mg > 720 mg).
STRONG_2016 = card("Sudafed Max", ("pseudoephedrine", "900"), marketed_on=BEFORE_2017)
STRONG_2018 = card("Sudafed Max", ("pseudoephedrine", "900"), marketed_on=AFTER_2017)
# Two limited substances and one that is not: 12 tablets of 30 mg PSE + 10 mg DXM + 325 mg paracetamol.
GRIPEX = card("Gripex", ("pseudoephedrine", "360"), ("dextromethorphan", "120"), ("paracetamol", "3900"))
THIOCODIN = card("Thiocodin", ("codeine", "150"), ("sulfogaiacol", "3000"))  # 10 × 15 mg codeine
ACODIN = card("Acodin", ("dextromethorphan", "150"))  # 10 × 15 mg DXM
UNFILLED = card("Syrop z kodeiną", ("codeine", None))
IBUPROM = card("Ibuprom", ("ibuprofen", "2400"))


def check(
    *lines: tuple[ProductCard, int],
    policy: Policy = ask,
    age: int = 30,
    confirmed: bool = False,
    on: dt.date = SALE_DAY,
    limits: LimitTable = LIMITS,
) -> SaleCheck:
    return check_sale(
        [SaleLine(product, packages) for product, packages in lines],
        buyer_age=age,
        policy=policy,
        confirmed=confirmed,
        on=on,
        limits=limits,
    )


def keys(result: SaleCheck) -> list[str]:
    return [r.key for r in result.reasons]


def total(result: SaleCheck, substance: str) -> Decimal:
    return next(t.total_multiplier for t in result.substances if t.substance == substance)


# ----------------------------------------------------------------------------- multiplier


def test_the_advil_zatoki_multiplier_of_the_source() -> None:
    assert multiplier(D(30 * 4), D(720)) == Fraction(1, 6)
    assert rounded(multiplier(D(120), D(720))) == D("0.16667")


def test_six_packages_are_exactly_the_limit_although_six_rounded_multipliers_are_not() -> None:
    assert 6 * rounded(multiplier(D(120), D(720))) == D("1.00002")  # the trap of comparing rounded values
    six = check((ADVIL, 6), policy=block)
    assert six.decision == allow
    assert total(six, "pseudoephedrine") == D("1.00000")
    seven = check((ADVIL, 7), policy=block)
    assert seven.decision == refuse
    assert total(seven, "pseudoephedrine") == D("1.16667")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (Fraction(1, 6), D("0.16667")),
        (Fraction(1, 3), D("0.33333")),
        (Fraction(2, 3), D("0.66667")),
        (Fraction(1, 200_000), D("0.00001")),  # exactly half a unit in the last place rounds up
        (Fraction(1, 300_000), D("0.00000")),
        (Fraction(5, 4), D("1.25000")),
        (Fraction(0), D("0.00000")),
        (Fraction(75, 240), D("0.31250")),  # codeine 10 × 7.5 mg
    ],
)
def test_multipliers_are_rounded_half_up_to_five_places_for_display(value: Fraction, shown: Decimal) -> None:
    assert rounded(value) == shown
    assert rounded(value).as_tuple().exponent == -5


def test_a_negative_multiplier_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="never negative"):
        rounded(Fraction(-1, 6))


def test_decimal_milligrams_stay_exact() -> None:
    assert multiplier(D("7.5") * 32, D(240)) == 1  # 32 × 7.5 mg codeine is exactly 240 mg
    assert multiplier(D("0.1") * 3, D("0.3")) == 1  # no binary floating point anywhere


def test_card_figures_for_a_limited_an_unlimited_and_an_unfilled_substance() -> None:
    limited = content_figures(Content("pseudoephedrine", D(120)), LIMITS, SALE_DAY)
    assert (limited.max_mg, limited.multiplier) == (D(720), D("0.16667"))
    unlimited = content_figures(Content("ibuprofen", D(800)), LIMITS, SALE_DAY)
    assert (unlimited.max_mg, unlimited.multiplier) == (None, None)
    unfilled = content_figures(Content("codeine", None), LIMITS, SALE_DAY)
    assert (unfilled.max_mg, unfilled.multiplier) == (D(240), None)
    before_the_law = content_figures(Content("codeine", D(120)), LIMITS, dt.date(2016, 12, 31))
    assert (before_the_law.max_mg, before_the_law.multiplier) == (None, None)


# ----------------------------------------------------------------------------- substances


@pytest.mark.parametrize(
    ("given_name", "key"),
    [
        ("Pseudoephedrinum", "pseudoephedrine"),
        ("Pseudoephedrinium", "pseudoephedrine"),  # as spelt in the KS-AOW manual
        ("pseudoefedryna", "pseudoephedrine"),
        ("PSEUDOEPHEDRINE", "pseudoephedrine"),
        ("  Pseudoephedrini   hydrochloridum ", "pseudoephedrine"),
        ("Codeinum", "codeine"),
        ("kodeina", "codeine"),
        ("Codeini phosphas hemihydricus", "codeine"),
        ("Dextromethorphanum", "dextromethorphan"),
        ("dekstrometorfan", "dextromethorphan"),
        ("Dextromethorphani hydrobromidum", "dextromethorphan"),
        ("Paracetamol", "paracetamol"),
        ("Ibuprofenum", "ibuprofenum"),
    ],
)
def test_substance_names_map_to_one_key(given_name: str, key: str) -> None:
    assert canonical_substance(given_name) == key


@pytest.mark.parametrize(
    ("given_name", "meant"),
    [
        ("pseudoefedrine", "pseudoephedrine"),
        ("Pseudoephedrine sulphate", "pseudoephedrine"),  # an unlisted salt of a limited substance
        ("codein", "codeine"),
        ("Codeinum phosphoricum", "codeine"),
        ("dextromethorphane", "dextromethorphan"),
    ],
)
def test_a_misspelt_limited_substance_is_caught(given_name: str, meant: str) -> None:
    assert looks_like_limited(given_name) == meant


@pytest.mark.parametrize(
    "given_name",
    [
        "Pseudoephedrinum",
        "codeine phosphate",
        "phenylephrine",
        "Phenylephrini hydrochloridum",
        "ephedrine",
        "Ephedrinum",
        "Ephedrini hydrochloridum",
        "dihydrocodeine",
        "Pholcodinum",
        "levomethorphan",
        "paracetamol",
        "ibuprofen",
        "",
    ],
)
def test_other_substances_are_not_taken_for_limited_ones(given_name: str) -> None:
    assert looks_like_limited(given_name) is None


def test_a_substance_limited_only_by_data_is_also_guarded_against_typos() -> None:
    assert looks_like_limited("ephedrin", frozenset({"ephedrine"})) == "ephedrine"
    assert looks_like_limited("ephedrine", frozenset({"ephedrine"})) is None


# ----------------------------------------------------------------------------- the dated rule table


def test_the_rule_in_force_is_the_newest_one_started_by_the_sale_day() -> None:
    stricter = LimitRule("pseudoephedrine", D(480), dt.date(2030, 1, 1))
    table = LimitTable([stricter, *RULES])  # order of the rows does not matter
    assert table.in_force("pseudoephedrine", dt.date(2016, 12, 31)) is None
    assert table.in_force("pseudoephedrine", IN_FORCE) == RULES[0]
    assert table.in_force("pseudoephedrine", dt.date(2029, 12, 31)) == RULES[0]
    assert table.in_force("pseudoephedrine", dt.date(2030, 1, 1)) == stricter
    assert table.in_force("codeine", dt.date(2031, 1, 1)) == RULES[1]
    assert table.in_force("ibuprofen", SALE_DAY) is None
    assert table.substances == {"pseudoephedrine", "codeine", "dextromethorphan"}
    assert table.starts_on == IN_FORCE
    assert LimitTable([]).starts_on is None


def test_a_sale_before_a_change_of_law_uses_the_old_rule() -> None:
    table = LimitTable([*RULES, LimitRule("pseudoephedrine", D(480), dt.date(2030, 1, 1))])
    five = (ADVIL, 5)  # 600 mg
    old = check(five, policy=block, on=dt.date(2029, 12, 31), limits=table)
    assert old.decision == allow
    assert total(old, "pseudoephedrine") == D("0.83333")
    new = check(five, policy=block, on=dt.date(2030, 1, 1), limits=table)
    assert new.decision == refuse
    assert keys(new) == ["limit_exceeded"]
    assert "480 mg" in new.reasons[0].en
    assert total(new, "pseudoephedrine") == D("1.25000")


def test_a_new_substance_is_limited_by_a_row_of_data_alone() -> None:
    table = LimitTable([*RULES, LimitRule("ephedrine", D(100), dt.date(2031, 1, 1))])
    product = card("Efedryna", (canonical_substance("Ephedrine"), "150"))
    assert check((product, 1), policy=block, on=dt.date(2030, 12, 31), limits=table).decision == allow
    later = check((product, 1), policy=block, on=dt.date(2031, 1, 1), limits=table)
    assert later.decision == refuse
    assert later.reasons[0].substance == "ephedrine"
    assert "ephedrine 150 mg" in later.reasons[0].en


def test_a_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        LimitTable([LimitRule("codeine", D(0), IN_FORCE)])


# ----------------------------------------------------------------------------- sales before 2017 (art. 8 ust. 2)

LAST_DAY_2016 = dt.date(2016, 12, 31)


@pytest.mark.parametrize(
    ("policy", "decision"),
    [(ask, Decision.warn), (block, Decision.block), (Policy.off, allow), (Policy.warn_from_card, allow)],
)
def test_before_2017_two_packages_of_one_product_with_a_listed_substance_break_the_one_package_rule(
    policy: Policy, decision: Decision
) -> None:
    result = check((ADVIL_2016, 2), policy=policy, on=LAST_DAY_2016)

    assert result.decision == decision and result.substances == ()
    if decision != allow:
        (reason,) = result.reasons
        assert (reason.key, reason.product_id, reason.substance) == (
            "pre_2017_sale_one_package",
            ADVIL_2016.id,
            "pseudoephedrine",
        )
        assert "jedno opakowanie" in reason.pl and "this sale has 2" in reason.en


def test_before_2017_one_package_of_each_product_is_allowed_whatever_the_amounts() -> None:
    # 120 + 900 + 360 mg of pseudoephedrine: far over today's 720 mg, but one package of each product.
    result = check(
        (ADVIL_2016, 1), (STRONG_2016, 1), (GRIPEX, 1), (THIOCODIN, 1), (IBUPROM, 5), policy=block, on=LAST_DAY_2016
    )
    assert (result.decision, result.reasons) == (allow, ())


def test_before_2017_a_product_split_over_two_lines_is_still_two_packages() -> None:
    assert keys(check((ACODIN, 1), (ACODIN, 1), policy=block, on=LAST_DAY_2016)) == ["pre_2017_sale_one_package"]


def test_before_2017_a_card_without_amounts_is_judged_by_its_substance() -> None:
    result = check((UNFILLED, 2), policy=block, on=LAST_DAY_2016)
    assert (result.decision, keys(result)) == (Decision.block, ["pre_2017_sale_one_package"])


def test_before_2017_a_buyer_under_18_is_refused_under_every_policy() -> None:
    for policy in Policy:
        result = check((THIOCODIN, 1), policy=policy, age=17, on=LAST_DAY_2016)
        assert (result.decision, keys(result)[0]) == (Decision.block, "under_18")
    assert check((IBUPROM, 1), age=17, on=LAST_DAY_2016).decision == allow


def test_the_one_package_rule_ends_on_31_december_2016() -> None:
    assert check((ADVIL_2016, 2), policy=block, on=LAST_DAY_2016).decision == Decision.block
    assert check((ADVIL_2016, 2), policy=block, on=IN_FORCE).decision == allow  # 240 mg: under the limit


# ----------------------------------------------------------------------------- policy × level × era

# Advil Zatoki (one package well under the limit): the era it was marketed in does not matter.
# 5 packages = 600 mg (under), 6 = 720 mg (at), 7 = 840 mg (over).
LEVEL_TABLE = [
    # policy, packages, marketed before 2017, decision, reason keys
    (ask, 5, False, allow, []),
    (ask, 6, False, allow, []),
    (ask, 7, False, warn, ["limit_exceeded"]),
    (ask, 5, True, allow, []),
    (ask, 6, True, allow, []),
    (ask, 7, True, warn, ["limit_exceeded"]),
    (block, 5, False, allow, []),
    (block, 6, False, allow, []),
    (block, 7, False, refuse, ["limit_exceeded"]),
    (block, 5, True, allow, []),
    (block, 6, True, allow, []),
    (block, 7, True, refuse, ["limit_exceeded"]),
    (off, 5, False, allow, []),
    (off, 6, False, allow, []),
    (off, 7, False, allow, []),
    (off, 5, True, allow, []),
    (off, 6, True, allow, []),
    (off, 7, True, allow, []),
    (warn_from_card, 5, False, allow, []),
    (warn_from_card, 6, False, allow, []),
    (warn_from_card, 7, False, allow, []),  # the card is filled in: nothing to warn about
    (warn_from_card, 5, True, allow, []),
    (warn_from_card, 6, True, allow, []),
    (warn_from_card, 7, True, allow, []),
]


@pytest.mark.parametrize(("policy", "packages", "pre_2017", "decision", "reason_keys"), LEVEL_TABLE)
def test_each_policy_under_at_and_over_the_limit(
    policy: Policy, packages: int, pre_2017: bool, decision: Decision, reason_keys: list[str]
) -> None:
    result = check((ADVIL_2016 if pre_2017 else ADVIL, packages), policy=policy)
    assert result.decision == decision
    assert keys(result) == reason_keys
    assert total(result, "pseudoephedrine") == rounded(Fraction(120 * packages, 720))


# Sudafed Max: ONE package (900 mg) is over the 720 mg limit. Marketed before 2017 it may be sold,
# one package per sale (art. 8 ust. 1); marketed later, not even one package is within the limit.
PACKAGE_OVER_TABLE = [
    (ask, 1, True, allow, []),
    (ask, 2, True, warn, ["pre_2017_one_package"]),
    (ask, 1, False, warn, ["limit_exceeded"]),
    (ask, 2, False, warn, ["limit_exceeded"]),
    (block, 1, True, allow, []),
    (block, 2, True, refuse, ["pre_2017_one_package"]),
    (block, 1, False, refuse, ["limit_exceeded"]),
    (block, 2, False, refuse, ["limit_exceeded"]),
    (off, 1, True, allow, []),
    (off, 2, True, allow, []),
    (off, 1, False, allow, []),
    (off, 2, False, allow, []),
    (warn_from_card, 1, True, allow, []),
    (warn_from_card, 2, True, allow, []),
    (warn_from_card, 1, False, allow, []),
    (warn_from_card, 2, False, allow, []),
]


@pytest.mark.parametrize(("policy", "packages", "pre_2017", "decision", "reason_keys"), PACKAGE_OVER_TABLE)
def test_a_product_whose_package_is_over_the_limit(
    policy: Policy, packages: int, pre_2017: bool, decision: Decision, reason_keys: list[str]
) -> None:
    result = check((STRONG_2016 if pre_2017 else STRONG_2018, packages), policy=policy)
    assert result.decision == decision
    assert keys(result) == reason_keys


def test_the_one_package_reason_names_the_product_substance_and_amounts() -> None:
    (reason,) = check((STRONG_2016, 3), policy=block).reasons
    assert reason.product_id == STRONG_2016.id
    assert reason.substance == "pseudoephedrine"
    assert "Sudafed Max" in reason.pl and "1 stycznia 2017" in reason.pl and "900 mg" in reason.pl
    assert "jest 3" in reason.pl
    assert "pseudoephedrine 900 mg, limit 720 mg" in reason.en and "this sale has 3" in reason.en


def test_a_pre_2017_product_split_over_two_lines_is_still_two_packages() -> None:
    result = check((STRONG_2016, 1), (STRONG_2016, 1), policy=block)
    assert result.decision == refuse
    assert keys(result) == ["pre_2017_one_package"]
    assert "this sale has 2" in result.reasons[0].en


def test_the_pre_2017_exception_covers_that_product_alone() -> None:
    result = check((STRONG_2016, 1), (ADVIL, 1), policy=block)  # 900 + 120 mg pseudoephedrine
    assert result.decision == refuse
    assert keys(result) == ["limit_exceeded"]
    assert "1020 mg" in result.reasons[0].en


def test_the_pre_2017_exception_is_per_substance() -> None:
    # Over the limit in pseudoephedrine only; its codeine still adds up with another product's.
    mixed = card("Mixtura 2016", ("pseudoephedrine", "900"), ("codeine", "120"), marketed_on=BEFORE_2017)
    assert check((mixed, 1), policy=block).decision == allow
    result = check((mixed, 1), (THIOCODIN, 1), policy=block)  # codeine 120 + 150 = 270 mg > 240 mg
    assert keys(result) == ["limit_exceeded"]
    assert result.reasons[0].substance == "codeine"


def test_an_old_product_within_the_limit_is_not_held_to_one_package() -> None:
    assert check((ADVIL_2016, 6), policy=block).decision == allow


# ----------------------------------------------------------------------------- several substances, several lines


def test_a_product_with_two_limited_substances_counts_each_against_its_own_limit() -> None:
    two = check((GRIPEX, 2), policy=block)  # PSE 720 mg (at), DXM 240 mg
    assert two.decision == allow
    assert [(t.substance, t.total_multiplier) for t in two.substances] == [
        ("dextromethorphan", D("0.66667")),
        ("pseudoephedrine", D("1.00000")),
    ]
    three = check((GRIPEX, 3), policy=block)  # PSE 1080 mg (over), DXM 360 mg (at)
    assert three.decision == refuse
    assert [(r.key, r.substance) for r in three.reasons] == [("limit_exceeded", "pseudoephedrine")]


def test_the_same_substance_adds_up_over_different_products() -> None:
    result = check((GRIPEX, 2), (ADVIL, 1), policy=block)  # PSE 720 + 120 mg
    assert keys(result) == ["limit_exceeded"]
    assert result.reasons[0].substance == "pseudoephedrine"
    assert "840 mg" in result.reasons[0].en and "720 mg" in result.reasons[0].en
    assert "1,16667" in result.reasons[0].pl


def test_every_substance_over_its_limit_has_its_own_reason() -> None:
    result = check((THIOCODIN, 2), (ACODIN, 3), (IBUPROM, 5), policy=block)  # codeine 300 mg, DXM 450 mg
    assert result.decision == refuse
    assert [(r.key, r.substance) for r in result.reasons] == [
        ("limit_exceeded", "codeine"),
        ("limit_exceeded", "dextromethorphan"),
    ]
    assert [t.substance for t in result.substances] == ["codeine", "dextromethorphan"]


def test_a_sale_without_limited_substances_is_allowed_and_has_no_totals() -> None:
    result = check((IBUPROM, 50), policy=block, age=12)
    assert (result.decision, result.reasons, result.substances) == (allow, (), ())


def test_a_sale_line_has_at_least_one_package() -> None:
    with pytest.raises(ValueError, match="at least one package"):
        check((ADVIL, 0))


# ----------------------------------------------------------------------------- buyer under 18


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_a_buyer_under_18_is_refused_under_every_policy(policy: Policy) -> None:
    result = check((ADVIL, 1), policy=policy, age=17, confirmed=True)
    assert result.decision == refuse
    assert keys(result)[0] == "under_18"
    assert "18" in result.reasons[0].pl and "pseudoefedryna" in result.reasons[0].pl
    assert "pseudoephedrine" in result.reasons[0].en


@pytest.mark.parametrize("policy", ALL_POLICIES)
def test_an_adult_of_exactly_18_may_buy(policy: Policy) -> None:
    assert check((ADVIL, 1), policy=policy, age=18).decision == allow


def test_under_18_names_every_limited_substance_even_without_amounts() -> None:
    result = check((GRIPEX, 1), (UNFILLED, 1), policy=off, age=16)
    assert result.decision == refuse
    assert keys(result) == ["under_18"]
    assert "(codeine, dextromethorphan, pseudoephedrine)" in result.reasons[0].en


def test_a_minor_buying_over_the_limit_hears_both_reasons() -> None:
    assert keys(check((ADVIL, 7), policy=block, age=15)) == ["under_18", "limit_exceeded"]
    assert keys(check((ADVIL, 7), policy=ask, age=15)) == ["under_18", "limit_exceeded"]


# ----------------------------------------------------------------------------- substance data not filled in


@pytest.mark.parametrize(
    ("policy", "decision", "reason_keys"),
    [
        (ask, warn, ["substance_data_missing"]),
        (block, warn, ["substance_data_missing"]),  # nothing proves it is over the limit: the pharmacist judges
        (off, allow, []),
        (warn_from_card, warn, ["substance_data_missing"]),
    ],
)
def test_a_product_without_its_amount_filled_in(policy: Policy, decision: Decision, reason_keys: list[str]) -> None:
    result = check((UNFILLED, 1), policy=policy)
    assert (result.decision, keys(result)) == (decision, reason_keys)
    assert result.substances == ()


def test_warn_from_card_warns_only_about_the_unfilled_product() -> None:
    result = check((ADVIL, 9), (UNFILLED, 1), policy=warn_from_card)
    assert keys(result) == ["substance_data_missing"]
    reason = result.reasons[0]
    assert (reason.product_id, reason.substance) == (UNFILLED.id, "codeine")
    assert "kodeina" in reason.pl and "Syrop z kodeiną" in reason.pl
    assert "codeine" in reason.en


# ----------------------------------------------------------------------------- confirmation


def test_under_ask_the_pharmacists_yes_turns_the_warning_into_allow_and_says_so() -> None:
    result = check((ADVIL, 7), policy=ask, confirmed=True)
    assert result.decision == allow
    assert keys(result) == ["limit_exceeded", "confirmed_by_pharmacist"]


def test_under_block_a_confirmation_changes_nothing() -> None:
    result = check((ADVIL, 7), policy=block, confirmed=True)
    assert result.decision == refuse
    assert keys(result) == ["limit_exceeded"]


def test_a_confirmed_card_warning_is_allowed() -> None:
    result = check((UNFILLED, 1), policy=warn_from_card, confirmed=True)
    assert result.decision == allow
    assert keys(result) == ["substance_data_missing", "confirmed_by_pharmacist"]


def test_a_confirmation_with_nothing_to_confirm_adds_nothing() -> None:
    result = check((ADVIL, 1), confirmed=True)
    assert (result.decision, result.reasons) == (allow, ())


# ----------------------------------------------------------------------------- messages


def test_every_reason_has_a_key_and_a_polish_and_an_english_sentence() -> None:
    reasons = [
        messages.under_18(["codeine"]),
        messages.limit_exceeded("codeine", D("247.5"), D(240), D("1.03125")),
        messages.pre_2017_one_package("p", "Thiocodin", "codeine", D(300), D(240), 2),
        messages.substance_data_missing("p", "Thiocodin", "codeine"),
        messages.confirmed_by_pharmacist(),
    ]
    assert len({r.key for r in reasons}) == len(reasons)
    for reason in reasons:
        assert reason.pl and reason.en and reason.pl != reason.en
    assert "247,5 mg" in reasons[1].pl and "1,03125" in reasons[1].pl
    assert "247.5 mg" in reasons[1].en and "1.03125" in reasons[1].en


def test_milligrams_read_naturally() -> None:
    assert messages.mg_en(D("120.000")) == "120 mg"
    assert messages.mg_pl(D("7.500")) == "7,5 mg"
    assert messages.mg_en(D("1E+3")) == "1000 mg"
    assert messages.substance_pl("ephedrine") == "ephedrine"  # a substance known only from data


# ----------------------------------------------------------------------------- properties

milligrams = st.integers(min_value=1, max_value=2_000_000).map(lambda thousandths: D(thousandths).scaleb(-3))
packages = st.integers(min_value=1, max_value=60)


@given(mg=milligrams, count=packages)
def test_block_refuses_exactly_when_the_milligrams_exceed_the_maximum(mg: Decimal, count: int) -> None:
    product = card("P", ("codeine", str(mg)))
    result = check((product, count), policy=block)
    assert (result.decision == refuse) == (mg * count > 240)
    assert total(result, "codeine") == rounded(Fraction(mg) * count / 240)


@given(mg=milligrams, count=packages)
def test_one_more_package_never_turns_a_refusal_into_a_sale(mg: Decimal, count: int) -> None:
    product = card("P", ("dextromethorphan", str(mg)))
    if check((product, count), policy=block).decision == refuse:
        assert check((product, count + 1), policy=block).decision == refuse


@given(split=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=6), policy=st.sampled_from(Policy))
def test_splitting_a_product_over_lines_changes_nothing(split: list[int], policy: Policy) -> None:
    for product in (ADVIL, STRONG_2016, GRIPEX):
        as_one = check((product, sum(split)), policy=policy)
        as_many = check(*[(product, n) for n in split], policy=policy)
        assert as_one == as_many


@given(
    lines=st.lists(
        st.tuples(st.sampled_from([ADVIL, STRONG_2016, GRIPEX, THIOCODIN, ACODIN, UNFILLED, IBUPROM]), packages),
        min_size=1,
        max_size=6,
    ),
    policy=st.sampled_from(Policy),
    age=st.integers(min_value=0, max_value=130),
    confirmed=st.booleans(),
    data=st.data(),
)
def test_the_order_of_the_lines_does_not_matter(
    lines: list[tuple[ProductCard, int]], policy: Policy, age: int, confirmed: bool, data: st.DataObject
) -> None:
    shuffled = data.draw(st.permutations(lines))
    first = check(*lines, policy=policy, age=age, confirmed=confirmed)
    second = check(*shuffled, policy=policy, age=age, confirmed=confirmed)
    assert first.decision == second.decision
    assert sorted(keys(first)) == sorted(keys(second))
    assert first.substances == second.substances


@given(
    lines=st.lists(st.tuples(st.sampled_from([ADVIL, STRONG_2018, GRIPEX, THIOCODIN, UNFILLED]), packages), min_size=1),
    age=st.integers(min_value=0, max_value=130),
    confirmed=st.booleans(),
)
def test_off_refuses_only_a_minor_and_block_never_merely_warns_about_the_limit(
    lines: list[tuple[ProductCard, int]], age: int, confirmed: bool
) -> None:
    assert (check(*lines, policy=off, age=age, confirmed=confirmed).decision == refuse) == (age < 18)
    blocked = check(*lines, policy=block, age=age, confirmed=confirmed)
    if "limit_exceeded" in keys(blocked):
        assert blocked.decision == refuse


@given(numerator=st.integers(min_value=0, max_value=10**9), denominator=st.integers(min_value=1, max_value=10**6))
def test_the_shown_multiplier_is_within_half_a_unit_of_the_exact_one(numerator: int, denominator: int) -> None:
    exact = Fraction(numerator, denominator)
    assert abs(Fraction(rounded(exact)) - exact) <= Fraction(1, 200_000)


# ----------------------------------------------------------------------------- the CSV file

HEADER = "name,marketed_on,substance,mg_per_package\n"


def test_lines_with_the_same_name_and_date_are_one_product() -> None:
    parsed = parse_catalogue(
        HEADER + "Gripex,2018-05-10,Pseudoephedrinum,360\n"
        "Advil Zatoki,2017-03-01,pseudoephedrine,120\n"
        "Gripex,2018-05-10,Dextromethorphanum,120\n"
        "Gripex,2018-05-10,Paracetamolum,3900\n"
        "Gripex,2010-01-01,Pseudoephedrinum,360\n"
    )
    assert parsed.rejected == []
    assert parsed.imported_lines == 5
    assert [(p.name, p.marketed_on, [line.line for line in p.lines]) for p in parsed.products] == [
        ("Gripex", dt.date(2018, 5, 10), [2, 4, 5]),
        ("Advil Zatoki", dt.date(2017, 3, 1), [3]),
        ("Gripex", dt.date(2010, 1, 1), [6]),
    ]
    assert parsed.products[0].contents == (
        Content("pseudoephedrine", D(360)),
        Content("dextromethorphan", D(120)),
        Content("paracetamolum", D(3900)),
    )


def test_a_spreadsheet_export_with_semicolons_and_decimal_commas() -> None:
    parsed = parse_catalogue(
        "substance;name;mg_per_package;marketed_on\r\nCodeinum;Syrop;7,5;2019-01-01\r\n;;;\r\n\r\n"
        'Codeinum;"Tabletki; 10 szt.";150;2019-01-01\r\n'
    )
    assert parsed.rejected == []
    assert [(p.name, p.contents) for p in parsed.products] == [
        ("Syrop", (Content("codeine", D("7.5")),)),
        ("Tabletki; 10 szt.", (Content("codeine", D(150)),)),
    ]
    assert parsed.products[1].lines[0].line == 5  # blank and filler lines still count


def test_an_empty_amount_is_not_filled_in() -> None:
    parsed = parse_catalogue(HEADER + "Syrop,2019-01-01,kodeina,\n")
    assert parsed.products[0].contents == (Content("codeine", None),)


@pytest.mark.parametrize(
    ("line", "error"),
    [
        (",2019-01-01,codeine,10", "name: is empty"),
        ("X" * 201 + ",2019-01-01,codeine,10", "name: longer than 200"),
        ("P,2019-02-30,codeine,10", "marketed_on: '2019-02-30' is not a date"),
        ("P,20190101,codeine,10", "marketed_on: '20190101' is not a date"),
        ("P,1899-12-31,codeine,10", "marketed_on: must be between"),
        ("P,2019-01-01,,10", "substance: is empty"),
        ("P,2019-01-01," + "s" * 101 + ",10", "substance: longer than 100"),
        ("P,2019-01-01,pseudoefedrine,10", "looks like pseudoephedrine"),
        ("P,2019-01-01,codeine,ten", "mg_per_package: 'ten' is not a number"),
        ("P,2019-01-01,codeine,NaN", "is not a number"),
        ("P,2019-01-01,codeine,0", "must be more than 0"),
        ("P,2019-01-01,codeine,-5", "must be more than 0"),
        ("P,2019-01-01,codeine,1000001", "at most 1000000"),
        ("P,2019-01-01,codeine,1.2345", "at most 3 decimal places"),
        ("P,2019-01-01,codeine", "expected 4 fields"),
        ("P,2019-01-01,codeine,10,extra", "expected 4 fields"),
    ],
)
def test_a_bad_line_is_rejected_with_its_number_and_reason(line: str, error: str) -> None:
    parsed = parse_catalogue(HEADER + "Good,2019-01-01,codeine,10\n" + line + "\n")
    assert [p.name for p in parsed.products] == ["Good"]
    assert [r.line for r in parsed.rejected] == [3]
    assert error in parsed.rejected[0].error


def test_several_errors_of_one_line_are_all_reported() -> None:
    (rejected,) = parse_catalogue(HEADER + "P,2019-13-01,,abc\n").rejected
    assert "marketed_on" in rejected.error and "substance" in rejected.error and "mg_per_package" in rejected.error


def test_one_bad_line_rejects_every_line_of_its_product() -> None:
    parsed = parse_catalogue(
        HEADER + "Gripex,2018-05-10,pseudoephedrine,360\n"
        "Advil Zatoki,2017-03-01,pseudoephedrine,120\n"
        "Gripex,2018-05-10,dextromethorphan,abc\n"
        "Gripex,2018-05-10,paracetamol,3900\n"
    )
    assert [p.name for p in parsed.products] == ["Advil Zatoki"]
    assert [(r.line, r.error.split(":")[0]) for r in parsed.rejected] == [
        (2, "not imported with its product 'Gripex'"),
        (4, "mg_per_package"),
        (5, "not imported with its product 'Gripex'"),
    ]
    assert "line 4" in parsed.rejected[0].error


def test_a_substance_given_twice_for_one_product_is_rejected() -> None:
    parsed = parse_catalogue(HEADER + "P,2019-01-01,Codeinum,10\nP,2019-01-01,kodeina,20\n")
    assert parsed.products == []
    assert [r.line for r in parsed.rejected] == [2, 3]
    assert "codeine is already given on line 2" in parsed.rejected[1].error


def test_a_product_has_at_most_twenty_substances() -> None:
    lines = "".join(f"P,2019-01-01,substance {i},1\n" for i in range(21))
    parsed = parse_catalogue(HEADER + lines)
    assert parsed.products == []
    assert "at most 20 substances" in parsed.rejected[-1].error


@pytest.mark.parametrize(
    "text",
    ["", "\n\n", "name,marketed_on,substance\nP,2019-01-01,codeine\n", "a,b,c,d\n", "P,2019-01-01,codeine,10\n"],
)
def test_a_file_without_its_header_is_refused_whole(text: str) -> None:
    with pytest.raises(CsvFileError, match="header name,marketed_on,substance,mg_per_package"):
        parse_catalogue(text)


def test_products_already_in_the_catalogue_are_moved_to_rejected() -> None:
    parsed = parse_catalogue(HEADER + "A,2019-01-01,codeine,10\nB,2019-01-01,codeine,10\nA,2019-01-01,ibuprofen,1\n")
    parsed.reject_products({("A", dt.date(2019, 1, 1))}, "already there")
    assert [p.name for p in parsed.products] == ["B"]
    assert [(r.line, r.error) for r in parsed.rejected] == [(2, "already there"), (4, "already there")]
    assert parsed.imported_lines == 1

"""Entitlements and age on the day of acceptance: expired and not-yet-valid ones dropped, age in full
years (birth date from PESEL), and the age-limit hook the source leaves empty."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.reimbursement.domain import (
    ENTITLEMENT_AGE_LIMITS,
    AgeLimit,
    DroppedEntitlement,
    EntitlementGrant,
    GroupCode,
    ReimbursementError,
    age_on,
    entitlements_in_force,
    price_realisation,
)
from shared.identifiers import pesel_birth_date

ADULT_PESEL = "44051401359"  # 1944-05-14
LEAP_DAY_PESEL = "08222901235"  # 2008-02-29
CHILD_PESEL = "15321204569"  # 2015-12-12


def test_birth_dates_come_from_the_pesel() -> None:
    assert pesel_birth_date(ADULT_PESEL) == dt.date(1944, 5, 14)
    assert pesel_birth_date(LEAP_DAY_PESEL) == dt.date(2008, 2, 29)
    assert pesel_birth_date(CHILD_PESEL) == dt.date(2015, 12, 12)


@pytest.mark.parametrize(
    ("pesel", "day", "age"),
    [
        (ADULT_PESEL, dt.date(2023, 5, 13), 78),
        (ADULT_PESEL, dt.date(2023, 5, 14), 79),  # a year older from the start of the birthday
        (CHILD_PESEL, dt.date(2023, 12, 11), 7),
        (CHILD_PESEL, dt.date(2023, 12, 12), 8),
        (CHILD_PESEL, dt.date(2015, 12, 12), 0),
        (LEAP_DAY_PESEL, dt.date(2026, 2, 27), 17),
        (LEAP_DAY_PESEL, dt.date(2026, 2, 28), 18),  # no 29 February in 2026: the month's last day (art. 112 k.c.)
        (LEAP_DAY_PESEL, dt.date(2028, 2, 28), 19),
        (LEAP_DAY_PESEL, dt.date(2028, 2, 29), 20),
    ],
)
def test_age_in_full_years(pesel: str, day: dt.date, age: int) -> None:
    assert age_on(pesel_birth_date(pesel), day) == age


def test_a_birth_date_after_the_day_is_refused() -> None:
    with pytest.raises(ReimbursementError) as caught:
        age_on(dt.date(2024, 1, 2), dt.date(2024, 1, 1))
    assert caught.value.field == "birth_date"


@given(st.dates(dt.date(1900, 1, 1), dt.date(2030, 12, 31)), st.integers(0, 36_500))
def test_age_never_decreases_and_grows_by_one_a_year(birth: dt.date, days: int) -> None:
    day = birth + dt.timedelta(days=days)
    age = age_on(birth, day)
    assert 0 <= age <= days // 365
    assert age_on(birth, day + dt.timedelta(days=1)) in (age, age + 1)


ON = dt.date(2023, 3, 15)
BIRTH = pesel_birth_date(ADULT_PESEL)


def test_expired_and_not_yet_valid_entitlements_are_dropped_with_the_reason() -> None:
    check = entitlements_in_force(
        BIRTH,
        [
            EntitlementGrant("47ZN", valid_from=dt.date(2020, 1, 1), valid_until=dt.date(2023, 3, 14)),
            EntitlementGrant("47IB", valid_from=dt.date(2023, 3, 16)),
            EntitlementGrant("47or"),
        ],
        ON,
    )
    assert check.age == 78
    assert check.in_force == frozenset({"47OR"})
    assert check.dropped == (
        DroppedEntitlement("47ZN", "47ZN expired on 2023-03-14"),
        DroppedEntitlement("47IB", "47IB is valid only from 2023-03-16"),
    )


def test_validity_bounds_are_inclusive() -> None:
    grant = EntitlementGrant("47ZN", valid_from=ON, valid_until=ON)
    assert entitlements_in_force(BIRTH, [grant], ON).in_force == frozenset({"47ZN"})
    assert entitlements_in_force(BIRTH, [grant], ON + dt.timedelta(days=1)).in_force == frozenset()
    assert entitlements_in_force(BIRTH, [grant], ON - dt.timedelta(days=1)).in_force == frozenset()


def test_a_renewed_document_keeps_the_entitlement() -> None:
    check = entitlements_in_force(
        BIRTH,
        [
            EntitlementGrant("47ZN", valid_until=dt.date(2022, 12, 31)),
            EntitlementGrant("47ZN", valid_from=dt.date(2023, 1, 1), valid_until=dt.date(2025, 12, 31)),
        ],
        ON,
    )
    assert check.in_force == frozenset({"47ZN"})
    assert check.dropped == ()


def test_no_entitlements_at_all() -> None:
    check = entitlements_in_force(BIRTH, [], ON)
    assert (check.in_force, check.dropped) == (frozenset(), ())


@pytest.mark.parametrize(
    ("grant", "fragment"),
    [
        (
            EntitlementGrant("47ZN", valid_from=dt.date(2023, 2, 1), valid_until=dt.date(2023, 1, 31)),
            "before it starts",
        ),
        (EntitlementGrant("47-ZN"), "entitlement code"),
    ],
)
def test_a_bad_grant_names_the_entitlements_field(grant: EntitlementGrant, fragment: str) -> None:
    with pytest.raises(ReimbursementError) as caught:
        entitlements_in_force(BIRTH, [grant], ON)
    assert caught.value.field == "entitlements"
    assert fragment in caught.value.message


def test_the_source_names_no_age_threshold() -> None:
    # "wiek pacjenta, bo może mieć wpływ na posiadane uprawnienia" - but no age is given.
    assert ENTITLEMENT_AGE_LIMITS == ()
    child = pesel_birth_date(CHILD_PESEL)
    check = entitlements_in_force(child, [EntitlementGrant("47DN")], dt.date(2040, 1, 1))
    assert check.age == 24
    assert check.in_force == frozenset({"47DN"})


def test_an_age_limit_loaded_as_data_drops_the_entitlement_from_that_birthday() -> None:
    limits = [AgeLimit("47dn", below_age=16)]  # an illustration, not law
    child = pesel_birth_date(CHILD_PESEL)
    grants = [EntitlementGrant("47DN"), EntitlementGrant("47ZN")]
    before = entitlements_in_force(child, grants, dt.date(2031, 12, 11), limits)
    on_birthday = entitlements_in_force(child, grants, dt.date(2031, 12, 12), limits)
    assert before.in_force == frozenset({"47DN", "47ZN"})
    assert on_birthday.in_force == frozenset({"47ZN"})
    assert on_birthday.dropped == (
        DroppedEntitlement("47DN", "47DN holds only below the age of 16; the patient is 16"),
    )


def test_the_entitlements_in_force_decide_the_rate() -> None:
    # The order said 47OR, but the document expired the day before the realisation: 70 %, not 100 %.
    grants = [EntitlementGrant("47OR", valid_until=ON - dt.timedelta(days=1))]
    in_force = entitlements_in_force(BIRTH, grants, ON).in_force
    q = price_realisation(
        group_code=GroupCode.parse("P.101.MCH1"),
        pieces=60,
        months=1,
        unit_price=Decimal("1.70"),
        entitlements=in_force,
        realized_on=ON,
    )
    assert (q.rate, q.subsidy, q.patient_share) == (Decimal("0.70"), Decimal("71.40"), Decimal("30.60"))

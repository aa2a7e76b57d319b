"""CeR compliance (art. 154a: schedules by 2026-05-31, payment withheld from 06-01, CeR bookings only
from 07-01 for the basic step; a later step's dates follow its own covered_from), the NFZ contract
that makes them apply, and the drift between CeR's bookings and the facility's, as pure functions."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.integration.cer_scope import SEED, CerSpecialty, Coverage, effective
from services.integration.domain import (
    AT_RISK,
    BREACHED,
    CER_BOOKINGS_ONLY_FROM,
    NO_CONTRACT,
    NOT_APPLICABLE,
    OK,
    PAYMENT_WITHHELD_FROM,
    SCHEDULES_DUE,
    BookedVisit,
    PaymentRisk,
    SpecialtyCompliance,
    drift,
    payment_dates,
    specialty_compliance,
)

DAY = dt.timedelta(days=1)
MAY_1 = dt.date(2026, 5, 1)
MAY_31 = dt.date(2026, 5, 31)
JUNE_1 = dt.date(2026, 6, 1)
JUNE_30 = dt.date(2026, 6, 30)
JULY_1 = dt.date(2026, 7, 1)
PESEL = "44051401359"
OTHER_PESEL = "02070803628"

# Wide enough to reach well before and after every payment date.
days = st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2027, 12, 31))
published_days = st.none() | days
SEVERITY = {OK: 0, AT_RISK: 1, BREACHED: 2}
TABLE = effective()
CARDIOLOGY = TABLE[CerSpecialty.cardiology]
ENDOCRINOLOGY = TABLE[CerSpecialty.endocrinology]


def statuses(
    *,
    schedules: int = 2,
    first: dt.date | None = None,
    unsent: int = 0,
    today: dt.date = MAY_1,
    contracted: bool = True,
    coverage: Coverage = CARDIOLOGY,
) -> tuple[str, ...]:
    found = specialty_compliance(coverage, contracted, schedules, first, unsent, today)
    return tuple(r.status for r in found.risks)


def risks(
    *,
    schedules: int = 2,
    first: dt.date | None = None,
    unsent: int = 0,
    today: dt.date = MAY_1,
    contracted: bool = True,
    coverage: Coverage = CARDIOLOGY,
) -> list[PaymentRisk]:
    return list(specialty_compliance(coverage, contracted, schedules, first, unsent, today).risks)


# ----------------------------------------------------------------------------- the report's shape


def test_the_report_echoes_its_inputs_and_names_the_three_dates_in_order() -> None:
    report = specialty_compliance(TABLE[CerSpecialty.mammography], True, 3, MAY_1, 4, JUNE_1)
    assert isinstance(report, SpecialtyCompliance)
    assert (report.specialty, report.schedules, report.published, report.first_published_on, report.unsent_changes) == (
        "mammography",
        3,
        True,
        MAY_1,
        4,
    )
    assert (report.covered_from, report.draft, report.contracted) == (dt.date(2026, 1, 1), False, True)
    assert [r.date for r in report.risks] == [SCHEDULES_DUE, PAYMENT_WITHHELD_FROM, CER_BOOKINGS_ONLY_FROM]
    assert [r.date for r in report.risks] == [MAY_31, JUNE_1, JULY_1]
    assert all(r.rule and r.detail for r in report.risks)


def test_never_published_is_reported_as_not_published() -> None:
    report = specialty_compliance(TABLE[CerSpecialty.hpv_cytology], True, 1, None, 0, MAY_1)
    assert (report.published, report.first_published_on) == (False, None)


# ----------------------------------------------------------------------------- the NFZ contract


@pytest.mark.parametrize("today", [MAY_1, MAY_31, JUNE_1, JULY_1, dt.date(2027, 1, 1)])
@pytest.mark.parametrize(("schedules", "first", "unsent"), [(0, None, 0), (1, JUNE_30, 5), (3, MAY_1, 0)])
def test_a_specialty_without_a_contract_has_nothing_at_stake(
    today: dt.date, schedules: int, first: dt.date | None, unsent: int
) -> None:
    found = specialty_compliance(CARDIOLOGY, False, schedules, first, unsent, today)
    assert [r.status for r in found.risks] == [NOT_APPLICABLE] * 3
    assert all(r.detail == NO_CONTRACT for r in found.risks)
    assert found.status == NOT_APPLICABLE


@pytest.mark.parametrize("today", [MAY_1, MAY_31, JUNE_1, JULY_1, dt.date(2027, 1, 1)])
def test_a_contracted_specialty_with_nothing_published_is_never_not_applicable(today: dt.date) -> None:
    found = specialty_compliance(CARDIOLOGY, True, 0, None, 0, today)
    assert NOT_APPLICABLE not in [r.status for r in found.risks]
    assert found.status == (AT_RISK if today <= MAY_31 else BREACHED)


# ----------------------------------------------------------------------------- published in time


@pytest.mark.parametrize("first", [MAY_1, MAY_31])
@pytest.mark.parametrize("today", [MAY_1, MAY_31, JUNE_1, JULY_1])
def test_published_by_the_deadline_with_nothing_unsent_is_ok_on_every_date(first: dt.date, today: dt.date) -> None:
    found = risks(first=first, today=max(first, today))
    assert [r.status for r in found] == [OK, OK, OK]
    assert found[0].detail == f"first published on {first}"
    assert found[1].detail == "schedules were sent in time"
    assert found[2].detail == "every change is in CeR"


def test_unsent_changes_are_a_risk_before_july_and_a_breach_from_july_1() -> None:
    before = risks(first=MAY_1, unsent=3, today=JUNE_30)
    assert [r.status for r in before] == [OK, OK, AT_RISK]
    assert before[2].detail == "3 changes not in CeR: their visits would not be paid"

    after = risks(first=MAY_1, unsent=3, today=JULY_1)
    assert [r.status for r in after] == [OK, OK, BREACHED]
    assert after[2].detail == "3 changes not in CeR: their visits are not paid"


def test_a_single_unsent_change_is_enough_to_breach() -> None:
    assert statuses(first=MAY_1, unsent=1, today=JULY_1)[2] == BREACHED


# ----------------------------------------------------------------------------- published late


def test_published_on_june_1_misses_the_deadline_and_payment_is_withheld() -> None:
    found = risks(first=JUNE_1, today=JUNE_1)
    assert [r.status for r in found] == [BREACHED, BREACHED, OK]
    assert found[0].detail == "first published on 2026-06-01, after the deadline"
    assert found[1].detail == "withheld since 2026-06-01; published on 2026-06-01"


def test_published_late_with_every_change_sent_is_still_paid_for_cer_bookings_after_july() -> None:
    # Being late costs the withheld payments, but visits booked through CeR are paid again.
    assert statuses(first=JUNE_30, today=JULY_1) == (BREACHED, BREACHED, OK)


def test_published_late_with_unsent_changes_breaches_every_rule_from_july() -> None:
    assert statuses(first=JUNE_1, unsent=2, today=JULY_1) == (BREACHED, BREACHED, BREACHED)


# ----------------------------------------------------------------------------- never published


def test_never_published_on_the_deadline_day_is_at_risk_with_zero_days_left() -> None:
    found = risks(today=MAY_31)
    assert [r.status for r in found] == [AT_RISK, AT_RISK, AT_RISK]
    assert found[0].detail == "not yet accepted by CeR; 0 days left"
    assert found[1].detail == "payment will be withheld unless CeR accepts them"
    assert found[2].detail == "no schedule in CeR: their visits would not be paid"


def test_the_days_left_count_down_to_the_deadline() -> None:
    assert risks(today=MAY_1)[0].detail == "not yet accepted by CeR; 30 days left"
    assert risks(today=MAY_31 - DAY)[0].detail == "not yet accepted by CeR; 1 day left"


def test_never_published_on_june_1_breaches_the_deadline_and_the_withholding() -> None:
    found = risks(today=JUNE_1)
    assert [r.status for r in found] == [BREACHED, BREACHED, AT_RISK]
    assert found[0].detail == "never published"
    assert found[1].detail == "withheld since 2026-06-01"


@pytest.mark.parametrize(
    ("today", "expected"), [(JUNE_30, AT_RISK), (JULY_1, BREACHED), (dt.date(2027, 3, 1), BREACHED)]
)
def test_never_published_is_not_paid_for_anything_from_july_1(today: dt.date, expected: str) -> None:
    found = risks(unsent=0, today=today)
    assert found[2].status == expected
    assert found[2].detail.startswith("no schedule in CeR")


def test_unsent_changes_of_an_unpublished_specialty_are_reported_as_no_schedule_in_cer() -> None:
    # Nothing reached CeR at all: the count of changes would understate the problem.
    assert risks(unsent=7, today=JULY_1)[2].detail == "no schedule in CeR: their visits are not paid"


# ----------------------------------------------------------------------------- properties


@given(first=st.dates(max_value=SCHEDULES_DUE), today=days, schedules=st.integers(min_value=1, max_value=500))
def test_published_in_time_with_nothing_unsent_is_ok_whatever_today_is(
    first: dt.date, today: dt.date, schedules: int
) -> None:
    assert statuses(schedules=schedules, first=first, unsent=0, today=today) == (OK, OK, OK)


@given(
    first=published_days,
    unsent=st.integers(min_value=0, max_value=50),
    today=days,
    schedules=st.integers(min_value=0, max_value=5),
    coverage=st.sampled_from(SEED),
)
def test_nothing_applies_without_a_contract(
    first: dt.date | None, unsent: int, today: dt.date, schedules: int, coverage: Coverage
) -> None:
    assert (
        statuses(schedules=schedules, first=first, unsent=unsent, today=today, contracted=False, coverage=coverage)
        == (NOT_APPLICABLE,) * 3
    )


@given(first=published_days, unsent=st.integers(min_value=0, max_value=50), today=days, coverage=st.sampled_from(SEED))
def test_with_a_contract_nothing_is_ever_not_applicable(
    first: dt.date | None, unsent: int, today: dt.date, coverage: Coverage
) -> None:
    assert NOT_APPLICABLE not in statuses(first=first, unsent=unsent, today=today, coverage=coverage)


@given(
    schedules=st.integers(min_value=1, max_value=50),
    first=published_days,
    unsent=st.integers(min_value=0, max_value=50),
    today=days,
    coverage=st.sampled_from(SEED),
)
def test_a_rule_is_never_breached_before_its_date_nor_at_risk_after_it(
    schedules: int, first: dt.date | None, unsent: int, today: dt.date, coverage: Coverage
) -> None:
    found = risks(schedules=schedules, first=first, unsent=unsent, today=today, coverage=coverage)
    for index, risk in enumerate(found):
        assert risk.status in (OK, AT_RISK, BREACHED)
        if risk.status == BREACHED:
            assert today >= risk.date, risk
        if risk.status == AT_RISK:
            # The deadline's own day is still in time; the payment rules bite on their day.
            assert today <= risk.date if index == 0 else today < risk.date, risk


@given(
    schedules=st.integers(min_value=1, max_value=50),
    first=published_days,
    unsent=st.integers(min_value=0, max_value=50),
    today=days,
    later=st.integers(min_value=1, max_value=800),
)
def test_time_passing_never_makes_a_rule_less_severe(
    schedules: int, first: dt.date | None, unsent: int, today: dt.date, later: int
) -> None:
    now = risks(schedules=schedules, first=first, unsent=unsent, today=today)
    afterwards = risks(schedules=schedules, first=first, unsent=unsent, today=today + dt.timedelta(days=later))
    for before, after in zip(now, afterwards, strict=True):
        assert SEVERITY[after.status] >= SEVERITY[before.status], (before, after)


@given(first=published_days, unsent=st.integers(min_value=0, max_value=50))
def test_after_july_1_nothing_is_merely_at_risk(first: dt.date | None, unsent: int) -> None:
    assert AT_RISK not in statuses(first=first, unsent=unsent, today=JULY_1)


# ----------------------------------------------------------------------------- a later step's own dates

JULY_31 = dt.date(2026, 7, 31)
AUGUST_1 = dt.date(2026, 8, 1)


def test_the_basic_step_keeps_the_dates_of_art_154a() -> None:
    dates = payment_dates(CARDIOLOGY.covered_from)
    assert (dates.schedules_due, dates.payment_withheld_from, dates.cer_bookings_only_from) == (MAY_31, JUNE_1, JULY_1)


def test_the_august_step_is_due_on_july_31_and_both_payment_rules_bite_on_august_1() -> None:
    dates = payment_dates(ENDOCRINOLOGY.covered_from)
    assert (dates.schedules_due, dates.payment_withheld_from, dates.cer_bookings_only_from) == (
        JULY_31,
        AUGUST_1,
        AUGUST_1,
    )
    assert [r.date for r in risks(coverage=ENDOCRINOLOGY)] == [JULY_31, AUGUST_1, AUGUST_1]


def test_a_contracted_endocrinology_with_nothing_published_is_at_risk_on_july_31_and_breached_on_august_1() -> None:
    on_july_31 = specialty_compliance(ENDOCRINOLOGY, True, 0, None, 0, JULY_31)
    assert [r.status for r in on_july_31.risks] == [AT_RISK, AT_RISK, AT_RISK]
    assert on_july_31.risks[0].detail == "not yet accepted by CeR; 0 days left"
    assert (on_july_31.draft, on_july_31.covered_from, on_july_31.status) == (True, AUGUST_1, AT_RISK)
    on_august_1 = specialty_compliance(ENDOCRINOLOGY, True, 0, None, 0, AUGUST_1)
    assert [r.status for r in on_august_1.risks] == [BREACHED, BREACHED, BREACHED]
    assert on_august_1.risks[1].detail == "withheld since 2026-08-01"
    assert on_august_1.status == BREACHED


def test_endocrinology_published_on_july_31_is_in_time_and_on_august_1_is_late() -> None:
    assert statuses(first=JULY_31, today=AUGUST_1, coverage=ENDOCRINOLOGY) == (OK, OK, OK)
    assert statuses(first=AUGUST_1, today=AUGUST_1, coverage=ENDOCRINOLOGY) == (BREACHED, BREACHED, OK)


def test_an_operator_correction_of_the_date_moves_the_payment_dates_with_it() -> None:
    later = Coverage(CerSpecialty.endocrinology, dt.date(2026, 10, 1), "rozporządzenie MZ", draft=False)
    assert [r.date for r in risks(coverage=later)] == [dt.date(2026, 9, 30), dt.date(2026, 10, 1), dt.date(2026, 10, 1)]
    assert statuses(today=AUGUST_1, coverage=later) == (AT_RISK, AT_RISK, AT_RISK)


@given(covered_from=st.dates(min_value=dt.date(2025, 1, 1), max_value=dt.date(2031, 12, 31)))
def test_payment_dates_are_in_order_and_never_before_art_154a(covered_from: dt.date) -> None:
    dates = payment_dates(covered_from)
    assert dates.schedules_due < dates.payment_withheld_from <= dates.cer_bookings_only_from
    assert dates.payment_withheld_from == dates.schedules_due + DAY
    assert dates.schedules_due >= SCHEDULES_DUE and dates.cer_bookings_only_from >= CER_BOOKINGS_ONLY_FROM
    assert dates.schedules_due >= covered_from - DAY and dates.cer_bookings_only_from >= covered_from


@given(
    first=published_days,
    unsent=st.integers(min_value=0, max_value=50),
    today=days,
    coverage=st.sampled_from(SEED),
)
def test_the_status_is_the_worst_of_the_risks(
    first: dt.date | None, unsent: int, today: dt.date, coverage: Coverage
) -> None:
    found = specialty_compliance(coverage, True, 1, first, unsent, today)
    assert SEVERITY[found.status] == max(SEVERITY[r.status] for r in found.risks)


# ----------------------------------------------------------------------------- drift

SLOT_A = uuid.UUID(int=1)
SLOT_B = uuid.UUID(int=2)
NINE = dt.datetime(2026, 6, 3, 9, 0, tzinfo=dt.UTC)


def visit(
    slot_id: uuid.UUID = SLOT_A,
    pesel: str = PESEL,
    reference: str = "r",
    start: dt.datetime = NINE,
    channel: str = "ikp",
) -> BookedVisit:
    return BookedVisit(slot_id, pesel, reference, start, channel)


def test_nothing_on_either_side_is_no_drift() -> None:
    found = drift([], [])
    assert (found.missing_locally, found.missing_in_cer) == ((), ())


def test_the_same_patient_on_the_same_slot_matches_whatever_the_references_say() -> None:
    # Each side has its own ids, start as it rendered it and its own channel: only (slot, patient) counts.
    in_cer = [visit(reference="cer-1", channel="ikp")]
    local = [visit(reference="local-9", start=NINE + dt.timedelta(minutes=5), channel="facility")]
    found = drift(in_cer, local)
    assert (found.missing_locally, found.missing_in_cer) == ((), ())


def test_a_booking_only_in_cer_is_missing_locally() -> None:
    found = drift([visit()], [])
    assert found.missing_locally == (visit(),)
    assert found.missing_in_cer == ()


def test_a_booking_only_at_the_facility_is_missing_in_cer() -> None:
    found = drift([], [visit(reference="local")])
    assert found.missing_locally == ()
    assert found.missing_in_cer == (visit(reference="local"),)


def test_another_patient_on_the_same_slot_is_drift_on_both_sides() -> None:
    ours, theirs = visit(pesel=PESEL, reference="local"), visit(pesel=OTHER_PESEL, reference="cer")
    found = drift([theirs], [ours])
    assert found.missing_locally == (theirs,)
    assert found.missing_in_cer == (ours,)


def test_the_same_patient_on_another_slot_is_drift_on_both_sides() -> None:
    in_cer, local = visit(slot_id=SLOT_A), visit(slot_id=SLOT_B)
    found = drift([in_cer], [local])
    assert (found.missing_locally, found.missing_in_cer) == ((in_cer,), (local,))


def test_drift_keeps_each_sides_order_and_the_visits_themselves() -> None:
    first, second, third = (visit(slot_id=uuid.UUID(int=n), reference=f"cer-{n}") for n in (7, 5, 6))
    matched = visit(slot_id=SLOT_B, reference="both")
    found = drift([first, matched, second, third], [matched])
    assert found.missing_locally == (first, second, third)


# Small pools, so generated visits collide on slot, patient or both.
visits = st.builds(
    BookedVisit,
    slot_id=st.sampled_from([uuid.UUID(int=n) for n in range(1, 4)]),
    patient_pesel=st.sampled_from([PESEL, OTHER_PESEL]),
    reference=st.text(max_size=3),
    start=st.just(NINE),
    channel=st.sampled_from(["ikp", "facility", "waiting_list"]),
)


@given(in_cer=st.lists(visits, max_size=8), local=st.lists(visits, max_size=8))
def test_every_visit_is_either_matched_on_the_other_side_or_reported_missing(
    in_cer: list[BookedVisit], local: list[BookedVisit]
) -> None:
    found = drift(in_cer, local)
    for side, other, missing in ((in_cer, local, found.missing_locally), (local, in_cer, found.missing_in_cer)):
        other_keys = {(o.slot_id, o.patient_pesel) for o in other}
        reported = 0
        for v in side:
            if (v.slot_id, v.patient_pesel) in other_keys:
                continue  # matched: must not be reported
            assert reported < len(missing) and missing[reported] == v, (v, missing)
            reported += 1
        assert reported == len(missing), f"reported visits that are matched on the other side: {missing}"


@given(visits_=st.lists(visits, max_size=8))
def test_a_side_compared_with_itself_has_no_drift(visits_: list[BookedVisit]) -> None:
    assert drift(visits_, list(visits_)) == drift([], [])


@given(in_cer=st.lists(visits, max_size=8), local=st.lists(visits, max_size=8))
def test_swapping_the_sides_swaps_the_report(in_cer: list[BookedVisit], local: list[BookedVisit]) -> None:
    found, swapped = drift(in_cer, local), drift(local, in_cer)
    assert (swapped.missing_locally, swapped.missing_in_cer) == (found.missing_in_cer, found.missing_locally)

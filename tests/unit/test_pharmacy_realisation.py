"""E-prescription realisation rules: validity boundaries, the 180-day cap, same pharmacy, the reduction, outage."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest

from services.pharmacy.realisation import (
    NOTHING_DISPENSED,
    Dispensed,
    FoundBy,
    InvalidPrescription,
    Kind,
    NothingLeft,
    OutageNotAllowed,
    OutsideValidity,
    OverVisitCap,
    Prescription,
    PrescriptionData,
    RealisationError,
    RealisedElsewhere,
    ValidityWindow,
    Visit,
    max_packages_per_visit,
    packages_left_for_visit,
    printout_mismatches,
    realisation_day,
    realise,
    reduction,
    validity_window,
)

ISSUED = dt.date(2025, 3, 1)
LATER = dt.date(2025, 3, 10)
A = "pharmacy-a"
B = "pharmacy-b"


def day(n: int, start: dt.date = ISSUED) -> dt.date:
    return start + dt.timedelta(days=n)


def rx(kind: Kind = Kind.standard, **changes: Any) -> Prescription:
    # 20 packages of 30 tablets, one a day: 600 units, 6 packages (180 days) per visit.
    base = Prescription(kind=kind, issued_on=ISSUED, packages=20, units_per_package=30, daily_dose_units=1)
    return replace(base, **changes)


def visit(on: dt.date, packages: int = 1, pharmacy: str = A, **changes: Any) -> Visit:
    return replace(Visit(pharmacy_id=pharmacy, on=on, packages=packages), **changes)


# ----------------------------------------------------------------------------- validity windows

# (kind, extended, window days, takes realise_from)
KINDS = [
    (Kind.standard, False, 30, True),
    (Kind.standard, True, 365, True),
    (Kind.antibiotic, False, 7, True),
    (Kind.narcotic, False, 30, False),
    (Kind.psychotropic_in_iip, False, 30, False),
    (Kind.immunological, False, 120, False),
    (Kind.target_import, False, 120, False),
]
KIND_IDS = [f"{k.value}{'-extended' if e else ''}" for k, e, _, _ in KINDS]


@pytest.mark.parametrize(("kind", "extended", "days", "_takes"), KINDS, ids=KIND_IDS)
def test_window_from_the_issue_date(kind: Kind, extended: bool, days: int, _takes: bool) -> None:
    prescription = rx(kind, extended=extended)
    assert validity_window(prescription) == ValidityWindow(ISSUED, day(days))
    for ok in (ISSUED, day(days)):  # first and last day
        assert realise(prescription, NOTHING_DISPENSED, visit(ok)).packages == 1
    for refused in (day(-1), day(days + 1)):  # the day before the issue, the day after the last
        with pytest.raises(OutsideValidity) as err:
            realise(prescription, NOTHING_DISPENSED, visit(refused))
        assert err.value.field == "on"
        assert err.value.status == 422


@pytest.mark.parametrize(("kind", "extended", "days", "takes"), [k for k in KINDS if k[3]], ids=KIND_IDS[:3])
def test_window_from_the_realise_from_date(kind: Kind, extended: bool, days: int, takes: bool) -> None:
    prescription = rx(kind, extended=extended, realise_from=LATER)
    assert validity_window(prescription) == ValidityWindow(LATER, day(days, LATER))
    for ok in (LATER, day(days, LATER)):
        assert realise(prescription, NOTHING_DISPENSED, visit(ok)).packages == 1
    for refused in (ISSUED, day(-1, LATER), day(days + 1, LATER)):
        with pytest.raises(OutsideValidity, match=r"from 2025-03-10|expired"):
            realise(prescription, NOTHING_DISPENSED, visit(refused))


def test_the_domain_example_issued_1_march_realisable_through_31_march() -> None:
    prescription = rx()
    assert realise(prescription, NOTHING_DISPENSED, visit(dt.date(2025, 3, 31))).packages == 1
    with pytest.raises(OutsideValidity, match="until 2025-03-31"):
        realise(prescription, NOTHING_DISPENSED, visit(dt.date(2025, 4, 1)))


def test_realise_from_on_the_issue_date_is_the_same_window() -> None:
    assert validity_window(rx(realise_from=ISSUED)) == validity_window(rx())


@pytest.mark.parametrize(("kind", "extended", "days", "takes"), [k for k in KINDS if not k[3]], ids=KIND_IDS[3:])
def test_kinds_counted_from_the_issue_date_take_no_realise_from(
    kind: Kind, extended: bool, days: int, takes: bool
) -> None:
    with pytest.raises(InvalidPrescription) as err:
        realise(rx(kind, realise_from=LATER), NOTHING_DISPENSED, visit(LATER))
    assert err.value.field == "realise_from"


def test_realise_from_before_the_issue_date_is_refused() -> None:
    with pytest.raises(InvalidPrescription, match="before the issue date"):
        validity_window(rx(realise_from=day(-1)))


@pytest.mark.parametrize("kind", [k for k in Kind if k is not Kind.standard])
def test_only_a_standard_prescription_can_be_extended(kind: Kind) -> None:
    with pytest.raises(InvalidPrescription) as err:
        validity_window(rx(kind, extended=True))
    assert err.value.field == "extended"


def test_partial_realisation_does_not_extend_validity() -> None:
    prescription = rx()
    first = realise(prescription, NOTHING_DISPENSED, visit(day(30), packages=2))
    assert first.packages_remaining == 18
    with pytest.raises(OutsideValidity):
        realise(prescription, first.dispensed, visit(day(31)))


# ----------------------------------------------------------------------------- 180 days per visit


@pytest.mark.parametrize(
    ("units", "dose", "cap"),
    [
        (30, 1, 6),  # 180 / 30
        (28, 1, 6),  # 6 x 28 = 168 days; 7 x 28 = 196
        (60, 2, 6),
        (30, 3, 18),
        (100, Fraction(1, 2), 0),  # one package is 200 days
        (90, Fraction(1, 2), 1),  # exactly 180 days
        (Decimal("7.5"), Decimal("0.25"), 6),  # 7.5 units at 1/4 a day = 30 days a package
        (30, Decimal("0.1"), 0),  # 300 days a package
        (1, 1, 180),
    ],
)
def test_the_most_packages_per_visit(units: int | Decimal, dose: int | Decimal | Fraction, cap: int) -> None:
    assert max_packages_per_visit(rx(units_per_package=units, daily_dose_units=dose)) == cap


def test_exactly_180_days_is_allowed_and_one_more_package_refused() -> None:
    prescription = rx()
    done = realise(prescription, NOTHING_DISPENSED, visit(ISSUED, packages=6))
    assert done.days_of_use == 180
    with pytest.raises(OverVisitCap) as err:
        realise(prescription, NOTHING_DISPENSED, visit(ISSUED, packages=7))
    assert err.value.max_packages == 6
    assert err.value.status == 422
    assert "210 days of use" in err.value.message


def test_the_cap_holds_whoever_issued_it_and_on_every_visit() -> None:
    prescription = rx(extended=True)
    state = NOTHING_DISPENSED
    for n in range(3):
        done = realise(prescription, state, visit(day(n * 10), packages=6))
        state = done.dispensed
    assert state.packages == 18
    with pytest.raises(NothingLeft) as err:
        realise(prescription, state, visit(day(40), packages=3))
    assert err.value.remaining == 2


def test_a_package_longer_than_180_days_cannot_be_dispensed() -> None:
    prescription = rx(units_per_package=100, daily_dose_units=Fraction(1, 2))
    with pytest.raises(OverVisitCap, match="one package is 200 days of use") as err:
        realise(prescription, NOTHING_DISPENSED, visit(ISSUED))
    assert err.value.max_packages == 0


def test_days_of_use_are_exact() -> None:
    done = realise(rx(units_per_package=28), NOTHING_DISPENSED, visit(ISSUED, packages=5))
    assert done.days_of_use == Fraction(140)
    done = realise(rx(daily_dose_units=3), NOTHING_DISPENSED, visit(ISSUED, packages=1))
    assert done.days_of_use == 10
    done = realise(rx(daily_dose_units=Fraction(3, 2)), NOTHING_DISPENSED, visit(ISSUED, packages=1))
    assert done.days_of_use == 20


# ----------------------------------------------------------------------------- partial realisation


def test_partial_realisation_continues_in_the_same_pharmacy_only() -> None:
    prescription = rx()
    first = realise(prescription, NOTHING_DISPENSED, visit(ISSUED, packages=4))
    assert (first.packages, first.packages_remaining, first.dispensed) == (4, 16, Dispensed(4, A, True, 0))
    with pytest.raises(RealisedElsewhere) as err:
        realise(prescription, first.dispensed, visit(day(1), packages=1, pharmacy=B))
    assert err.value.status == 409
    assert err.value.field == "pharmacy_id"
    second = realise(prescription, first.dispensed, visit(day(1), packages=6))
    assert (second.packages_remaining, second.dispensed.packages) == (10, 10)


def test_a_fully_realised_prescription_has_nothing_left_anywhere() -> None:
    prescription = rx(packages=2)
    done = realise(prescription, NOTHING_DISPENSED, visit(ISSUED, packages=2))
    assert done.packages_remaining == 0
    for pharmacy in (A, B):
        with pytest.raises(NothingLeft) as err:
            realise(prescription, done.dispensed, visit(day(1), pharmacy=pharmacy))
        assert err.value.remaining == 0
        assert err.value.status == 422


def test_more_than_left_is_refused_not_cut_down() -> None:
    prescription = rx(packages=3)
    with pytest.raises(NothingLeft, match="4 packages asked but only 3 left") as err:
        realise(prescription, NOTHING_DISPENSED, visit(ISSUED, packages=4))
    assert err.value.remaining == 3


def test_the_visit_must_ask_for_at_least_one_package() -> None:
    with pytest.raises(InvalidPrescription) as err:
        realise(rx(), NOTHING_DISPENSED, visit(ISSUED, packages=0))
    assert err.value.field == "packages"


@pytest.mark.parametrize(
    ("before", "field"),
    [
        (Dispensed(packages=1, pharmacy_id=None, reduction_applied=True), "dispensed_pharmacy_id"),
        (Dispensed(packages=0, reduced_packages=2), "reduced_packages"),
        (Dispensed(packages=15, pharmacy_id=A, reduction_applied=True, reduced_packages=6), "dispensed_packages"),
        (Dispensed(packages=-1), "dispensed_packages"),
    ],
)
def test_an_inconsistent_history_is_refused(before: Dispensed, field: str) -> None:
    with pytest.raises(InvalidPrescription) as err:
        realise(rx(), before, visit(ISSUED))
    assert err.value.field == field


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"units_per_package": 30.0}, "units_per_package"),
        ({"daily_dose_units": 0.5}, "daily_dose_units"),
        ({"daily_dose_units": 0}, "daily_dose_units"),
        ({"daily_dose_units": Decimal("NaN")}, "daily_dose_units"),
        ({"units_per_package": -1}, "units_per_package"),
        ({"packages": 0}, "packages_prescribed"),
        ({"packages": True}, "packages_prescribed"),
    ],
)
def test_bad_prescription_data_is_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidPrescription) as err:
        realise(rx(**changes), NOTHING_DISPENSED, visit(ISSUED))
    assert err.value.field == field


def test_every_refusal_is_a_realisation_error_with_a_field_and_a_sentence() -> None:
    with pytest.raises(RealisationError) as err:
        realise(rx(), NOTHING_DISPENSED, visit(day(99)))
    assert err.value.field == "on"
    assert str(err.value) == err.value.message
    assert err.value.message.endswith("it has expired")


# ----------------------------------------------------------------------------- the 365-day reduction

START = dt.date(2025, 1, 1)


def extended(packages: int = 20, units: int = 30, dose: int | Fraction = 1, **changes: Any) -> Prescription:
    return rx(
        issued_on=START, extended=True, packages=packages, units_per_package=units, daily_dose_units=dose, **changes
    )


@pytest.mark.parametrize(
    ("elapsed", "packages", "units", "dose", "reduced"),
    [
        (0, 20, 30, 1, 0),
        (29, 20, 30, 1, 0),
        (30, 20, 30, 1, 0),  # 30 days have not yet "passed" beyond the grace: no reduction
        (31, 20, 30, 1, 2),  # 31 days x 1 = 31 units: 569 left -> 18 whole packages, 2 removed
        (32, 20, 30, 1, 2),
        (59, 20, 30, 1, 2),  # 59 units: 541 left -> 18
        (60, 20, 30, 1, 2),  # 60 units: exactly 2 packages
        (61, 20, 30, 1, 3),
        (31, 12, 30, 2, 3),  # 62 units of 360: 298 -> 9 packages
        (31, 12, 30, Fraction(1, 2), 1),  # 15.5 units -> one package removed (rounded down)
        (31, 4, 100, Fraction(1, 10), 1),  # 3.1 units of 400 -> 396.9 -> 3 packages
        (200, 6, 30, 1, 6),  # 200 units of 180: nothing left, never negative
        (365, 20, 30, 1, 13),  # 600 - 365 = 235 -> 7 packages
    ],
)
def test_reduction_around_the_30_day_threshold(
    elapsed: int, packages: int, units: int, dose: int | Fraction, reduced: int
) -> None:
    prescription = extended(packages, units, dose)
    assert reduction(prescription, day(elapsed, START)) == reduced


@pytest.mark.parametrize(("elapsed", "reduced"), [(30, 0), (31, 2), (61, 3)])
def test_reduction_counts_from_the_realise_from_date(elapsed: int, reduced: int) -> None:
    later = day(10, START)
    prescription = extended(realise_from=later)
    assert reduction(prescription, day(elapsed, later)) == reduced
    assert reduction(prescription, day(elapsed + 10, START)) == reduced


def test_reduction_only_for_extended_prescriptions() -> None:
    assert reduction(rx(issued_on=START), day(31, START)) == 0


def test_reduction_is_applied_at_the_first_realisation_and_reported() -> None:
    prescription = extended()
    first = realise(prescription, NOTHING_DISPENSED, visit(day(61, START), packages=6))
    assert (first.packages, first.packages_remaining, first.reduced_packages) == (6, 11, 3)
    assert first.reduction_applied_now
    assert first.dispensed == Dispensed(packages=6, pharmacy_id=A, reduction_applied=True, reduced_packages=3)
    # Much later: never again.
    second = realise(prescription, first.dispensed, visit(day(300, START), packages=6))
    assert (second.packages_remaining, second.reduced_packages, second.reduction_applied_now) == (5, 3, False)


def test_no_reduction_ever_when_the_first_realisation_is_within_30_days() -> None:
    prescription = extended()
    first = realise(prescription, NOTHING_DISPENSED, visit(day(30, START), packages=1))
    assert (first.reduced_packages, first.reduction_applied_now, first.packages_remaining) == (0, False, 19)
    assert first.dispensed.reduction_applied
    later = realise(prescription, first.dispensed, visit(day(200, START), packages=6))
    assert (later.reduced_packages, later.packages_remaining) == (0, 13)


def test_a_reduction_that_leaves_nothing_refuses_and_says_why() -> None:
    prescription = extended(packages=6)
    with pytest.raises(NothingLeft, match="200 days elapsed since 2025-01-01 uses up all 6 packages") as err:
        realise(prescription, NOTHING_DISPENSED, visit(day(200, START)))
    assert err.value.remaining == 0


def test_asking_more_than_left_after_the_reduction() -> None:
    prescription = extended(packages=4)  # 120 units; 61 days -> 59 units -> 1 package
    with pytest.raises(NothingLeft, match="only 1 left") as err:
        realise(prescription, NOTHING_DISPENSED, visit(day(61, START), packages=2))
    assert err.value.remaining == 1


def test_the_last_day_of_an_extended_prescription() -> None:
    done = realise(extended(), NOTHING_DISPENSED, visit(day(365, START), packages=6))
    assert (done.packages, done.packages_remaining, done.reduced_packages) == (6, 1, 13)


# ----------------------------------------------------------------------------- outage


def outage(found_by: FoundBy = FoundBy.printout, **changes: Any) -> Visit:
    base = visit(ISSUED, found_by=found_by, outage=True, signed_statement=True, identity_document=True)
    return replace(base, **changes)


def test_outage_realisation_on_printout_id_and_signed_statement_is_recorded() -> None:
    done = realise(rx(), NOTHING_DISPENSED, outage())
    assert done.outage
    assert done.packages == 1
    assert not realise(rx(), NOTHING_DISPENSED, visit(ISSUED)).outage


def test_outage_never_on_access_code_and_pesel_even_with_a_statement() -> None:
    with pytest.raises(OutageNotAllowed, match="access code and PESEL alone") as err:
        realise(rx(), NOTHING_DISPENSED, outage(FoundBy.access_code_pesel))
    assert err.value.field == "found_by"
    assert err.value.status == 422


def test_outage_not_on_a_bare_key() -> None:
    with pytest.raises(OutageNotAllowed, match="printout") as err:
        realise(rx(), NOTHING_DISPENSED, outage(FoundBy.key))
    assert err.value.field == "found_by"


@pytest.mark.parametrize(
    ("changes", "field"),
    [({"signed_statement": False}, "signed_statement"), ({"identity_document": False}, "identity_document")],
)
def test_outage_needs_the_statement_and_an_identity_document(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(OutageNotAllowed) as err:
        realise(rx(), NOTHING_DISPENSED, outage(**changes))
    assert err.value.field == field


def test_outage_cannot_continue_a_partial_realisation() -> None:
    first = realise(rx(), NOTHING_DISPENSED, visit(ISSUED, packages=2))
    with pytest.raises(OutageNotAllowed, match="already partly realised"):
        realise(rx(), first.dispensed, outage(on=day(1)))


def test_outage_keeps_every_other_rule() -> None:
    with pytest.raises(OutsideValidity):
        realise(rx(), NOTHING_DISPENSED, outage(on=day(31)))
    with pytest.raises(OverVisitCap):
        realise(rx(), NOTHING_DISPENSED, outage(packages=7))


@pytest.mark.parametrize("found_by", list(FoundBy))
def test_every_lookup_works_when_the_system_is_up(found_by: FoundBy) -> None:
    assert realise(rx(), NOTHING_DISPENSED, visit(ISSUED, found_by=found_by)).packages == 1


# ----------------------------------------------------------------------------- the realisation date

TODAY = dt.date(2025, 3, 20)


def test_a_realisation_is_dated_today_whatever_else_is_known() -> None:
    assert realisation_day(TODAY, None, outage=False, p1_down_since=None) == TODAY
    assert realisation_day(TODAY, None, outage=True, p1_down_since=day(-3, TODAY)) == TODAY


@pytest.mark.parametrize("asked", [day(-1, TODAY), TODAY, day(1, TODAY)])
def test_outside_an_outage_no_date_may_be_chosen_not_even_today(asked: dt.date) -> None:
    with pytest.raises(RealisationError, match="only for an outage realisation") as refused:
        realisation_day(TODAY, asked, outage=False, p1_down_since=day(-5, TODAY))
    assert refused.value.field == "on"


def test_an_outage_realisation_is_dated_from_the_day_p1_went_down_through_today() -> None:
    down = day(-2, TODAY)
    assert realisation_day(TODAY, down, outage=True, p1_down_since=down) == down
    assert realisation_day(TODAY, day(-1, TODAY), outage=True, p1_down_since=down) == day(-1, TODAY)
    assert realisation_day(TODAY, TODAY, outage=True, p1_down_since=down) == TODAY
    assert realisation_day(TODAY, TODAY, outage=True, p1_down_since=TODAY) == TODAY


def test_an_outage_realisation_is_never_dated_before_p1_went_down() -> None:
    with pytest.raises(RealisationError, match="down since 2025-03-18"):
        realisation_day(TODAY, day(-3, TODAY), outage=True, p1_down_since=day(-2, TODAY))


def test_an_outage_realisation_is_never_dated_in_the_future() -> None:
    with pytest.raises(RealisationError, match="in the future"):
        realisation_day(TODAY, day(1, TODAY), outage=True, p1_down_since=day(-2, TODAY))


def test_an_outage_realisation_without_a_known_outage_is_dated_today_only() -> None:
    with pytest.raises(RealisationError, match="not known to be down"):
        realisation_day(TODAY, day(-1, TODAY), outage=True, p1_down_since=None)


# ----------------------------------------------------------------------------- one visit: one pharmacy, one day


def test_what_was_dispensed_earlier_the_same_day_counts_towards_the_visits_180_days() -> None:
    before = Dispensed(packages=3, pharmacy_id=A, reduction_applied=True)

    assert realise(rx(), before, visit(LATER, 3, dispensed_today=3)).packages == 3  # 6 packages: 180 days
    with pytest.raises(OverVisitCap, match="already dispensed here today") as over:
        realise(rx(), before, visit(LATER, 4, dispensed_today=3))
    assert over.value.max_packages == 3 and over.value.field == "packages"


def test_a_visit_that_had_its_180_days_gets_nothing_more_that_day_and_all_again_the_next() -> None:
    before = Dispensed(packages=6, pharmacy_id=A, reduction_applied=True)

    with pytest.raises(OverVisitCap, match="nothing more today") as over:
        realise(rx(), before, visit(LATER, 1, dispensed_today=6))
    assert over.value.max_packages == 0
    assert realise(rx(), before, visit(day(1, LATER), 6, dispensed_today=0)).packages_remaining == 8


def test_dispensed_today_cannot_exceed_what_was_ever_dispensed() -> None:
    with pytest.raises(InvalidPrescription, match="dispensed today"):
        realise(rx(), Dispensed(packages=2, pharmacy_id=A, reduction_applied=True), visit(LATER, 1, dispensed_today=3))


@pytest.mark.parametrize(("today", "left"), [(0, 6), (1, 5), (5, 1), (6, 0), (7, 0)])
def test_packages_left_for_the_visit(today: int, left: int) -> None:
    assert packages_left_for_visit(rx(), today) == left


# ---------------------------------------------------------------- an outage printout against what P1 showed

SEEN = PrescriptionData(
    package_key="7" * 44,
    patient="digest-of-the-patient",
    drug="Metformax 500",
    kind="standard",
    issued_on=ISSUED,
    valid_from=ISSUED,
    packages=2,
    units_per_package=Decimal("30"),
    daily_dose_units=Decimal("1"),
)


def test_a_printout_matching_what_p1_showed_passes_whatever_the_spelling_of_the_drug() -> None:
    shown = replace(SEEN, drug="  metformax   500 ", units_per_package=30, daily_dose_units=Fraction(2, 2))
    assert printout_mismatches(shown, SEEN) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"package_key": "6" * 44}, "package_key"),
        ({"patient": "digest-of-someone-else"}, "patient_pesel"),
        ({"drug": "Metformax 850"}, "drug"),
        ({"kind": "extended"}, "kind"),
        ({"issued_on": day(-1)}, "issued_on"),
        ({"valid_from": day(3)}, "valid_from"),
        ({"packages": 3}, "packages"),
        ({"units_per_package": Decimal("60")}, "units_per_package"),
        ({"daily_dose_units": Decimal("0.5")}, "daily_dose_units"),
    ],
)
def test_each_field_of_a_printout_that_differs_is_named(change: dict[str, Any], field: str) -> None:
    found = printout_mismatches(replace(SEEN, **change), SEEN)
    assert [f for f, _ in found] == [field]
    assert "digest" not in found[0][1]  # the patient's digest is never shown


def test_an_unknown_patient_is_not_compared_but_the_rest_is() -> None:
    assert printout_mismatches(replace(SEEN, patient="anyone"), replace(SEEN, patient=None)) == []
    assert [f for f, _ in printout_mismatches(replace(SEEN, packages=4), replace(SEEN, patient=None))] == ["packages"]

"""Property tests of the realisation arithmetic over any sequence of visits."""

from __future__ import annotations

import datetime as dt
import math
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from services.pharmacy.realisation import (
    MAX_DAYS_PER_VISIT,
    NOTHING_DISPENSED,
    Dispensed,
    Kind,
    NothingLeft,
    OutsideValidity,
    OverVisitCap,
    Prescription,
    RealisationError,
    RealisedElsewhere,
    Visit,
    realise,
    reduction,
    validity_window,
)

ISSUED = dt.date(2025, 1, 1)

doses = st.fractions(min_value=Fraction(1, 8), max_value=8, max_denominator=8)
units = st.integers(min_value=1, max_value=200)


@st.composite
def prescriptions(draw: st.DrawFn) -> Prescription:
    kind = draw(st.sampled_from(list(Kind)))
    is_extended = kind is Kind.standard and draw(st.booleans())
    realise_from = None
    if kind in (Kind.standard, Kind.antibiotic) and draw(st.booleans()):
        realise_from = ISSUED + dt.timedelta(days=draw(st.integers(0, 60)))
    return Prescription(
        kind=kind,
        issued_on=ISSUED,
        packages=draw(st.integers(1, 60)),
        units_per_package=draw(units),
        daily_dose_units=draw(doses),
        extended=is_extended,
        realise_from=realise_from,
    )


visits = st.lists(
    st.tuples(st.integers(0, 60), st.integers(1, 40), st.sampled_from(["A", "B"])), min_size=1, max_size=12
)


@settings(max_examples=400)
@given(prescriptions(), visits)
def test_any_sequence_of_visits_keeps_the_books(prescription: Prescription, steps: list[tuple[int, int, str]]) -> None:
    window = validity_window(prescription)
    on = ISSUED
    state = NOTHING_DISPENSED
    reductions_applied = 0
    for gap, asked, pharmacy in steps:
        on += dt.timedelta(days=gap)
        try:
            done = realise(prescription, state, Visit(pharmacy_id=pharmacy, on=on, packages=asked))
        except RealisedElsewhere:
            assert state.packages > 0 and state.pharmacy_id != pharmacy
            continue
        except OutsideValidity:
            assert not window.contains(on)
            continue
        except (NothingLeft, OverVisitCap) as refused:
            assert refused.status == 422
            continue
        assert window.contains(on)
        # never more than 180 days of use in one visit, and what is reported is exact
        assert done.days_of_use <= MAX_DAYS_PER_VISIT
        assert done.days_of_use == Fraction(asked) * Fraction(prescription.units_per_package) / Fraction(
            prescription.daily_dose_units
        )
        assert done.packages == asked
        # the reduction: once, at the first realisation, never negative
        assert done.reduced_packages >= 0
        if done.reduction_applied_now:
            reductions_applied += 1
            assert state == NOTHING_DISPENSED
        else:
            assert done.reduced_packages == state.reduced_packages
        # dispensed + remaining + reduced == prescribed
        after = done.dispensed
        assert after.packages + done.packages_remaining + done.reduced_packages == prescription.packages
        assert done.packages_remaining >= 0
        assert after.pharmacy_id == pharmacy
        if state.packages:
            assert state.pharmacy_id == pharmacy
        state = after
    assert reductions_applied <= 1
    assert state.packages + state.reduced_packages <= prescription.packages


@settings(max_examples=300)
@given(prescriptions(), st.integers(0, 400), st.integers(1, 400))
def test_a_single_visit_is_either_refused_or_within_every_limit(
    prescription: Prescription, offset: int, asked: int
) -> None:
    on = ISSUED + dt.timedelta(days=offset)
    try:
        done = realise(prescription, NOTHING_DISPENSED, Visit(pharmacy_id="A", on=on, packages=asked))
    except RealisationError as refused:
        assert refused.field and refused.message
        return
    cap = math.floor(
        MAX_DAYS_PER_VISIT * Fraction(prescription.daily_dose_units) / Fraction(prescription.units_per_package)
    )
    assert 1 <= done.packages <= cap
    assert done.packages + done.packages_remaining + done.reduced_packages == prescription.packages


@given(st.integers(1, 60), units, doses, st.integers(0, 400))
def test_reduction_is_bounded_and_monotonic(packages: int, per_package: int, dose: Fraction, elapsed: int) -> None:
    prescription = Prescription(
        kind=Kind.standard,
        issued_on=ISSUED,
        packages=packages,
        units_per_package=per_package,
        daily_dose_units=dose,
        extended=True,
    )
    on = ISSUED + dt.timedelta(days=elapsed)
    removed = reduction(prescription, on)
    assert 0 <= removed <= packages
    if elapsed <= 30:
        assert removed == 0
    else:
        # exactly the whole packages still covering the units the elapsed days did not use
        left_units = packages * per_package - elapsed * dose
        assert (
            (packages - removed) * per_package <= max(left_units, Fraction(0)) < (packages - removed + 1) * per_package
        )
    assert reduction(prescription, on + dt.timedelta(days=1)) >= removed


@given(st.integers(1, 60), st.integers(31, 365))
def test_reduction_removes_at_least_the_elapsed_days_in_whole_packages(packages: int, elapsed: int) -> None:
    # one unit a day, 30 units a package: elapsed days remove ceil(elapsed / 30) packages (at most all)
    prescription = Prescription(Kind.standard, ISSUED, packages, 30, 1, extended=True)
    assert reduction(prescription, ISSUED + dt.timedelta(days=elapsed)) == min(packages, -(-elapsed // 30))


def test_dispensed_state_defaults() -> None:
    assert Dispensed() == NOTHING_DISPENSED

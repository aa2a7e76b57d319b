"""Facility activation of prescription ordering: demo 3 months, full 12 months, month clamping."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.prescriptions.domain import PrescriptionError, ServiceActivation, ServiceMode, add_months

D = dt.date


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (D(2026, 1, 15), 3, D(2026, 4, 15)),
        (D(2026, 11, 30), 3, D(2027, 2, 28)),
        (D(2027, 11, 30), 3, D(2028, 2, 29)),
        (D(2028, 2, 29), 12, D(2029, 2, 28)),
        (D(2026, 10, 31), 12, D(2027, 10, 31)),
        (D(2026, 12, 31), 3, D(2027, 3, 31)),
        (D(2026, 3, 31), -1, D(2026, 2, 28)),
    ],
)
def test_add_months_clamps_to_month_end(start: dt.date, months: int, expected: dt.date) -> None:
    assert add_months(start, months) == expected


def test_demo_is_active_through_three_months_inclusive() -> None:
    service = ServiceActivation(ServiceMode.DEMO, D(2026, 11, 30))
    assert service.active_until == D(2027, 2, 28)
    assert not service.is_active(D(2026, 11, 29))
    assert service.is_active(D(2026, 11, 30))
    assert service.is_active(D(2027, 2, 28))
    assert not service.is_active(D(2027, 3, 1))


def test_full_is_active_twelve_months() -> None:
    service = ServiceActivation(ServiceMode.FULL, D(2026, 5, 10))
    assert service.active_until == D(2027, 5, 10)
    assert service.is_active(D(2027, 5, 10))
    assert not service.is_active(D(2027, 5, 11))


def test_off_is_never_active() -> None:
    service = ServiceActivation(ServiceMode.OFF)
    assert service.active_until is None
    assert not service.is_active(D(2026, 1, 1))


def test_off_with_a_date_and_on_without_one_are_refused() -> None:
    with pytest.raises(PrescriptionError) as error:
        ServiceActivation(ServiceMode.OFF, D(2026, 1, 1))
    assert error.value.field == "activated_on"
    for mode in (ServiceMode.DEMO, ServiceMode.FULL):
        with pytest.raises(PrescriptionError) as error:
            ServiceActivation(mode)
        assert error.value.field == "activated_on"


@given(st.dates(min_value=D(2000, 1, 1), max_value=D(2100, 12, 31)), st.integers(0, 120))
def test_add_months_lands_in_the_right_month_never_later_day(start: dt.date, months: int) -> None:
    moved = add_months(start, months)
    assert (moved.year * 12 + moved.month) - (start.year * 12 + start.month) == months
    assert moved.day <= start.day
    assert moved.day == start.day or (moved + dt.timedelta(days=1)).day == 1

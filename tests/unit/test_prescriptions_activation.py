"""Facility activation of prescription ordering: demo 3 months once, full 12 months from today, month clamping."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.prescriptions.domain import (
    PrescriptionError,
    ServiceActivation,
    ServiceMode,
    add_months,
    next_activation,
)

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


TODAY = D(2026, 12, 8)
OFF = ServiceActivation(ServiceMode.OFF)
DEMO, FULL = ServiceMode.DEMO, ServiceMode.FULL


def refused(field: str, *args: object) -> str:
    with pytest.raises(PrescriptionError) as error:
        next_activation(*args)  # type: ignore[arg-type]
    assert error.value.field == field
    return error.value.message


@pytest.mark.parametrize("mode", [DEMO, FULL])
def test_demo_and_full_start_today_whether_the_date_is_left_out_or_is_today(mode: ServiceMode) -> None:
    for sent in (None, TODAY):
        assert next_activation(OFF, False, mode, TODAY, sent) == ServiceActivation(mode, TODAY)


@pytest.mark.parametrize("sent", [TODAY - dt.timedelta(days=1), TODAY + dt.timedelta(days=1), D(2000, 1, 1)])
@pytest.mark.parametrize("mode", [DEMO, FULL])
def test_any_date_but_today_is_refused(mode: ServiceMode, sent: dt.date) -> None:
    message = refused("activated_on", OFF, False, mode, TODAY, sent)
    assert "today (2026-12-08)" in message and sent.isoformat() in message


def test_off_has_no_date_and_keeps_nothing_running() -> None:
    assert next_activation(ServiceActivation(FULL, TODAY), True, ServiceMode.OFF, TODAY) == OFF
    assert "no activation date" in refused("activated_on", OFF, False, ServiceMode.OFF, TODAY, TODAY)


def test_demo_once_even_after_it_was_switched_off_or_expired() -> None:
    running = ServiceActivation(DEMO, D(2026, 9, 8))  # last active day: 2026-12-08
    expired = ServiceActivation(DEMO, D(2026, 9, 7))  # last active day: 2026-12-07
    assert next_activation(running, True, DEMO, TODAY) == running  # asked again while it runs: kept
    for current in (expired, OFF, ServiceActivation(FULL, D(2026, 1, 1))):
        message = refused("mode", current, True, DEMO, TODAY, None)
        assert "can now only be bought (mode full)" in message
    assert next_activation(OFF, False, DEMO, TODAY) == ServiceActivation(DEMO, TODAY)  # never used: allowed


def test_from_demo_full_is_bought_today_and_a_running_full_keeps_its_period() -> None:
    demo = ServiceActivation(DEMO, D(2026, 11, 1))
    assert next_activation(demo, True, FULL, TODAY) == ServiceActivation(FULL, TODAY)
    bought = ServiceActivation(FULL, D(2025, 12, 8))  # last active day: today
    assert next_activation(bought, True, FULL, TODAY) == bought
    assert next_activation(bought, True, FULL, TODAY + dt.timedelta(days=1)) == ServiceActivation(
        FULL, TODAY + dt.timedelta(days=1)
    )  # expired the day before: bought again from that day

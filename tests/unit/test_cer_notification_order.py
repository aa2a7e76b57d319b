"""Which CeR notification about one slot and patient wins (DOMAIN.md 6): the newest; at the same
instant the cancellation, which cannot precede the booking it cancels."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scheduling.domain import CER_CANCELLATION, cer_notification_stale

AT = dt.datetime(2026, 11, 24, 10, 0, tzinfo=dt.UTC)
SECOND = dt.timedelta(seconds=1)
BOOKINGS = ["booking_created_ikp", "booking_created_other_entity", "booking_created_waiting_list"]
TYPES = [*BOOKINGS, CER_CANCELLATION]


@pytest.mark.parametrize("booking", BOOKINGS)
def test_at_the_same_instant_a_cancellation_after_its_booking_is_applied(booking: str) -> None:
    assert cer_notification_stale(booking, AT, CER_CANCELLATION, AT) is False


@pytest.mark.parametrize("booking", BOOKINGS)
def test_at_the_same_instant_a_booking_after_its_cancellation_is_stale(booking: str) -> None:
    assert cer_notification_stale(CER_CANCELLATION, AT, booking, AT) is True


@pytest.mark.parametrize("last", TYPES)
@pytest.mark.parametrize("new", BOOKINGS)
def test_at_the_same_instant_nothing_but_a_cancellation_of_a_booking_changes_anything(last: str, new: str) -> None:
    assert cer_notification_stale(last, AT, new, AT) is True
    assert cer_notification_stale(CER_CANCELLATION, AT, CER_CANCELLATION, AT) is True


@pytest.mark.parametrize("last", TYPES)
@pytest.mark.parametrize("new", TYPES)
def test_a_second_apart_the_newer_wins_whatever_the_types(last: str, new: str) -> None:
    assert cer_notification_stale(last, AT, new, AT + SECOND) is False
    assert cer_notification_stale(last, AT, new, AT - SECOND) is True


@given(
    last=st.sampled_from(TYPES),
    new=st.sampled_from(TYPES),
    last_at=st.datetimes(timezones=st.just(dt.UTC)),
    new_at=st.datetimes(timezones=st.just(dt.UTC)),
)
def test_of_two_notifications_applied_in_either_order_exactly_one_order_ends_with_the_winner(
    last: str, new: str, last_at: dt.datetime, new_at: dt.datetime
) -> None:
    # Applied in both orders, the same one must come out on top (arrival order does not matter),
    # unless they are the same fact at the same instant (then neither changes anything).
    first_then_second = not cer_notification_stale(last, last_at, new, new_at)
    second_then_first = not cer_notification_stale(new, new_at, last, last_at)
    if last_at == new_at and (last == new or (last != CER_CANCELLATION and new != CER_CANCELLATION)):
        assert not first_then_second and not second_then_first
    else:
        assert first_then_second != second_then_first

"""Scheduling rules as pure functions: slot cutting, DST, overlap, reassignment, absence windows."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scheduling import domain
from services.scheduling.domain import (
    MAX_VISIT_MINUTES,
    MIN_VISIT_MINUTES,
    BookedVisit,
    Candidate,
    Interval,
    ScheduleError,
    absence_window,
    cut_slots,
    first_overlap,
    reassignment_candidates,
)

WARSAW = ZoneInfo("Europe/Warsaw")
WINTER_DAY = dt.date(2030, 3, 4)  # CET, UTC+1
SUMMER_DAY = dt.date(2030, 7, 1)  # CEST, UTC+2
SPRING_FORWARD = dt.date(2026, 3, 29)  # 02:00 CET -> 03:00 CEST
FALL_BACK = dt.date(2026, 10, 25)  # 03:00 CEST -> 02:00 CET


def utc(year: int, month: int, day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=dt.UTC)


def at(hour: int, minute: int = 0) -> dt.time:
    return dt.time(hour, minute)


# ----------------------------------------------------------------------------- cutting


def test_an_uneven_end_leaves_the_remainder_unslotted() -> None:
    slots = cut_slots(WINTER_DAY, at(8), at(9, 10), 20, WARSAW)
    assert [(s.start, s.end) for s in slots] == [
        (utc(2030, 3, 4, 7, 0), utc(2030, 3, 4, 7, 20)),
        (utc(2030, 3, 4, 7, 20), utc(2030, 3, 4, 7, 40)),
        (utc(2030, 3, 4, 7, 40), utc(2030, 3, 4, 8, 0)),
    ]


def test_an_exact_fit_uses_the_whole_working_time() -> None:
    slots = cut_slots(WINTER_DAY, at(8), at(9), 15, WARSAW)
    assert len(slots) == 4
    assert slots[-1].end == utc(2030, 3, 4, 8, 0)


def test_every_instant_is_timezone_aware_utc() -> None:
    for slot in cut_slots(SUMMER_DAY, at(8), at(10), 30, WARSAW):
        assert slot.start.utcoffset() == dt.timedelta(0)
        assert slot.end.utcoffset() == dt.timedelta(0)


def test_summer_and_winter_days_use_their_own_offset() -> None:
    assert cut_slots(WINTER_DAY, at(8), at(8, 30), 30, WARSAW)[0].start == utc(2030, 3, 4, 7)
    assert cut_slots(SUMMER_DAY, at(8), at(8, 30), 30, WARSAW)[0].start == utc(2030, 7, 1, 6)


def test_a_working_time_shorter_than_one_visit_is_refused_on_end_time() -> None:
    with pytest.raises(ScheduleError) as caught:
        cut_slots(WINTER_DAY, at(8), at(8, 15), 20, WARSAW)
    assert caught.value.field == "end_time"
    assert "shorter than one visit" in caught.value.message


@pytest.mark.parametrize(("start", "end"), [(at(9), at(8)), (at(9), at(9))])
def test_an_end_not_after_the_start_is_refused_on_end_time(start: dt.time, end: dt.time) -> None:
    with pytest.raises(ScheduleError) as caught:
        cut_slots(WINTER_DAY, start, end, 20, WARSAW)
    assert caught.value.field == "end_time"


@pytest.mark.parametrize("minutes", [MIN_VISIT_MINUTES - 1, 0, -20, MAX_VISIT_MINUTES + 1])
def test_visit_length_outside_5_to_480_minutes_is_refused(minutes: int) -> None:
    with pytest.raises(ScheduleError) as caught:
        cut_slots(WINTER_DAY, at(0), at(23, 59), minutes, WARSAW)
    assert caught.value.field == "visit_minutes"


@pytest.mark.parametrize("minutes", [MIN_VISIT_MINUTES, MAX_VISIT_MINUTES])
def test_visit_length_bounds_are_inclusive(minutes: int) -> None:
    slots = cut_slots(WINTER_DAY, at(8), at(16), minutes, WARSAW)
    assert len(slots) == 8 * 60 // minutes
    assert all(s.end - s.start == dt.timedelta(minutes=minutes) for s in slots)


# ----------------------------------------------------------------------------- DST change days


def test_daytime_slots_on_the_spring_forward_day_are_in_summer_time() -> None:
    slots = cut_slots(SPRING_FORWARD, at(8), at(9), 30, WARSAW)
    assert [s.start for s in slots] == [utc(2026, 3, 29, 6, 0), utc(2026, 3, 29, 6, 30)]


def test_daytime_slots_on_the_fall_back_day_are_in_winter_time() -> None:
    slots = cut_slots(FALL_BACK, at(8), at(9), 30, WARSAW)
    assert [s.start for s in slots] == [utc(2026, 10, 25, 7, 0), utc(2026, 10, 25, 7, 30)]


def test_a_night_shift_across_spring_forward_offers_only_the_hours_that_exist() -> None:
    # 01:00-04:00 on the clock is two real hours on this day: 02:00-03:00 does not exist.
    slots = cut_slots(SPRING_FORWARD, at(1), at(4), 30, WARSAW)
    assert [s.start for s in slots] == [
        utc(2026, 3, 29, 0, 0),  # 01:00 CET
        utc(2026, 3, 29, 0, 30),  # 01:30 CET
        utc(2026, 3, 29, 1, 0),  # 03:00 CEST
        utc(2026, 3, 29, 1, 30),  # 03:30 CEST
    ]
    assert_no_overlap_and_exact_length(slots, 30)


def test_a_night_shift_across_fall_back_covers_the_repeated_hour_with_real_visits() -> None:
    # 01:00-04:00 on the clock is four real hours on this day: 02:00-03:00 happens twice.
    slots = cut_slots(FALL_BACK, at(1), at(4), 30, WARSAW)
    assert slots[0].start == utc(2026, 10, 24, 23, 0)  # 01:00 CEST
    assert slots[-1].end == utc(2026, 10, 25, 3, 0)  # 04:00 CET
    assert len(slots) == 8
    assert_no_overlap_and_exact_length(slots, 30)


def assert_no_overlap_and_exact_length(slots: list[Interval], minutes: int) -> None:
    for slot in slots:
        assert slot.end - slot.start == dt.timedelta(minutes=minutes)
    for earlier, later in itertools.pairwise(slots):
        assert earlier.end <= later.start


# ----------------------------------------------------------------------------- properties


@st.composite
def working_times(draw: st.DrawFn) -> tuple[dt.date, dt.time, dt.time, int]:
    # Every DST change day of a few years is drawn often, not left to chance.
    dst_days = [dt.date(y, 3, d) for y, d in ((2026, 29), (2027, 28), (2028, 26))]
    dst_days += [dt.date(y, 10, d) for y, d in ((2026, 25), (2027, 31), (2028, 29))]
    any_day = st.dates(min_value=dt.date(2024, 1, 1), max_value=dt.date(2032, 12, 31))
    day = draw(st.one_of(any_day, st.sampled_from(dst_days)))
    start_minute = draw(st.integers(min_value=0, max_value=23 * 60 + 54))
    end_minute = draw(st.integers(min_value=start_minute + 1, max_value=23 * 60 + 59))
    visit = draw(st.integers(min_value=MIN_VISIT_MINUTES, max_value=MAX_VISIT_MINUTES))
    return day, at(*divmod(start_minute, 60)), at(*divmod(end_minute, 60)), visit


@given(working_times())
def test_slots_never_overlap_and_each_lasts_exactly_one_visit(case: tuple[dt.date, dt.time, dt.time, int]) -> None:
    day, start, end, visit = case
    try:
        slots = cut_slots(day, start, end, visit, WARSAW)
    except ScheduleError as exc:
        assert exc.field == "end_time"
        return
    assert slots
    assert_no_overlap_and_exact_length(slots, visit)
    assert all(not a.overlaps(b) for i, a in enumerate(slots) for b in slots[i + 1 :])


@given(working_times())
def test_slot_count_is_the_whole_visits_that_fit(case: tuple[dt.date, dt.time, dt.time, int]) -> None:
    day, start, end, visit = case
    first = dt.datetime.combine(day, start, tzinfo=WARSAW).astimezone(dt.UTC)
    last = dt.datetime.combine(day, end, tzinfo=WARSAW).astimezone(dt.UTC)
    fitting = (last - first) // dt.timedelta(minutes=visit)
    if fitting < 1:
        with pytest.raises(ScheduleError):
            cut_slots(day, start, end, visit, WARSAW)
        return
    slots = cut_slots(day, start, end, visit, WARSAW)
    assert len(slots) == fitting
    assert slots[0].start == first
    assert slots[-1].end <= last


# ----------------------------------------------------------------------------- overlap


def iv(start_hour: float, end_hour: float) -> Interval:
    base = utc(2030, 3, 4, 0)
    return Interval(base + dt.timedelta(hours=start_hour), base + dt.timedelta(hours=end_hour))


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        (iv(8, 10), iv(10, 12), False),  # touching at 10:00
        (iv(10, 12), iv(8, 10), False),
        (iv(8, 10), iv(9.5, 11), True),
        (iv(8, 12), iv(9, 10), True),  # containment
        (iv(8, 10), iv(8, 10), True),  # identical
        (iv(8, 9), iv(11, 12), False),
    ],
)
def test_intervals_are_half_open(a: Interval, b: Interval, expected: bool) -> None:
    assert a.overlaps(b) is expected
    assert b.overlaps(a) is expected


def test_first_overlap_names_the_existing_interval_hit() -> None:
    existing = [iv(6, 8), iv(12, 14), iv(15, 16)]
    assert first_overlap([iv(8, 9), iv(13, 13.5)], existing) == iv(12, 14)
    assert first_overlap([iv(8, 12), iv(14, 15)], existing) is None
    assert first_overlap([], existing) is None


# ----------------------------------------------------------------------------- reassignment

START = utc(2030, 3, 4, 7)
VISIT = BookedVisit(booking_id="b1", location_id="loc-1", work_type_id="wt-1", start=START)


def cand(
    slot: str, practitioner: str, *, location: str = "loc-1", work: str = "wt-1", start: dt.datetime = START
) -> Candidate:
    return Candidate(slot_id=slot, practitioner_id=practitioner, location_id=location, work_type_id=work, start=start)


def test_only_another_practitioner_at_the_same_place_time_and_work_qualifies() -> None:
    free = [
        cand("s-absent", "dr-absent"),
        cand("s-other-loc", "dr-b", location="loc-2"),
        cand("s-other-work", "dr-b", work="wt-2"),
        cand("s-other-time", "dr-b", start=START + dt.timedelta(minutes=20)),
        cand("s-good", "dr-b"),
    ]
    assert [c.slot_id for c in reassignment_candidates(VISIT, free, "dr-absent", set())] == ["s-good"]


def test_slots_promised_to_earlier_bookings_are_skipped() -> None:
    free = [cand("s-1", "dr-b"), cand("s-2", "dr-c")]
    assert [c.slot_id for c in reassignment_candidates(VISIT, free, "dr-a", {"s-1"})] == ["s-2"]
    assert reassignment_candidates(VISIT, free, "dr-a", {"s-1", "s-2"}) == []


def test_candidates_come_in_a_stable_order_whatever_the_input_order() -> None:
    free = [cand("s-9", "dr-c"), cand("s-5", "dr-b"), cand("s-1", "dr-c"), cand("s-7", "dr-b")]
    expected = ["s-5", "s-7", "s-1", "s-9"]  # by practitioner, then slot id
    assert [c.slot_id for c in reassignment_candidates(VISIT, free, "dr-a", set())] == expected
    assert [c.slot_id for c in reassignment_candidates(VISIT, reversed(free), "dr-a", set())] == expected


def test_no_free_slot_means_no_candidate() -> None:
    assert reassignment_candidates(VISIT, [], "dr-a", set()) == []


# ----------------------------------------------------------------------------- absence window


def test_an_absence_covers_whole_local_days() -> None:
    window = absence_window(dt.date(2030, 3, 4), dt.date(2030, 3, 5), WARSAW)
    assert window == Interval(utc(2030, 3, 3, 23), utc(2030, 3, 5, 23))


def test_a_one_day_absence_on_the_spring_forward_day_lasts_23_hours() -> None:
    window = absence_window(SPRING_FORWARD, SPRING_FORWARD, WARSAW)
    assert window.start == utc(2026, 3, 28, 23)
    assert window.end == utc(2026, 3, 29, 22)
    assert window.end - window.start == dt.timedelta(hours=23)


def test_a_one_day_absence_on_the_fall_back_day_lasts_25_hours() -> None:
    window = absence_window(FALL_BACK, FALL_BACK, WARSAW)
    assert window.end - window.start == dt.timedelta(hours=25)


def test_an_absence_ending_before_it_starts_is_refused_on_date_to() -> None:
    with pytest.raises(ScheduleError) as caught:
        absence_window(dt.date(2030, 3, 5), dt.date(2030, 3, 4), WARSAW)
    assert caught.value.field == "date_to"


# ----------------------------------------------------------------------------- nothing in the past


def test_today_and_later_can_be_planned_a_day_gone_by_cannot() -> None:
    today = dt.date(2030, 3, 4)
    domain.check_not_past(today, today)
    domain.check_not_past(dt.date(2030, 3, 5), today)
    with pytest.raises(domain.ScheduleError) as refused:
        domain.check_not_past(dt.date(2030, 3, 3), today)
    assert refused.value.field == "date"
    assert "today is 2030-03-04" in refused.value.message


def test_a_visit_has_started_from_its_first_instant() -> None:
    start = dt.datetime(2030, 3, 4, 9, 0, tzinfo=dt.UTC)
    assert not domain.has_started(start, start - dt.timedelta(microseconds=1))
    assert domain.has_started(start, start)
    assert domain.has_started(start, start + dt.timedelta(minutes=5))

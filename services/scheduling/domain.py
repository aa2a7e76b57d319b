"""Scheduling rules as plain functions: slot cutting, overlap, reassignment on absence."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from zoneinfo import ZoneInfo

MIN_VISIT_MINUTES = 5
MAX_VISIT_MINUTES = 480


class ScheduleError(ValueError):
    """A schedule that cannot be cut; ``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Interval:
    start: dt.datetime
    end: dt.datetime

    def overlaps(self, other: Interval) -> bool:
        """Half-open intervals: one ending at 10:00 and one starting at 10:00 do not overlap."""
        return self.start < other.end and other.start < self.end


def cut_slots(day: dt.date, start: dt.time, end: dt.time, visit_minutes: int, tz: ZoneInfo) -> list[Interval]:
    """Cut a working time into visits of ``visit_minutes``.

    ``start`` and ``end`` are wall-clock times at the facility; the visits are cut in real time
    between those two instants, so every slot lasts exactly ``visit_minutes`` and none overlaps
    another, also on a DST-change day (the spring hour that does not exist gets no slots, the
    autumn hour that happens twice gets slots twice). A remainder shorter than one visit at the
    end is not a slot (08:00-09:10 by 20 min gives three slots).
    """
    if not MIN_VISIT_MINUTES <= visit_minutes <= MAX_VISIT_MINUTES:
        raise ScheduleError("visit_minutes", f"must be between {MIN_VISIT_MINUTES} and {MAX_VISIT_MINUTES}")
    if end <= start:
        raise ScheduleError("end_time", "must be after start_time")
    first = _local(dt.datetime.combine(day, start), tz)
    last = _local(dt.datetime.combine(day, end), tz)
    step = dt.timedelta(minutes=visit_minutes)
    if last - first < step:
        raise ScheduleError("end_time", f"the working time is shorter than one visit of {visit_minutes} minutes")
    slots = []
    cursor = first
    while cursor + step <= last:
        # Aware UTC arithmetic is real elapsed time: wall-clock steps would overlap across a DST change.
        slots.append(Interval(cursor, cursor + step))
        cursor += step
    return slots


def check_not_past(day: dt.date, today: dt.date) -> None:
    """Nothing is planned for a day gone by (DOMAIN.md 1): today's remaining hours still count."""
    if day < today:
        raise ScheduleError("date", f"{day.isoformat()} has passed (today is {today.isoformat()}): plan today or later")


def has_started(start: dt.datetime, now: dt.datetime) -> bool:
    """A visit whose time has come can no longer be booked."""
    return start <= now


def _local(naive: dt.datetime, tz: ZoneInfo) -> dt.datetime:
    return naive.replace(tzinfo=tz).astimezone(dt.UTC)


def first_overlap(new: Sequence[Interval], existing: Iterable[Interval]) -> Interval | None:
    """The first existing interval that any new one overlaps (the database enforces the same)."""
    for old in existing:
        if any(old.overlaps(n) for n in new):
            return old
    return None


@dataclass(frozen=True)
class Candidate:
    slot_id: str
    practitioner_id: str
    location_id: str
    work_type_id: str
    start: dt.datetime


@dataclass(frozen=True)
class BookedVisit:
    booking_id: str
    location_id: str
    work_type_id: str
    start: dt.datetime


def reassignment_candidates(
    visit: BookedVisit, free_slots: Iterable[Candidate], absent_practitioner_id: str, taken: set[str]
) -> list[Candidate]:
    """Free slots a booking may move to: same location, start and work type, another practitioner.

    Ordered so the choice is stable (by practitioner, then slot id); ``taken`` holds slots already
    promised to other bookings of the same absence.
    """
    suitable = [
        c
        for c in free_slots
        if c.location_id == visit.location_id
        and c.work_type_id == visit.work_type_id
        and c.start == visit.start
        and c.practitioner_id != absent_practitioner_id
        and c.slot_id not in taken
    ]
    return sorted(suitable, key=lambda c: (c.practitioner_id, c.slot_id))


def absence_window(date_from: dt.date, date_to: dt.date, tz: ZoneInfo) -> Interval:
    """The instants an absence covers: from the start of the first day to the end of the last."""
    if date_to < date_from:
        raise ScheduleError("date_to", "must not be before date_from")
    start = dt.datetime.combine(date_from, dt.time(0), tzinfo=tz).astimezone(dt.UTC)
    end = dt.datetime.combine(date_to + dt.timedelta(days=1), dt.time(0), tzinfo=tz).astimezone(dt.UTC)
    return Interval(start, end)


# ----------------------------------------------------------------------------- CeR publication


@dataclass(frozen=True)
class CerPublication:
    """Whether a schedule's slots are published to CeR, and as which CeR specialty."""

    published: bool
    specialty: str | None
    day: dt.date | None = None  # the schedule's (local) date: the visit day of its slots


def cer_specialty_of(work_type_specialty: str | None, location_specialty: str | None) -> str | None:
    """The work says what it is; a location of one specialty (a mammography unit) covers the rest."""
    return work_type_specialty or location_specialty


def published_to_cer(asked: bool, covered: bool) -> bool:
    """A schedule CeR covers on its date must be published (DOMAIN.md 6; ``cer_scope.covered``
    decides); any other only when asked."""
    return asked or covered


# CeR's IKP cancellation (the only notification that frees a slot).
CER_CANCELLATION = "booking_cancelled_ikp"


def cer_notification_stale(
    last_type: str, last_occurred_at: dt.datetime, event_type: str, occurred_at: dt.datetime
) -> bool:
    """Whether a CeR notification about a slot and patient is older than the one applied last.

    The newest wins (they arrive out of order). Two at the same instant: the cancellation wins over
    the booking it cancels (DOMAIN.md 6: it cannot precede it), whichever of them arrives first;
    anything else at the same instant changes nothing.
    """
    if occurred_at != last_occurred_at:
        return occurred_at < last_occurred_at
    return not (event_type == CER_CANCELLATION and last_type != CER_CANCELLATION)

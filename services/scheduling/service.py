"""Scheduling use cases: each is one transaction, with its events written to the outbox."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.integration import cer_scope
from services.scheduling import domain, events, schemas
from services.scheduling.models import (
    BOOKED,
    CANCELLED,
    NEEDS_RESCHEDULING,
    Absence,
    Booking,
    CerCoverage,
    Location,
    Practitioner,
    Schedule,
    Slot,
    WorkType,
)
from shared.audit import Who, record_access
from shared.db import updated_rows, utcnow
from shared.outbox import UnitOfWork
from shared.problems import Conflict, FieldError, NotFound, Unprocessable

# How each backend names the violated rule in its error (SQLite names columns, not the index).
SLOT_OVERLAP = ("ex_slots_practitioner_time",)
ACTIVE_BOOKING = ("uq_bookings_active_slot", "UNIQUE constraint failed: bookings.slot_id")
Row = TypeVar("Row")


def _violated(exc: IntegrityError, markers: tuple[str, ...]) -> bool:
    return any(marker in str(exc.orig) for marker in markers)


async def _owned(
    session: AsyncSession, model: type[Row], ident: uuid.UUID, facility_id: str, what: str, field: str | None = None
) -> Row:
    """The row if it exists and belongs to the facility; another facility's row is "not found"."""
    row = await session.get(model, ident)
    if row is None or getattr(row, "facility_id", None) != facility_id:
        if field is not None:
            raise Unprocessable.field(
                field, f"no {what} with this id in your facility", detail=f"{what} {ident} not found"
            )
        raise NotFound(f"{what} {ident} not found")
    return row


# ----------------------------------------------------------------------------- reference data


async def create_location(uow: UnitOfWork, facility_id: str, data: schemas.LocationIn) -> Location:
    location = Location(
        facility_id=facility_id, name=data.name, department_code=data.department_code, cer_specialty=data.cer_specialty
    )
    uow.session.add(location)
    await uow.commit()
    return location


async def create_practitioner(uow: UnitOfWork, facility_id: str, data: schemas.PractitionerIn) -> Practitioner:
    practitioner = Practitioner(facility_id=facility_id, **data.model_dump())
    uow.session.add(practitioner)
    try:
        await uow.commit()
    except IntegrityError as exc:
        raise Conflict(
            "a practitioner with this NPWZ already exists in your facility",
            errors=[FieldError(field="body.npwz", message="already used in your facility")],
        ) from exc
    return practitioner


async def create_work_type(uow: UnitOfWork, facility_id: str, data: schemas.WorkTypeIn) -> WorkType:
    work_type = WorkType(facility_id=facility_id, **data.model_dump())
    uow.session.add(work_type)
    await uow.commit()
    return work_type


async def list_rows(session: AsyncSession, model: type[Any], facility_id: str, **filters: Any) -> Sequence[Any]:
    query = sa.select(model).where(model.facility_id == facility_id)
    for column, value in filters.items():
        if value is not None:
            query = query.where(getattr(model, column) == value)
    return (await session.scalars(query.order_by(model.created_at, model.id))).all()


async def get_owned(session: AsyncSession, model: type[Row], ident: uuid.UUID, facility_id: str, what: str) -> Row:
    return await _owned(session, model, ident, facility_id, what)


async def set_duty_practitioner(
    uow: UnitOfWork, facility_id: str, location_id: uuid.UUID, practitioner_id: uuid.UUID
) -> Location:
    location = await _owned(uow.session, Location, location_id, facility_id, "location")
    await _owned(uow.session, Practitioner, practitioner_id, facility_id, "practitioner", "body.practitioner_id")
    location.duty_practitioner_id = practitioner_id
    await uow.commit()
    return location


# ----------------------------------------------------------------------------- schedules and slots


async def create_schedule(
    uow: UnitOfWork, facility_id: str, data: schemas.ScheduleIn, tz: ZoneInfo, today: dt.date
) -> tuple[Schedule, int, bool]:
    """The schedule, its number of slots and whether CeR covers it on its date."""
    session = uow.session
    try:
        domain.check_not_past(data.date, today)
    except domain.ScheduleError as exc:
        raise Unprocessable.field(f"body.{exc.field}", exc.message) from exc
    practitioner = await _owned(
        session, Practitioner, data.practitioner_id, facility_id, "practitioner", "body.practitioner_id"
    )
    # One schedule of a practitioner at a time: concurrent overlapping inserts would otherwise wait
    # on each other's slots in the exclusion constraint and deadlock (a 500) instead of a clean 409.
    await session.execute(
        sa.select(Practitioner.id).where(Practitioner.id == practitioner.id).with_for_update(key_share=True)
    )
    location = await _owned(session, Location, data.location_id, facility_id, "location", "body.location_id")
    work_type = await _owned(session, WorkType, data.work_type_id, facility_id, "work type", "body.work_type_id")
    try:
        intervals = domain.cut_slots(data.date, data.start_time, data.end_time, data.visit_minutes, tz)
    except domain.ScheduleError as exc:
        raise Unprocessable.field(f"body.{exc.field}", exc.message) from exc
    specialty = domain.cer_specialty_of(work_type.cer_specialty, location.cer_specialty)
    # The law as it stands on the schedule's own day: a July endocrinology schedule is not CeR's,
    # an August one is (the dated table, seed plus the operators' corrections replicated here).
    covered = cer_scope.covered(specialty, data.date, await cer_table(session)) is not None
    schedule = Schedule(
        facility_id=facility_id,
        **data.model_dump(exclude={"cer_published"}),
        cer_published=domain.published_to_cer(data.cer_published, covered),
        cer_specialty=specialty,
    )
    session.add(schedule)
    await session.flush()
    slots = [
        Slot(
            id=uuid.uuid4(),
            facility_id=facility_id,
            schedule_id=schedule.id,
            practitioner_id=practitioner.id,
            location_id=data.location_id,
            work_type_id=data.work_type_id,
            start_at=i.start,
            end_at=i.end,
        )
        for i in intervals
    ]
    session.add_all(slots)
    uow.emit(
        events.SchedulePublished(
            schedule_id=schedule.id,
            practitioner_id=practitioner.id,
            location_id=data.location_id,
            work_type_id=data.work_type_id,
            date=data.date,
            slot_ids=[s.id for s in slots],
            cer_published=schedule.cer_published,
            cer_specialty=specialty,
            slots=[events.PublishedSlot(slot_id=s.id, start=s.start_at, end=s.end_at) for s in slots],
        ),
        facility_id=facility_id,
    )
    try:
        await uow.commit()
    except IntegrityError as exc:
        if _violated(exc, SLOT_OVERLAP):
            raise Conflict(
                "the schedule overlaps slots this practitioner already has",
                code="schedule-overlap",
                errors=[FieldError(field="body.start_time", message="overlaps an existing schedule")],
            ) from exc
        raise
    return schedule, len(slots), covered


def slot_status(slot: Slot, booked: bool) -> schemas.SlotStatus:
    if booked:
        return schemas.SlotStatus.booked
    return schemas.SlotStatus.free if slot.available else schemas.SlotStatus.unavailable


async def search_slots(
    session: AsyncSession,
    facility_id: str,
    *,
    practitioner_id: uuid.UUID | None,
    location_id: uuid.UUID | None,
    work_type_id: uuid.UUID | None,
    start_from: dt.datetime | None,
    start_before: dt.datetime | None,
    status: schemas.SlotStatus | None,
    online_only: bool,
    limit: int,
    start_after: dt.datetime | None = None,
    prescription_only: bool | None = None,
) -> list[schemas.SlotOut]:
    active = sa.select(Booking.slot_id).where(Booking.status == BOOKED).subquery()
    is_booked = Slot.id.in_(sa.select(active.c.slot_id))
    query = sa.select(Slot, is_booked.label("booked")).where(Slot.facility_id == facility_id)
    for column, value in (
        (Slot.practitioner_id, practitioner_id),
        (Slot.location_id, location_id),
        (Slot.work_type_id, work_type_id),
    ):
        if value is not None:
            query = query.where(column == value)
    if start_from is not None:
        query = query.where(Slot.start_at >= start_from)
    if start_before is not None:
        query = query.where(Slot.start_at < start_before)
    if start_after is not None:
        query = query.where(Slot.start_at > start_after)
    if status == schemas.SlotStatus.booked:
        query = query.where(is_booked)
    elif status == schemas.SlotStatus.free:
        query = query.where(~is_booked, Slot.available.is_(True))
    elif status == schemas.SlotStatus.unavailable:
        query = query.where(~is_booked, Slot.available.is_(False))
    if online_only:
        query = query.where(
            Slot.work_type_id.in_(
                sa.select(WorkType.id).where(WorkType.facility_id == facility_id, WorkType.visible_online.is_(True))
            )
        )
    if prescription_only is not None:
        query = query.where(
            Slot.work_type_id.in_(
                sa.select(WorkType.id).where(
                    WorkType.facility_id == facility_id, WorkType.prescription_only.is_(prescription_only)
                )
            )
        )
    rows = (await session.execute(query.order_by(Slot.start_at, Slot.id).limit(limit))).all()
    return [
        schemas.SlotOut(
            id=s.id,
            practitioner_id=s.practitioner_id,
            location_id=s.location_id,
            work_type_id=s.work_type_id,
            start=s.start_at,
            end=s.end_at,
            status=slot_status(s, bool(b)),
        )
        for s, b in rows
    ]


# ----------------------------------------------------------------------------- bookings


async def cer_table(session: AsyncSession) -> dict[cer_scope.CerSpecialty, cer_scope.Coverage]:
    """The dated CeR table: the seed with the operators' corrections (replicated from integration)."""
    rows = await session.scalars(sa.select(CerCoverage))
    return cer_scope.effective(
        cer_scope.Coverage(cer_scope.CerSpecialty(r.specialty), r.covered_from, r.source, r.draft) for r in rows
    )


async def cer_publication(session: AsyncSession, slot: Slot) -> domain.CerPublication:
    """Whether (and as which specialty) the slot's schedule is published to CeR."""
    row = (
        await session.execute(
            sa.select(Schedule.cer_published, Schedule.cer_specialty, Schedule.date).where(
                Schedule.id == slot.schedule_id
            )
        )
    ).one()
    return domain.CerPublication(bool(row[0]), row[1], row[2])


async def _slot_for_booking(
    session: AsyncSession, slot_id: uuid.UUID, facility_id: str
) -> tuple[Slot, domain.CerPublication]:
    """The slot and whether (and as which specialty) its schedule is published to CeR, in one round trip."""
    row = (
        await session.execute(
            sa.select(Slot, Schedule.cer_published, Schedule.cer_specialty, Schedule.date)
            .join(Schedule, Schedule.id == Slot.schedule_id)
            .where(Slot.id == slot_id, Slot.facility_id == facility_id)
        )
    ).first()
    if row is None:
        raise Unprocessable.field(
            "body.slot_id", "no slot with this id in your facility", detail=f"slot {slot_id} not found"
        )
    return row[0], domain.CerPublication(bool(row[1]), row[2], row[3])


def booking_view(booking: Booking, slot: Slot) -> schemas.BookingOut:
    return schemas.BookingOut.model_validate(booking).model_copy(
        update={"start": slot.start_at, "practitioner_id": slot.practitioner_id, "location_id": slot.location_id}
    )


async def list_bookings(
    session: AsyncSession,
    facility_id: str,
    *,
    status: str | None,
    cer_published: bool | None,
    start_from: dt.datetime | None,
    limit: int,
    start_before: dt.datetime | None = None,
    patient_pesel: str | None = None,
    practitioner_id: uuid.UUID | None = None,
    slot_id: uuid.UUID | None = None,
) -> list[schemas.BookingOut]:
    """Bookings with their slots' times, earliest visit first (CeR reconciliation reads the published ones)."""
    query = (
        sa.select(Booking, Slot)
        .join(Slot, Slot.id == Booking.slot_id)
        .join(Schedule, Schedule.id == Slot.schedule_id)
        .where(Booking.facility_id == facility_id)
    )
    if status is not None:
        query = query.where(Booking.status == status)
    if cer_published is not None:
        query = query.where(Schedule.cer_published.is_(cer_published))
    if start_from is not None:
        query = query.where(Slot.start_at >= start_from)
    if start_before is not None:
        query = query.where(Slot.start_at < start_before)
    if patient_pesel is not None:
        query = query.where(Booking.patient_pesel == patient_pesel)
    if practitioner_id is not None:
        query = query.where(Slot.practitioner_id == practitioner_id)
    if slot_id is not None:
        query = query.where(Booking.slot_id == slot_id)
    rows = (await session.execute(query.order_by(Slot.start_at, Booking.id).limit(limit))).all()
    return [booking_view(booking, slot) for booking, slot in rows]


async def get_booking(session: AsyncSession, facility_id: str, booking_id: uuid.UUID) -> schemas.BookingOut:
    booking = await _owned(session, Booking, booking_id, facility_id, "booking")
    return booking_view(booking, await session.get_one(Slot, booking.slot_id))


BOOKING_CREATE = "scheduling.booking.create"
BOOKING_CANCEL = "scheduling.booking.cancel"


def booking_resource(booking_id: uuid.UUID) -> str:
    return f"booking/{booking_id}"


async def book(
    uow: UnitOfWork,
    facility_id: str,
    data: schemas.BookingIn,
    now: dt.datetime,
    *,
    online_only: bool = False,
    who: Who | None = None,
) -> schemas.BookingOut:
    """``who``: the caller, audited in the booking's own transaction (``shared.audit.Actor.system`` for a
    national system; None: not audited)."""
    session = uow.session
    slot, cer = await _slot_for_booking(session, data.slot_id, facility_id)
    if domain.has_started(slot.start_at, now):
        raise Unprocessable.field(
            "body.slot_id", f"the visit began at {slot.start_at.isoformat()}: a slot that has started cannot be booked"
        )
    if online_only and not await session.scalar(
        sa.select(WorkType.visible_online).where(WorkType.id == slot.work_type_id)
    ):
        raise Unprocessable.field("body.slot_id", "this slot is not offered online")
    if not slot.available:
        raise Conflict("the slot is not available (the practitioner is absent)", code="slot-unavailable")
    booking = Booking(
        id=uuid.uuid4(),
        facility_id=facility_id,
        slot_id=slot.id,
        patient_pesel=data.patient_pesel,
        source=data.source,
        status=BOOKED,
    )
    session.add(booking)
    try:
        await session.flush()
    except IntegrityError as exc:
        if _violated(exc, ACTIVE_BOOKING):
            raise Conflict("the slot is already booked", code="slot-taken") from exc
        raise
    return await _commit_booking(uow, facility_id, booking, slot, cer, who=who, now=now)


async def _commit_booking(
    uow: UnitOfWork,
    facility_id: str,
    booking: Booking,
    slot: Slot,
    cer: domain.CerPublication,
    *,
    who: Who | None,
    now: dt.datetime,
) -> schemas.BookingOut:
    if who is not None:
        record_access(uow, who, BOOKING_CREATE, booking_resource(booking.id), booking.patient_pesel, at=now)
    uow.emit(
        events.BookingCreated(
            booking_id=booking.id,
            slot_id=slot.id,
            practitioner_id=slot.practitioner_id,
            location_id=slot.location_id,
            work_type_id=slot.work_type_id,
            start=slot.start_at,
            end=slot.end_at,
            patient_pesel=booking.patient_pesel,
            source=booking.source,
            cer_published=cer.published,
            cer_specialty=cer.specialty,
            schedule_id=slot.schedule_id,
        ),
        facility_id=facility_id,
    )
    await uow.commit()
    view = booking_view(booking, slot)
    # A screening outside its programme's ages is booked all the same (the facility decides), but said.
    warning = cer_scope.screening_warning(cer.specialty, booking.patient_pesel, cer.day) if cer.day else None
    return view.model_copy(update={"warnings": [warning]}) if warning else view


EARLIEST_ATTEMPTS = 5


async def book_earliest(
    uow: UnitOfWork,
    facility_id: str,
    data: schemas.EarliestBookingIn,
    now: dt.datetime,
    *,
    who: Who | None = None,
) -> schemas.BookingOut:
    """The earliest free slot that fits, locked with SKIP LOCKED on PostgreSQL so that concurrent
    callers take successive slots. The lock is FOR NO KEY UPDATE: a desk booking's foreign-key check
    (FOR KEY SHARE) on the same slot must not wait for it, or the two deadlock on the unique index.
    A desk booking of the same slot at the same moment still loses or wins by the unique index, and
    then the next slot is tried (a savepoint per attempt)."""
    session = uow.session
    active = sa.select(Booking.slot_id).where(Booking.status == BOOKED)
    query = (
        sa.select(Slot)
        .where(
            Slot.facility_id == facility_id,
            Slot.practitioner_id == data.practitioner_id,
            Slot.start_at > max(data.start_after, now),  # never a visit that has begun
            Slot.available.is_(True),
            Slot.id.not_in(active),
        )
        .order_by(Slot.start_at, Slot.id)
        .limit(1)
        .with_for_update(skip_locked=True, key_share=True, of=Slot)
    )
    if data.location_id is not None:
        query = query.where(Slot.location_id == data.location_id)
    if data.exclude_location_id is not None:
        query = query.where(Slot.location_id != data.exclude_location_id)
    if data.prescription_only is not None:
        kinds = sa.select(WorkType.id).where(WorkType.prescription_only.is_(data.prescription_only))
        query = query.where(Slot.work_type_id.in_(kinds))
    for _ in range(EARLIEST_ATTEMPTS):
        slot = await session.scalar(query)
        if slot is None:
            break
        booking = Booking(
            id=uuid.uuid4(),
            facility_id=facility_id,
            slot_id=slot.id,
            patient_pesel=data.patient_pesel,
            source=data.source,
            status=BOOKED,
        )
        try:
            async with session.begin_nested():
                session.add(booking)
        except IntegrityError as exc:
            if _violated(exc, ACTIVE_BOOKING):
                continue  # taken at the desk this very moment: the next one
            raise
        return await _commit_booking(
            uow, facility_id, booking, slot, await cer_publication(session, slot), who=who, now=now
        )
    raise NotFound("no free slot fits", code="no-free-slot")


async def cancel(
    uow: UnitOfWork,
    facility_id: str,
    booking_id: uuid.UUID,
    *,
    patient_pesel: str | None = None,
    by_cer: bool = False,
    who: Who | None = None,
    now: dt.datetime | None = None,
) -> schemas.BookingOut:
    """``who``: the caller, audited in the cancellation's transaction (a repeated cancellation too:
    it still showed the booking); None: not audited."""
    session = uow.session
    booking: Booking = await _owned(session, Booking, booking_id, facility_id, "booking")
    if patient_pesel is not None and booking.patient_pesel != patient_pesel:
        raise NotFound(f"booking {booking_id} not found")
    slot: Slot = await session.get_one(Slot, booking.slot_id)
    if who is not None:
        record_access(uow, who, BOOKING_CANCEL, booking_resource(booking.id), booking.patient_pesel, at=now or utcnow())
    if booking.status == CANCELLED:
        if who is not None:
            await uow.commit()
        return booking_view(booking, slot)  # cancelling twice is harmless and tells the same story
    # Conditional update: of two concurrent cancellations only one emits the event.
    cancelled = await updated_rows(
        session,
        sa.update(Booking)
        .where(Booking.id == booking_id, Booking.status != CANCELLED)
        .values(status=CANCELLED, cancelled_at=utcnow()),
    )
    if cancelled == 1:
        cer = await cer_publication(session, slot)
        uow.emit(
            events.BookingCancelled(
                booking_id=booking.id,
                slot_id=slot.id,
                patient_pesel=booking.patient_pesel,
                start=slot.start_at,
                cer_published=cer.published,
                cer_specialty=cer.specialty,
                by_cer=by_cer,
            ),
            facility_id=facility_id,
        )
    if cancelled == 1 or who is not None:
        await uow.commit()
    await session.refresh(booking)
    return booking_view(booking, slot)


# ----------------------------------------------------------------------------- absences


async def record_absence(
    uow: UnitOfWork, facility_id: str, practitioner_id: uuid.UUID, data: schemas.AbsenceIn, tz: ZoneInfo
) -> schemas.AbsenceOut:
    session = uow.session
    await _owned(session, Practitioner, practitioner_id, facility_id, "practitioner")
    window = domain.absence_window(data.date_from, data.date_to, tz)
    session.add(
        Absence(
            facility_id=facility_id, practitioner_id=practitioner_id, date_from=data.date_from, date_to=data.date_to
        )
    )
    in_window = (
        (Slot.practitioner_id == practitioner_id) & (Slot.start_at >= window.start) & (Slot.start_at < window.end)
    )
    affected = (
        await session.execute(
            sa.select(Booking, Slot)
            .join(Slot, Slot.id == Booking.slot_id)
            .where(in_window, Booking.status == BOOKED)
            .order_by(Slot.start_at, Booking.id)
        )
    ).all()
    await session.execute(
        sa.update(Slot).where(in_window).values(available=False).execution_options(synchronize_session=False)
    )
    await _announce_withdrawn(uow, facility_id, in_window)
    free = await _free_candidates(session, facility_id, [slot.start_at for _, slot in affected], practitioner_id)
    result = schemas.AbsenceOut(reassigned=[], needs_rescheduling=[])
    taken: set[str] = set()
    for booking, slot in affected:
        visit = domain.BookedVisit(str(booking.id), str(slot.location_id), str(slot.work_type_id), slot.start_at)
        moved_to = await _move_to_first_free(
            uow, booking, slot, domain.reassignment_candidates(visit, free, str(practitioner_id), taken)
        )
        if moved_to is not None:
            taken.add(str(moved_to.id))
            result.reassigned.append(schemas.Reassignment(booking_id=booking.id, new_slot_id=moved_to.id))
        else:
            booking.status = NEEDS_RESCHEDULING
            uow.emit(
                events.BookingNeedsRescheduling(
                    booking_id=booking.id, slot_id=slot.id, patient_pesel=booking.patient_pesel, start=slot.start_at
                ),
                facility_id=facility_id,
            )
            result.needs_rescheduling.append(booking.id)
    await uow.commit()
    return result


async def _announce_withdrawn(uow: UnitOfWork, facility_id: str, in_window: sa.ColumnElement[bool]) -> None:
    """CeR must stop offering the absent practitioner's published slots: one event per specialty."""
    rows = (
        await uow.session.execute(
            sa.select(Slot.id, Schedule.cer_specialty)
            .join(Schedule, Schedule.id == Slot.schedule_id)
            .where(in_window, Schedule.cer_published.is_(True))
            .order_by(Slot.start_at)
        )
    ).all()
    by_specialty: dict[str | None, list[uuid.UUID]] = {}
    for slot_id, specialty in rows:
        by_specialty.setdefault(specialty, []).append(slot_id)
    for specialty, slot_ids in by_specialty.items():
        uow.emit(
            events.SlotsWithdrawn(slot_ids=slot_ids, reason="practitioner absent", cer_specialty=specialty),
            facility_id=facility_id,
        )


async def _free_candidates(
    session: AsyncSession, facility_id: str, starts: list[dt.datetime], absent_id: uuid.UUID
) -> list[domain.Candidate]:
    if not starts:
        return []
    booked = sa.select(Booking.slot_id).where(Booking.status == BOOKED)
    rows = (
        await session.scalars(
            sa.select(Slot).where(
                Slot.facility_id == facility_id,
                Slot.start_at.in_(starts),
                Slot.available.is_(True),
                Slot.practitioner_id != absent_id,
                Slot.id.not_in(booked),
            )
        )
    ).all()
    return [
        domain.Candidate(str(s.id), str(s.practitioner_id), str(s.location_id), str(s.work_type_id), s.start_at)
        for s in rows
    ]


async def _move_to_first_free(
    uow: UnitOfWork, booking: Booking, old: Slot, candidates: list[domain.Candidate]
) -> Slot | None:
    """Try the candidates in order; a slot booked meanwhile by someone else is skipped."""
    session = uow.session
    for candidate in candidates:
        new_slot = await session.get_one(Slot, uuid.UUID(candidate.slot_id))
        try:
            async with session.begin_nested():
                booking.slot_id = new_slot.id
                await session.flush()
        except IntegrityError:
            booking.slot_id = old.id
            continue
        old_cer, new_cer = await cer_publication(session, old), await cer_publication(session, new_slot)
        uow.emit(
            events.BookingMoved(
                booking_id=booking.id,
                old_slot_id=old.id,
                new_slot_id=new_slot.id,
                new_practitioner_id=new_slot.practitioner_id,
                patient_pesel=booking.patient_pesel,
                start=new_slot.start_at,
                end=new_slot.end_at,
                old_cer_published=old_cer.published,
                new_cer_published=new_cer.published,
                new_cer_specialty=new_cer.specialty,
                old_cer_specialty=old_cer.specialty,
                new_schedule_id=new_slot.schedule_id,
            ),
            facility_id=booking.facility_id,
        )
        return new_slot
    return None

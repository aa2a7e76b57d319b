"""Scheduling HTTP API: parse, authorise, call a use case, shape the answer."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from services.integration.cer_scope import CerSpecialty
from services.scheduling import schemas, service
from services.scheduling.models import Location, Practitioner, WorkType
from shared.app import ContextDep
from shared.audit import AuditEntry, record_read
from shared.auth import CurrentPrincipal, Principal, Role, allow
from shared.identifiers import Pesel
from shared.problems import PROBLEM_RESPONSES, Forbidden, NotFound, Unprocessable

router = APIRouter(prefix="/api/v1/scheduling", tags=["scheduling"], responses=PROBLEM_RESPONSES)

ADMIN = (Role.facility_admin,)
STAFF = (Role.facility_admin, Role.registrar)
CLINIC = (Role.facility_admin, Role.registrar, Role.practitioner, Role.partner)
BOOKERS = (Role.facility_admin, Role.registrar, Role.partner, Role.patient)
BOOKING_LIST = "scheduling.booking.list"
BOOKING_READ = "scheduling.booking.read"


def _tz(ctx: ContextDep) -> ZoneInfo:
    return ZoneInfo(ctx.settings.timezone)


def _local_day_start(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(0), tzinfo=tz)


# ----------------------------------------------------------------------------- reference data


@router.post("/locations", status_code=201, response_model=schemas.LocationOut, **allow(*ADMIN))
async def create_location(body: schemas.LocationIn, ctx: ContextDep, who: CurrentPrincipal) -> Location:
    async with ctx.uow() as uow:
        return await service.create_location(uow, who.require_facility(), body)


@router.get("/locations", response_model=list[schemas.LocationOut], **allow(*CLINIC, Role.patient))
async def list_locations(ctx: ContextDep, who: CurrentPrincipal) -> list[Location]:
    async with ctx.sessions() as session:
        return list(await service.list_rows(session, Location, who.require_facility()))


@router.get("/locations/{location_id}", response_model=schemas.LocationOut, **allow(*CLINIC, Role.patient))
async def get_location(location_id: uuid.UUID, ctx: ContextDep, who: CurrentPrincipal) -> Location:
    async with ctx.sessions() as session:
        return await service.get_owned(
            session,
            Location,
            location_id,
            who.require_facility(),
            "location",
        )


@router.put("/locations/{location_id}/duty-practitioner", response_model=schemas.LocationOut, **allow(*STAFF))
async def set_duty_practitioner(
    location_id: uuid.UUID, body: schemas.DutyPractitionerIn, ctx: ContextDep, who: CurrentPrincipal
) -> Location:
    async with ctx.uow() as uow:
        return await service.set_duty_practitioner(uow, who.require_facility(), location_id, body.practitioner_id)


@router.post("/practitioners", status_code=201, response_model=schemas.PractitionerOut, **allow(*ADMIN))
async def create_practitioner(body: schemas.PractitionerIn, ctx: ContextDep, who: CurrentPrincipal) -> Practitioner:
    async with ctx.uow() as uow:
        return await service.create_practitioner(uow, who.require_facility(), body)


@router.get("/practitioners", response_model=list[schemas.PractitionerOut], **allow(*CLINIC, Role.patient))
async def list_practitioners(
    ctx: ContextDep, who: CurrentPrincipal, npwz: Annotated[str | None, Query(max_length=8)] = None
) -> list[Practitioner]:
    async with ctx.sessions() as session:
        # NPWZ are stored as validated (upper-case nurse suffix): look them up the same way.
        wanted = npwz.strip().upper() if npwz else None
        return list(await service.list_rows(session, Practitioner, who.require_facility(), npwz=wanted))


@router.post("/work-types", status_code=201, response_model=schemas.WorkTypeOut, **allow(*ADMIN))
async def create_work_type(body: schemas.WorkTypeIn, ctx: ContextDep, who: CurrentPrincipal) -> WorkType:
    async with ctx.uow() as uow:
        return await service.create_work_type(uow, who.require_facility(), body)


@router.get("/work-types", response_model=list[schemas.WorkTypeOut], **allow(*CLINIC, Role.patient))
async def list_work_types(ctx: ContextDep, who: CurrentPrincipal) -> list[WorkType]:
    async with ctx.sessions() as session:
        rows = await service.list_rows(session, WorkType, who.require_facility())
        return [w for w in rows if who.role != Role.patient or w.visible_online]


# ----------------------------------------------------------------------------- schedules and slots


@router.post("/schedules", status_code=201, response_model=schemas.ScheduleOut, **allow(*STAFF))
async def create_schedule(body: schemas.ScheduleIn, ctx: ContextDep, who: CurrentPrincipal) -> schemas.ScheduleOut:
    async with ctx.uow() as uow:
        schedule, count, covered = await service.create_schedule(
            uow, who.require_facility(), body, _tz(ctx), ctx.today()
        )
    return schemas.ScheduleOut(
        id=schedule.id,
        slots_created=count,
        cer_published=schedule.cer_published,
        cer_covered=covered,
        cer_specialty=CerSpecialty(schedule.cer_specialty) if schedule.cer_specialty else None,
    )


@router.get("/slots", response_model=list[schemas.SlotOut], **allow(*CLINIC, Role.patient))
async def search_slots(
    ctx: ContextDep,
    who: CurrentPrincipal,
    practitioner_id: uuid.UUID | None = None,
    location_id: uuid.UUID | None = None,
    work_type_id: uuid.UUID | None = None,
    date_from: dt.date | None = None,
    date_to: Annotated[dt.date | None, Query(description="inclusive")] = None,
    status: schemas.SlotStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=2000)] = 500,
    prescription_only: Annotated[
        bool | None, Query(description="true: only slots of prescription-only work; false: only the others")
    ] = None,
    start_after: Annotated[
        AwareDatetime | None, Query(description="only slots starting strictly after this instant (with an offset)")
    ] = None,
) -> list[schemas.SlotOut]:
    if date_from and date_to and date_to < date_from:
        raise Unprocessable.field("query.date_to", "must not be before date_from")
    tz = _tz(ctx)
    async with ctx.sessions() as session:
        return await service.search_slots(
            session,
            who.require_facility(),
            practitioner_id=practitioner_id,
            location_id=location_id,
            work_type_id=work_type_id,
            start_from=_local_day_start(date_from, tz) if date_from else None,
            start_before=_local_day_start(date_to + dt.timedelta(days=1), tz) if date_to else None,
            # A patient sees only free slots of work offered online.
            status=schemas.SlotStatus.free if who.role == Role.patient else status,
            online_only=who.role == Role.patient,
            limit=limit,
            start_after=start_after,
            prescription_only=prescription_only,
        )


# ----------------------------------------------------------------------------- bookings


def _patient_rules(who: Principal, body: schemas.BookingIn) -> None:
    if who.role != Role.patient:
        return
    if body.patient_pesel != who.pesel:
        raise Forbidden("a patient may book only for themself")
    if body.source != schemas.BookingSource.portal:
        raise Unprocessable.field("body.source", "a patient books through the portal (source 'portal')")


@router.post(
    "/bookings",
    status_code=201,
    response_model=schemas.BookingOut,
    responses={409: {"description": "the slot is already booked"}},
    **allow(*BOOKERS),
)
async def book(body: schemas.BookingIn, ctx: ContextDep, who: CurrentPrincipal) -> schemas.BookingOut:
    _patient_rules(who, body)
    async with ctx.uow() as uow:
        return await service.book(
            uow, who.require_facility(), body, ctx.clock.now(), online_only=who.role == Role.patient, who=who
        )


@router.post(
    "/bookings/earliest",
    status_code=201,
    response_model=schemas.BookingOut,
    responses={404: {"description": "no free slot fits"}},
    **allow(*STAFF, Role.partner),
)
async def book_earliest(body: schemas.EarliestBookingIn, ctx: ContextDep, who: CurrentPrincipal) -> schemas.BookingOut:
    """Book the earliest free slot of a practitioner (optionally at, or not at, a location)."""
    async with ctx.uow() as uow:
        return await service.book_earliest(uow, who.require_facility(), body, ctx.clock.now(), who=who)


@router.get("/bookings", response_model=list[schemas.BookingOut], **allow(*CLINIC))
async def list_bookings(
    ctx: ContextDep,
    who: CurrentPrincipal,
    status: Annotated[str | None, Query(pattern="^(booked|cancelled|needs_rescheduling)$")] = None,
    cer_published: Annotated[bool | None, Query(description="only bookings of slots published to CeR")] = None,
    start_from: Annotated[AwareDatetime | None, Query(description="visits starting at or after this instant")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    patient_pesel: Annotated[Pesel | None, Query(description="one patient's bookings")] = None,
    practitioner_id: Annotated[uuid.UUID | None, Query(description="one practitioner's visits")] = None,
    slot_id: Annotated[uuid.UUID | None, Query(description="the bookings of one slot")] = None,
    date_from: Annotated[dt.date | None, Query(description="visits on or after this local day")] = None,
    date_to: Annotated[dt.date | None, Query(description="visits on or before this local day (inclusive)")] = None,
) -> list[schemas.BookingOut]:
    if date_from and date_to and date_to < date_from:
        raise Unprocessable.field("query.date_to", "must not be before date_from")
    tz = _tz(ctx)
    starts = [s for s in (start_from, _local_day_start(date_from, tz) if date_from else None) if s is not None]
    async with ctx.sessions() as session:
        bookings = await service.list_bookings(
            session,
            who.require_facility(),
            status=status,
            cer_published=cer_published,
            start_from=max(starts) if starts else None,
            start_before=_local_day_start(date_to + dt.timedelta(days=1), tz) if date_to else None,
            patient_pesel=patient_pesel,
            practitioner_id=practitioner_id,
            slot_id=slot_id,
            limit=limit,
        )
    # Audited before the answer leaves: one event, a row per booking (patient) shown.
    entries = [AuditEntry(resource=service.booking_resource(b.id), patient_pesel=b.patient_pesel) for b in bookings]
    await record_read(ctx.uow, who, BOOKING_LIST, entries, at=ctx.clock.now())
    return bookings


@router.get("/bookings/{booking_id}", response_model=schemas.BookingOut, **allow(*CLINIC, Role.patient))
async def get_booking(booking_id: uuid.UUID, ctx: ContextDep, who: CurrentPrincipal) -> schemas.BookingOut:
    async with ctx.sessions() as session:
        booking = await service.get_booking(session, who.require_facility(), booking_id)
    if who.role == Role.patient and booking.patient_pesel != who.pesel:
        raise NotFound(f"booking {booking_id} not found")
    entry = AuditEntry(resource=service.booking_resource(booking.id), patient_pesel=booking.patient_pesel)
    await record_read(ctx.uow, who, BOOKING_READ, [entry], at=ctx.clock.now())
    return booking


@router.post("/bookings/{booking_id}/cancel", response_model=schemas.BookingOut, **allow(*BOOKERS))
async def cancel_booking(booking_id: uuid.UUID, ctx: ContextDep, who: CurrentPrincipal) -> schemas.BookingOut:
    async with ctx.uow() as uow:
        return await service.cancel(
            uow,
            who.require_facility(),
            booking_id,
            patient_pesel=who.pesel if who.role == Role.patient else None,
            who=who,
            now=ctx.clock.now(),
        )


# ----------------------------------------------------------------------------- absences


@router.post("/practitioners/{practitioner_id}/absences", response_model=schemas.AbsenceOut, **allow(*STAFF))
async def record_absence(
    practitioner_id: uuid.UUID, body: schemas.AbsenceIn, ctx: ContextDep, who: CurrentPrincipal
) -> schemas.AbsenceOut:
    async with ctx.uow() as uow:
        return await service.record_absence(uow, who.require_facility(), practitioner_id, body, _tz(ctx))

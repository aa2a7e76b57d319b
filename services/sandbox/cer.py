"""CeR (centralna e-rejestracja) simulator: the national registry of CeR-covered schedules.

What the facility's integration service calls (answering 503 while ``POST /down`` is in force):

- ``PUT /facilities/{id}/notifications``: where CeR sends the facility's notifications and the
  secret it signs them with (the administrator's entry in CeR's panel).
- ``POST /schedules`` publishes a schedule's slots (again: idempotent by ``schedule_id``);
  ``POST /slots/withdraw`` stops offering slots.
- ``POST /bookings`` is a booking made at the facility (idempotent by the local ``booking_id``;
  409 when CeR has given the slot to someone else); ``POST /bookings/{booking_id}/cancel`` its
  cancellation; ``POST /bookings/refuse`` says that a CeR booking could not be taken locally (the
  slot went to the facility's own patient first), so CeR gives the slot to that patient instead.
- ``GET /facilities/{id}/bookings`` and ``/slots``: what CeR holds, for reconciliation.

What a test or a demo plays (never down): ``POST /patients/bookings`` and
``POST /patients/cancellations`` are a patient on IKP / mojeIKP, another entity or the waiting list;
CeR then calls the facility's endpoint, signed (``X-CeR-Timestamp``, ``X-CeR-Signature``), and
retries with backoff while the endpoint fails. ``notify: false`` loses the notification on the way:
the drift "patient confirmed in CeR, missing at the facility" that reconciliation must repair.
``GET /deliveries`` shows every notification and its attempts; ``GET /facilities/{id}/changes`` the
facility's changes in the order CeR received them.

State lives in memory, per app instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Annotated, Literal

import httpx
import structlog
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import AnyHttpUrl, AwareDatetime, BaseModel, ConfigDict, Field

from services.sandbox.outage import StatusOut, available, outage_controls
from shared.identifiers import Pesel
from shared.problems import PROBLEM_RESPONSES, Conflict, NotFound

log = structlog.get_logger("sandbox.cer")

Identifier = Annotated[str, Field(min_length=1, max_length=64)]
Channel = Literal["ikp", "other_entity", "waiting_list"]
BOOKING_EVENT = {
    "ikp": "booking_created_ikp",
    "other_entity": "booking_created_other_entity",
    "waiting_list": "booking_created_waiting_list",
}
CANCELLED_EVENT = "booking_cancelled_ikp"
MAX_RETRY_DELAY_SECONDS = 30.0


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ----------------------------------------------------------------------------- schemas


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class NotificationSettingsIn(_In):
    endpoint: AnyHttpUrl
    email: str = Field(min_length=3, max_length=254)
    secret: str = Field(min_length=16, max_length=200, repr=False)


class PublishedSlotIn(_In):
    slot_id: uuid.UUID
    start: AwareDatetime
    end: AwareDatetime


class ScheduleIn(_In):
    facility_id: Identifier
    schedule_id: uuid.UUID
    specialty: str | None = Field(default=None, max_length=40)
    slots: list[PublishedSlotIn] = Field(max_length=5000)


class WithdrawIn(_In):
    facility_id: Identifier
    slot_ids: list[uuid.UUID] = Field(max_length=5000)


class FacilityBookingIn(_In):
    facility_id: Identifier
    booking_id: uuid.UUID = Field(description="the facility's own booking id")
    slot_id: uuid.UUID
    patient_pesel: Pesel


class FacilityCancelIn(_In):
    facility_id: Identifier
    slot_id: uuid.UUID | None = None
    patient_pesel: Pesel | None = None


class RefuseIn(_In):
    facility_id: Identifier
    slot_id: uuid.UUID
    patient_pesel: Pesel
    cer_event_id: str = Field(min_length=1, max_length=100)
    reason: str = Field(max_length=1000)
    held_by_booking_id: uuid.UUID | None = None
    held_by_pesel: Pesel | None = None


class PatientBookingIn(_In):
    facility_id: Identifier
    slot_id: uuid.UUID
    patient_pesel: Pesel
    channel: Channel = "ikp"
    notify: bool = Field(default=True, description="false: the notification is lost on the way (a drift)")


class PatientCancelIn(_In):
    facility_id: Identifier
    slot_id: uuid.UUID
    patient_pesel: Pesel
    notify: bool = True


class BookingOut(BaseModel):
    cer_booking_id: uuid.UUID
    facility_id: str
    slot_id: uuid.UUID
    patient_pesel: str
    channel: Literal["ikp", "other_entity", "waiting_list", "facility"]
    status: Literal["active", "cancelled", "refused"]
    booked_at: dt.datetime
    start: dt.datetime
    local_booking_id: uuid.UUID | None = None


class PatientBookingOut(BaseModel):
    cer_booking_id: uuid.UUID
    event_id: str | None = Field(description="the notification sent to the facility; none when lost on purpose")


class SlotOut(BaseModel):
    slot_id: uuid.UUID
    schedule_id: uuid.UUID
    specialty: str | None
    start: dt.datetime
    end: dt.datetime
    withdrawn: bool
    booked: bool


class DeliveryOut(BaseModel):
    event_id: str
    facility_id: str
    event_type: str
    slot_id: uuid.UUID
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    last_status: int | None
    last_error: str | None


class ChangeOut(BaseModel):
    sequence: int
    kind: str
    reference: str
    repeated: bool = Field(description="the same change again (a retry): nothing changed")
    received_at: dt.datetime


# ----------------------------------------------------------------------------- state


@dataclass
class SlotRecord:
    facility_id: str
    schedule_id: uuid.UUID
    specialty: str | None
    start: dt.datetime
    end: dt.datetime
    withdrawn: bool = False


@dataclass
class Delivery:
    event_id: str
    facility_id: str
    event_type: str
    slot_id: uuid.UUID
    body: bytes
    status: Literal["pending", "delivered", "failed"] = "pending"
    attempts: int = 0
    last_status: int | None = None
    last_error: str | None = None


@dataclass
class CerState:
    retry_seconds: float = 0.5
    max_attempts: int = 8
    up: bool = True
    # Where notifications travel: the network, or (tests) an in-process gateway app.
    transport: httpx.AsyncBaseTransport | None = None
    endpoints: dict[str, NotificationSettingsIn] = field(default_factory=dict)
    slots: dict[uuid.UUID, SlotRecord] = field(default_factory=dict)
    bookings: dict[uuid.UUID, BookingOut] = field(default_factory=dict)
    changes: dict[str, list[ChangeOut]] = field(default_factory=dict)
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def active_on(self, slot_id: uuid.UUID) -> BookingOut | None:
        return next((b for b in self.bookings.values() if b.slot_id == slot_id and b.status == "active"), None)

    def slot(self, facility_id: str, slot_id: uuid.UUID) -> SlotRecord:
        slot = self.slots.get(slot_id)
        if slot is None or slot.facility_id != facility_id:
            raise NotFound(f"CeR knows no published slot {slot_id} of this facility")
        return slot

    def record(self, facility_id: str, kind: str, reference: str, *, repeated: bool = False) -> None:
        log_ = self.changes.setdefault(facility_id, [])
        log_.append(
            ChangeOut(sequence=len(log_) + 1, kind=kind, reference=reference, repeated=repeated, received_at=_utcnow())
        )

    def book(
        self, facility_id: str, slot_id: uuid.UUID, pesel: str, channel: str, local: uuid.UUID | None
    ) -> BookingOut:
        booking = BookingOut(
            cer_booking_id=uuid.uuid4(),
            facility_id=facility_id,
            slot_id=slot_id,
            patient_pesel=pesel,
            channel=channel,
            status="active",
            booked_at=_utcnow(),
            start=self.slots[slot_id].start,
            local_booking_id=local,
        )
        self.bookings[booking.cer_booking_id] = booking
        return booking

    def set_status(self, booking: BookingOut, status: Literal["active", "cancelled", "refused"]) -> None:
        self.bookings[booking.cer_booking_id] = booking.model_copy(update={"status": status})

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def cer_state(request: Request) -> CerState:
    state: CerState = request.app.state.cer
    return state


StateDep = Annotated[CerState, Depends(cer_state)]


# ----------------------------------------------------------------------------- notifications out


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """API.md: ``sha256=`` + hex HMAC-SHA256 of ``<timestamp>.<raw body>`` keyed with the secret.
    Written from the contract rather than imported from the integration service: CeR is the other
    party, so a mistake in one side's reading of API.md shows up as a refused notification."""
    return "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def _notify(state: CerState, facility_id: str, event_type: str, slot_id: uuid.UUID, pesel: str) -> str:
    event_id = f"cer-{uuid.uuid4()}"
    body = {
        "event_id": event_id,
        "event_type": event_type,
        "occurred_at": _utcnow().isoformat(),
        "slot_id": str(slot_id),
        "patient_pesel": pesel,
    }
    delivery = Delivery(event_id, facility_id, event_type, slot_id, json.dumps(body).encode())
    state.deliveries[event_id] = delivery
    task = asyncio.create_task(_deliver(state, delivery))
    state.tasks.add(task)
    task.add_done_callback(state.tasks.discard)
    return event_id


async def _deliver(state: CerState, delivery: Delivery) -> None:
    """Signed anew at every attempt (the timestamp must be fresh); retried with backoff until 2xx."""
    async with httpx.AsyncClient(transport=state.transport, timeout=5.0) as client:
        for attempt in range(1, state.max_attempts + 1):
            delivery.attempts = attempt
            target = state.endpoints.get(delivery.facility_id)
            if target is None:
                delivery.last_error = "the facility has registered no notification endpoint"
            else:
                now = int(time.time())
                headers = {
                    "content-type": "application/json",
                    "x-cer-timestamp": str(now),
                    "x-cer-signature": signature(target.secret, now, delivery.body),
                }
                try:
                    answer = await client.post(str(target.endpoint), content=delivery.body, headers=headers)
                    delivery.last_status, delivery.last_error = answer.status_code, None
                    if answer.is_success:
                        delivery.status = "delivered"
                        return
                except httpx.HTTPError as exc:
                    delivery.last_error = f"{type(exc).__name__}: {exc}"[:300]
            if attempt < state.max_attempts:  # after the last one there is nothing to wait for
                await asyncio.sleep(min(state.retry_seconds * 2 ** (attempt - 1), MAX_RETRY_DELAY_SECONDS))
    delivery.status = "failed"
    log.warning("cer_notification_failed", event_id=delivery.event_id, attempts=delivery.attempts)


# ----------------------------------------------------------------------------- routes

_control = outage_controls(cer_state, "the facility's calls answer 503")
_system = APIRouter(dependencies=[Depends(available(cer_state, "CeR", "cer-unavailable"))])


@_system.put("/facilities/{facility_id}/notifications", response_model=StatusOut)
async def register_endpoint(facility_id: str, body: NotificationSettingsIn, state: StateDep) -> StatusOut:
    state.endpoints[facility_id] = body
    state.record(facility_id, "register_endpoint", str(body.endpoint))
    return StatusOut(up=True)


@_system.post("/schedules", response_model=list[SlotOut], summary="Publish a schedule's slots (idempotent)")
async def publish_schedule(body: ScheduleIn, state: StateDep) -> list[SlotOut]:
    repeated = all(s.slot_id in state.slots for s in body.slots)
    for s in body.slots:
        known = state.slots.get(s.slot_id)
        if known is not None and known.facility_id != body.facility_id:
            raise Conflict(f"slot {s.slot_id} is published by another facility", code="slot-of-another-facility")
    for s in body.slots:
        withdrawn = state.slots[s.slot_id].withdrawn if s.slot_id in state.slots else False
        state.slots[s.slot_id] = SlotRecord(
            body.facility_id, body.schedule_id, body.specialty, s.start, s.end, withdrawn
        )
    state.record(body.facility_id, "publish_schedule", str(body.schedule_id), repeated=repeated)
    return [_slot_view(state, s.slot_id) for s in body.slots]


@_system.post("/slots/withdraw", response_model=StatusOut, summary="Stop offering slots")
async def withdraw_slots(body: WithdrawIn, state: StateDep) -> StatusOut:
    # Every slot is looked up before any is withdrawn: a 404 must leave nothing half done.
    for slot in [state.slot(body.facility_id, slot_id) for slot_id in body.slot_ids]:
        slot.withdrawn = True
    state.record(body.facility_id, "withdraw_slots", ",".join(map(str, body.slot_ids))[:200])
    return StatusOut(up=True)


@_system.post("/bookings", status_code=201, response_model=BookingOut, responses={200: {"description": "known"}})
async def facility_booking(body: FacilityBookingIn, state: StateDep, response: Response) -> BookingOut:
    """A booking made at the facility; 409 when CeR gave the slot to another patient."""
    state.slot(body.facility_id, body.slot_id)
    holder = state.active_on(body.slot_id)
    if holder is not None and (
        holder.local_booking_id == body.booking_id or holder.patient_pesel == body.patient_pesel
    ):
        state.bookings[holder.cer_booking_id] = holder.model_copy(update={"local_booking_id": body.booking_id})
        state.record(body.facility_id, "book", str(body.booking_id), repeated=True)
        response.status_code = 200
        return state.bookings[holder.cer_booking_id]
    if holder is not None:
        raise Conflict("CeR has given this slot to another patient", code="slot-taken-in-cer")
    state.record(body.facility_id, "book", str(body.booking_id))
    return state.book(body.facility_id, body.slot_id, body.patient_pesel, "facility", body.booking_id)


@_system.post("/bookings/refuse", response_model=StatusOut, summary="A CeR booking the facility could not take")
async def refuse_booking(body: RefuseIn, state: StateDep) -> StatusOut:
    state.slot(body.facility_id, body.slot_id)
    refused = next(
        (
            b
            for b in state.bookings.values()
            if b.slot_id == body.slot_id and b.patient_pesel == body.patient_pesel and b.status == "active"
        ),
        None,
    )
    if refused is not None:
        state.set_status(refused, "refused")
    if body.held_by_booking_id is not None and body.held_by_pesel is not None and state.active_on(body.slot_id) is None:
        state.book(body.facility_id, body.slot_id, body.held_by_pesel, "facility", body.held_by_booking_id)
    state.record(body.facility_id, "refuse", body.cer_event_id, repeated=refused is None)
    return StatusOut(up=True)


@_system.post("/bookings/{booking_id}/cancel", response_model=StatusOut, summary="Cancelled at the facility")
async def facility_cancellation(booking_id: uuid.UUID, body: FacilityCancelIn, state: StateDep) -> StatusOut:
    """By the facility's booking id, or (a booking that came from CeR) by slot and patient."""
    found = [
        b
        for b in state.bookings.values()
        if b.facility_id == body.facility_id
        and b.status == "active"
        and (b.local_booking_id == booking_id or (b.slot_id == body.slot_id and b.patient_pesel == body.patient_pesel))
    ]
    # The same cancellation again; a first one with nothing to cancel (a visit CeR never heard of) is not.
    repeated = not found and any(
        b.local_booking_id == booking_id and b.status == "cancelled" for b in state.bookings.values()
    )
    for booking in found:
        state.set_status(booking, "cancelled")
    state.record(body.facility_id, "cancel", str(booking_id), repeated=repeated)
    return StatusOut(up=True)


@_system.get("/facilities/{facility_id}/bookings", response_model=list[BookingOut])
async def facility_bookings(
    facility_id: str,
    state: StateDep,
    status: Annotated[Literal["active", "cancelled", "refused"] | None, Query()] = "active",
) -> list[BookingOut]:
    found = [b for b in state.bookings.values() if b.facility_id == facility_id and status in (None, b.status)]
    return sorted(found, key=lambda b: (b.start, str(b.slot_id)))


@_system.get("/facilities/{facility_id}/slots", response_model=list[SlotOut])
async def facility_slots(facility_id: str, state: StateDep) -> list[SlotOut]:
    ids = [slot_id for slot_id, s in state.slots.items() if s.facility_id == facility_id]
    return sorted((_slot_view(state, i) for i in ids), key=lambda s: (s.start, str(s.slot_id)))


def _slot_view(state: CerState, slot_id: uuid.UUID) -> SlotOut:
    s = state.slots[slot_id]
    return SlotOut(
        slot_id=slot_id,
        schedule_id=s.schedule_id,
        specialty=s.specialty,
        start=s.start,
        end=s.end,
        withdrawn=s.withdrawn,
        booked=state.active_on(slot_id) is not None,
    )


# --- patient play and inspection (the simulator's own controls, never down)


@_control.post("/patients/bookings", status_code=201, response_model=PatientBookingOut)
async def patient_books(body: PatientBookingIn, state: StateDep) -> PatientBookingOut:
    """A patient books a published slot in CeR; the facility is notified (unless ``notify`` is false)."""
    slot = state.slot(body.facility_id, body.slot_id)
    if slot.withdrawn:
        raise Conflict("the slot is no longer offered", code="slot-withdrawn")
    if state.active_on(body.slot_id) is not None:
        raise Conflict("the slot is already booked in CeR", code="slot-taken-in-cer")
    booking = state.book(body.facility_id, body.slot_id, body.patient_pesel, body.channel, None)
    event_id = (
        _notify(state, body.facility_id, BOOKING_EVENT[body.channel], body.slot_id, body.patient_pesel)
        if body.notify
        else None
    )
    return PatientBookingOut(cer_booking_id=booking.cer_booking_id, event_id=event_id)


@_control.post("/patients/cancellations", response_model=PatientBookingOut)
async def patient_cancels(body: PatientCancelIn, state: StateDep) -> PatientBookingOut:
    booking = state.active_on(body.slot_id)
    if booking is None or booking.patient_pesel != body.patient_pesel or booking.facility_id != body.facility_id:
        raise NotFound("this patient has no booking of this slot in CeR")
    state.set_status(booking, "cancelled")
    event_id = (
        _notify(state, body.facility_id, CANCELLED_EVENT, body.slot_id, body.patient_pesel) if body.notify else None
    )
    return PatientBookingOut(cer_booking_id=booking.cer_booking_id, event_id=event_id)


@_control.get("/deliveries", response_model=list[DeliveryOut])
async def deliveries(state: StateDep, facility_id: str | None = None) -> list[DeliveryOut]:
    return [
        DeliveryOut(
            event_id=d.event_id,
            facility_id=d.facility_id,
            event_type=d.event_type,
            slot_id=d.slot_id,
            status=d.status,
            attempts=d.attempts,
            last_status=d.last_status,
            last_error=d.last_error,
        )
        for d in state.deliveries.values()
        if facility_id in (None, d.facility_id)
    ]


@_control.get("/facilities/{facility_id}/changes", response_model=list[ChangeOut])
async def facility_changes(facility_id: str, state: StateDep) -> list[ChangeOut]:
    """The facility's changes in the order CeR received them."""
    return state.changes.get(facility_id, [])


router = APIRouter(prefix="/sandbox/cer", tags=["sandbox: CeR central e-registration"], responses=PROBLEM_RESPONSES)
router.include_router(_control)
router.include_router(_system)

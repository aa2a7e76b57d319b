"""Routing a request to a slot through the scheduling service (the rules are in ``domain.routing``).

Scheduling owns slots and double booking: here we ask it for the candidates, then book them in
the domain's order. A slot lost to a concurrent booking (409) is added to ``taken`` and the rules
are asked again, so the request moves on to the next slot - or to the duty doctor - and the
problems raised are those of the final outcome.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from services.prescriptions import domain
from services.scheduling.client import SchedulingClient
from services.scheduling.schemas import BookingOut, PractitionerOut, SlotOut


class UnknownLocation(LookupError):
    """The request names a location the facility does not have."""


@dataclass(frozen=True)
class RouteRequest:
    request_id: uuid.UUID
    facility_id: str
    patient_pesel: str
    npwz: str
    location_id: uuid.UUID
    service_active: bool
    ordering_switch: bool | None  # None: never set for this NPWZ
    ikp_enabled: bool


@dataclass(frozen=True)
class Routed:
    outcome: domain.RoutingOutcome
    booking: BookingOut | None
    assigned_npwz: str | None
    slot_start: dt.datetime | None


def _free_slot(slot: SlotOut) -> domain.FreeSlot:
    return domain.FreeSlot(str(slot.id), str(slot.practitioner_id), str(slot.location_id), slot.start)


def ordering_enabled(practitioner: PractitionerOut, switch: bool | None, ikp_enabled: bool) -> bool:
    """The explicit per-doctor switch wins; without one, IKP integration enables every POZ doctor."""
    if switch is not None:
        return switch
    return ikp_enabled and practitioner.poz


class Router:
    def __init__(self, scheduling: SchedulingClient) -> None:
        self.scheduling = scheduling

    async def route(self, request: RouteRequest, now: dt.datetime) -> Routed:
        facility = request.facility_id
        practitioners = {p.npwz: p for p in await self.scheduling.practitioners(facility)}
        by_id = {str(p.id): p for p in practitioners.values()}
        doctor = practitioners.get(request.npwz)
        target = (
            domain.TargetDoctor(
                str(doctor.id), doctor.npwz, ordering_enabled(doctor, request.ordering_switch, request.ikp_enabled)
            )
            if doctor is not None
            else None
        )
        location = await self.scheduling.location(facility, request.location_id)
        if location is None:
            raise UnknownLocation(str(request.location_id))
        duty_id = location.duty_practitioner_id
        target_slots = await self._slots(
            facility, doctor.id if doctor and target and target.ordering_enabled else None, now
        )
        duty_slots = await self._slots(facility, duty_id, now)
        taken: set[str] = set()
        while True:
            outcome = domain.route_request(
                service_active=request.service_active,
                npwz=request.npwz,
                target=target,
                target_slots=target_slots,
                location_id=str(request.location_id),
                duty_doctor_id=str(duty_id) if duty_id else None,
                duty_slots=duty_slots,
                taken=taken,
            )
            if outcome.choice is None:
                return Routed(outcome, None, None, None)
            slot = outcome.choice.slot
            booking = await self.scheduling.book(
                facility,
                uuid.UUID(slot.slot_id),
                request.patient_pesel,
                idempotency_key=f"prescription-request:{request.request_id}:{slot.slot_id}",
            )
            if booking is not None:
                assigned = by_id.get(slot.practitioner_id)
                return Routed(outcome, booking, assigned.npwz if assigned else None, slot.starts_at)
            taken.add(slot.slot_id)

    async def _slots(self, facility: str, practitioner_id: uuid.UUID | None, now: dt.datetime) -> list[domain.FreeSlot]:
        if practitioner_id is None:
            return []
        slots = await self.scheduling.free_prescription_slots(facility, practitioner_id, start_after=now)
        return [_free_slot(s) for s in slots]

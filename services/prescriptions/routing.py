"""Routing a request to a slot through the scheduling service (the rules are in ``domain.routing``).

Scheduling owns slots and double booking. The domain's order - the doctor's earliest prescription
slot, then the duty doctor's at the request's location, then the duty doctor's elsewhere - is
walked tier by tier, and scheduling books each tier's earliest free slot in one step (``SKIP
LOCKED``): concurrent requests take successive slots instead of all racing for the first one and
retrying. The problems raised are those of the final outcome.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from services.prescriptions import domain
from services.scheduling.client import SchedulingClient
from services.scheduling.schemas import BookingOut, PractitionerOut


class UnknownLocation(LookupError):
    """The request names a location the facility does not have."""


class PortalRefused(Exception):
    """A portal request to a practitioner the portal does not offer; ``notice`` tells the facility."""

    def __init__(self, notice: domain.ProblemNotice) -> None:
        super().__init__(notice.problem.name)
        self.notice = notice


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
    portal: bool = False


@dataclass(frozen=True)
class Routed:
    outcome: domain.RoutingOutcome
    booking: BookingOut | None
    assigned_npwz: str | None
    slot_start: dt.datetime | None


def ordering_enabled(practitioner: PractitionerOut, switch: bool | None, ikp_enabled: bool) -> bool:
    """The explicit per-doctor switch wins; without one, IKP integration enables every POZ doctor."""
    if switch is not None:
        return switch
    return ikp_enabled and practitioner.poz


class Router:
    def __init__(self, scheduling: SchedulingClient) -> None:
        self.scheduling = scheduling

    async def route(self, request: RouteRequest, now: dt.datetime) -> Routed:
        """Tiers in the domain's order, each booked in one step by scheduling (its earliest free slot),
        so requests racing for the last slot of a tier each get a slot or move to the next tier."""
        facility = request.facility_id
        practitioners = {p.npwz: p for p in await self.scheduling.practitioners(facility)}
        by_id = {p.id: p for p in practitioners.values()}
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
        if not request.service_active:
            notice = domain.ProblemNotice(domain.Problem.NO_ACTIVE_SERVICE, request.npwz)
            return Routed(domain.RoutingOutcome(None, (notice,)), None, None, None)
        refusal = domain.portal_refusal(request.npwz, target) if request.portal else None
        if refusal is not None:
            raise PortalRefused(refusal)
        duty = location.duty_practitioner_id
        tiers = domain.routing_tiers(target, str(location.id), str(duty) if duty else None)
        for number, tier in enumerate(tiers):
            practitioner_id = uuid.UUID(tier.practitioner_id)
            booking = await self.scheduling.book_earliest(
                facility,
                practitioner_id,
                request.patient_pesel,
                start_after=now,
                idempotency_key=f"prescription-request:{request.request_id}:{number}",
                location_id=uuid.UUID(tier.only_at) if tier.only_at else None,
                exclude_location_id=uuid.UUID(tier.not_at) if tier.not_at else None,
            )
            if booking is None:
                continue
            slot = domain.FreeSlot(
                str(booking.slot_id), str(practitioner_id), str(booking.location_id), booking.start or now
            )
            choice = domain.RouteChoice(tier.kind, slot, booking.location_id == location.id)
            problems = domain.routing_problems(npwz=request.npwz, target=target, booked=tier.kind)
            assigned = by_id.get(practitioner_id)
            return Routed(
                domain.RoutingOutcome(choice, problems), booking, assigned.npwz if assigned else None, booking.start
            )
        problems = domain.routing_problems(npwz=request.npwz, target=target, booked=None)
        return Routed(domain.RoutingOutcome(None, problems), None, None, None)

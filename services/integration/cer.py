"""CeR adapter: a small typed HTTP client for the central e-registration (centralna e-rejestracja).

It speaks to the sandbox's CeR router or to the real registry, chosen by base URL alone (the CeR
root, e.g. ``http://sandbox:8190/sandbox/cer``). Failures end as typed errors: ``CerUnavailable``
(timeout, unreachable, 5xx: the change waits in the queue and is offered again), ``CerRefused``
(4xx: CeR said no for good; a person must look at it), ``CerBadAnswer`` (an answer the contract
does not allow).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Literal

from pydantic import Field, TypeAdapter

from shared.http_client import ErrorKinds, HttpClientError, JsonAnswer, JsonClient, JsonRequest, segment


class CerError(HttpClientError):
    """Any failure to get a valid answer from CeR."""


class CerUnavailable(CerError):
    """CeR did not answer in time, could not be reached, or failed on its side (5xx)."""


class CerRefused(CerError):
    """CeR refused the change (4xx); ``message`` carries its reason."""


class CerNotFound(CerRefused):
    """CeR knows no such slot or booking (404)."""


class CerBadAnswer(CerError):
    """CeR answered something the contract does not allow."""


# ----------------------------------------------------------------------------- the wire format


class NotificationSettings(JsonRequest):
    endpoint: str
    email: str
    secret: str = Field(repr=False)


class PublishedSlot(JsonRequest):
    slot_id: uuid.UUID
    start: dt.datetime
    end: dt.datetime


class Schedule(JsonRequest):
    facility_id: str
    schedule_id: uuid.UUID
    specialty: str | None
    slots: list[PublishedSlot]


class SlotsWithdrawal(JsonRequest):
    facility_id: str
    slot_ids: list[uuid.UUID]


class FacilityBooking(JsonRequest):
    facility_id: str
    booking_id: uuid.UUID
    slot_id: uuid.UUID
    patient_pesel: str = Field(repr=False)


class FacilityCancellation(JsonRequest):
    facility_id: str
    slot_id: uuid.UUID | None = None
    patient_pesel: str | None = Field(default=None, repr=False)


class Refusal(JsonRequest):
    facility_id: str
    slot_id: uuid.UUID
    patient_pesel: str = Field(repr=False)
    cer_event_id: str
    reason: str
    held_by_booking_id: uuid.UUID | None = None
    held_by_pesel: str | None = Field(default=None, repr=False)


class CerBooking(JsonAnswer):
    cer_booking_id: uuid.UUID
    facility_id: str
    slot_id: uuid.UUID
    patient_pesel: str = Field(repr=False)
    channel: str
    status: Literal["active", "cancelled", "refused"]
    start: dt.datetime
    local_booking_id: uuid.UUID | None = None


class Ack(JsonAnswer):
    up: bool = True


class _Slot(JsonAnswer):
    slot_id: uuid.UUID


_BOOKINGS = TypeAdapter(list[CerBooking])
_SLOTS = TypeAdapter(list[_Slot])


# ----------------------------------------------------------------------------- the client


class CerClient(JsonClient):
    system = "CeR"
    errors = ErrorKinds(unavailable=CerUnavailable, refused=CerRefused, not_found=CerNotFound, bad_answer=CerBadAnswer)

    async def register_endpoint(self, facility_id: str, settings: NotificationSettings) -> None:
        await self._call("PUT", f"/facilities/{segment(facility_id)}/notifications", Ack, json=settings)

    async def publish_schedule(self, schedule: Schedule) -> None:
        answer = await self._send(
            "POST", "/schedules", json=schedule, idempotency_key=str(schedule.schedule_id), expected=(200,)
        )
        self._parse(answer, _SLOTS)

    async def withdraw_slots(self, withdrawal: SlotsWithdrawal) -> None:
        await self._call("POST", "/slots/withdraw", Ack, json=withdrawal)

    async def report_booking(self, booking: FacilityBooking) -> CerBooking:
        return await self._call(
            "POST",
            "/bookings",
            CerBooking,
            json=booking,
            idempotency_key=str(booking.booking_id),
            expected=(200, 201),
        )

    async def report_cancellation(self, booking_id: uuid.UUID, cancellation: FacilityCancellation) -> None:
        await self._call("POST", f"/bookings/{booking_id}/cancel", Ack, json=cancellation)

    async def refuse_booking(self, refusal: Refusal) -> None:
        await self._call("POST", "/bookings/refuse", Ack, json=refusal)

    async def bookings(self, facility_id: str) -> list[CerBooking]:
        """The facility's active bookings as CeR holds them."""
        answer = await self._send(
            "GET", f"/facilities/{segment(facility_id)}/bookings", params={"status": "active"}, expected=(200,)
        )
        found = self._parse(answer, _BOOKINGS)
        if any(b.facility_id != facility_id for b in found):
            raise CerBadAnswer("CeR answered bookings of another facility")
        return found

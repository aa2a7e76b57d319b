"""Typed HTTP client of the scheduling service, for the services that need its answer now.

ARCHITECTURE: a question that needs an answer now (which doctor has this NPWZ, the earliest free
prescription slot, book it) goes over HTTP through a typed client with timeouts and an idempotency
key - never into another service's database. Prescriptions and integration use this one; it speaks
to a scheduling service at a URL or to its app in this process (``transport=httpx.ASGITransport``)
through exactly the same code.

Each call carries a short-lived token of its own, minted for the facility the call is about, so
scheduling's tenant scoping and role checks apply to services as they do to people. Every failure
ends as one of three typed errors, so callers decide by kind, never by parsing messages:

- ``SchedulingUnavailable``: no usable answer (timeout, unreachable, 5xx). Retrying later is right.
- ``SchedulingRefused``: scheduling understood and said no (4xx; ``message`` is the problem's detail).
- ``SchedulingBadAnswer``: an answer the contract does not allow (not JSON, wrong shape, odd status).

The answers that are part of a call's meaning are not errors: an unknown NPWZ or location is
``None``, and a slot someone else booked first is ``None`` from ``book``.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import httpx
from pydantic import TypeAdapter

from services.scheduling.schemas import (
    BookingOut,
    BookingSource,
    LocationOut,
    PractitionerOut,
    SlotOut,
    SlotStatus,
    WorkTypeOut,
)
from shared.auth import Claims, Role, issue_token
from shared.http_client import DEFAULT_TIMEOUT_SECONDS, ErrorKinds, HttpClientError, JsonClient, problem_code
from shared.logging import request_id_var
from shared.settings import Settings

API = "/api/v1/scheduling"
# A token minted for one call needs to outlive only that call (and some clock skew between hosts).
SERVICE_TOKEN_TTL_SECONDS = 300
# NPWZ numbers have 7 characters (8 with a nurse's suffix); scheduling refuses longer look-ups.
NPWZ_MAX_LENGTH = 8

_PRACTITIONERS = TypeAdapter(list[PractitionerOut])
_LOCATIONS = TypeAdapter(list[LocationOut])
_WORK_TYPES = TypeAdapter(list[WorkTypeOut])
_SLOTS = TypeAdapter(list[SlotOut])
_LOCATION = TypeAdapter(LocationOut)
_BOOKING = TypeAdapter(BookingOut)
_BOOKINGS = TypeAdapter(list[BookingOut])


class SchedulingClientError(HttpClientError):
    """Any failure to get a valid answer from the scheduling service."""


class SchedulingUnavailable(SchedulingClientError):
    """Scheduling did not answer in time, could not be reached, or failed on its side (5xx)."""


class SchedulingRefused(SchedulingClientError):
    """Scheduling refused the request (4xx); ``message`` is its problem ``detail``."""


class SchedulingBadAnswer(SchedulingClientError):
    """Scheduling answered something its contract does not allow."""


class SchedulingClient(JsonClient):
    """``SchedulingClient(base_url, settings, caller="prescriptions")``; ``caller`` names the calling
    service in the tokens (``sub=service:<caller>``), so scheduling's logs and idempotency records
    tell the callers apart.
    """

    system = "scheduling"
    # Scheduling has no not-found kind: ``location`` asks for its 404 raw (as ``None``), elsewhere it is refused.
    errors = ErrorKinds(
        unavailable=SchedulingUnavailable,
        refused=SchedulingRefused,
        not_found=SchedulingRefused,
        bad_answer=SchedulingBadAnswer,
    )

    def __init__(
        self,
        base_url: str,
        settings: Settings,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
        caller: str,
    ) -> None:
        self.caller = caller
        self._settings = settings.model_copy(
            update={"jwt_ttl_seconds": min(settings.jwt_ttl_seconds, SERVICE_TOKEN_TTL_SECONDS)}
        )
        super().__init__(base_url.rstrip("/") + API, timeout=timeout, transport=transport)

    # ------------------------------------------------------------------------- reference data

    async def practitioner_by_npwz(self, facility_id: str, npwz: str) -> PractitionerOut | None:
        wanted = npwz.strip()
        if not wanted or len(wanted) > NPWZ_MAX_LENGTH:
            return None  # no practitioner can have it; asking would only earn a 422
        answer = await self._ask(facility_id, "GET", "/practitioners", params={"npwz": wanted})
        found = self._parse(answer, _PRACTITIONERS)
        return found[0] if found else None

    async def practitioners(self, facility_id: str) -> list[PractitionerOut]:
        return self._parse(await self._ask(facility_id, "GET", "/practitioners"), _PRACTITIONERS)

    async def location(self, facility_id: str, location_id: uuid.UUID) -> LocationOut | None:
        answer = await self._ask(facility_id, "GET", f"/locations/{location_id}", answers=(404,))
        if answer.status_code == 404:  # absent, or another facility's: scheduling does not tell which
            return None
        return self._parse(answer, _LOCATION)

    async def locations(self, facility_id: str) -> list[LocationOut]:
        return self._parse(await self._ask(facility_id, "GET", "/locations"), _LOCATIONS)

    async def work_types(self, facility_id: str) -> list[WorkTypeOut]:
        return self._parse(await self._ask(facility_id, "GET", "/work-types"), _WORK_TYPES)

    # ------------------------------------------------------------------------- slots

    async def free_prescription_slots(
        self, facility_id: str, practitioner_id: uuid.UUID, *, start_after: dt.datetime, limit: int = 200
    ) -> list[SlotOut]:
        """The practitioner's free slots of prescription-only work after ``start_after``, earliest first."""
        params = {
            "practitioner_id": str(practitioner_id),
            "status": SlotStatus.free.value,
            "prescription_only": "true",
            "start_after": _instant(start_after),
            "limit": limit,
        }
        return self._parse(await self._ask(facility_id, "GET", "/slots", params=params), _SLOTS)

    async def slots(
        self,
        facility_id: str,
        *,
        practitioner_id: uuid.UUID | None = None,
        location_id: uuid.UUID | None = None,
        status: SlotStatus | None = None,
        limit: int = 500,
    ) -> list[SlotOut]:
        params: dict[str, Any] = {"limit": limit}
        if practitioner_id is not None:
            params["practitioner_id"] = str(practitioner_id)
        if location_id is not None:
            params["location_id"] = str(location_id)
        if status is not None:
            params["status"] = status.value
        return self._parse(await self._ask(facility_id, "GET", "/slots", params=params), _SLOTS)

    # ------------------------------------------------------------------------- bookings

    async def book(
        self,
        facility_id: str,
        slot_id: uuid.UUID,
        patient_pesel: str,
        *,
        idempotency_key: str,
        source: BookingSource = BookingSource.prescription_request,
    ) -> BookingOut | None:
        """Book the slot; ``None`` when it cannot be had (taken meanwhile, or its doctor is absent).

        A retry with the same ``idempotency_key`` answers the first booking again instead of making
        a second one, so a call whose answer was lost may simply be repeated.
        """
        body = {"slot_id": str(slot_id), "patient_pesel": patient_pesel, "source": source.value}
        answer = await self._ask(
            facility_id, "POST", "/bookings", json=body, idempotency_key=idempotency_key, answers=(409,)
        )
        if answer.status_code == 409:
            code = problem_code(answer)
            if code == "idempotency-in-progress":
                # Our own earlier attempt is still running there: its outcome is not known yet.
                raise SchedulingUnavailable(
                    "scheduling is still processing an earlier attempt of this booking", status=409, code=code
                )
            return None  # the caller moves on to its next slot
        return self._parse(answer, _BOOKING)

    async def book_earliest(
        self,
        facility_id: str,
        practitioner_id: uuid.UUID,
        patient_pesel: str,
        *,
        start_after: dt.datetime,
        idempotency_key: str,
        location_id: uuid.UUID | None = None,
        exclude_location_id: uuid.UUID | None = None,
        prescription_only: bool | None = True,
        source: BookingSource = BookingSource.prescription_request,
    ) -> BookingOut | None:
        """The practitioner's earliest free slot that fits, booked in one step; ``None``: none fits."""
        body = {
            "practitioner_id": str(practitioner_id),
            "location_id": str(location_id) if location_id else None,
            "exclude_location_id": str(exclude_location_id) if exclude_location_id else None,
            "prescription_only": prescription_only,
            "start_after": start_after.isoformat(),
            "patient_pesel": patient_pesel,
            "source": source.value,
        }
        answer = await self._ask(
            facility_id, "POST", "/bookings/earliest", json=body, idempotency_key=idempotency_key, answers=(404,)
        )
        if answer.status_code == 404:
            return None
        return self._parse(answer, _BOOKING)

    async def bookings(
        self, facility_id: str, *, cer_published: bool | None = None, start_from: dt.datetime | None = None
    ) -> list[BookingOut]:
        """Active bookings, earliest visit first (of slots published to CeR, when asked)."""
        params: dict[str, Any] = {"status": "booked", "limit": 5000}
        if cer_published is not None:
            params["cer_published"] = "true" if cer_published else "false"
        if start_from is not None:
            params["start_from"] = _instant(start_from)
        return self._parse(await self._ask(facility_id, "GET", "/bookings", params=params), _BOOKINGS)

    async def cancel_booking(self, facility_id: str, booking_id: uuid.UUID) -> BookingOut:
        # Cancelling is idempotent in scheduling itself (a second cancel answers the same booking).
        return self._parse(await self._ask(facility_id, "POST", f"/bookings/{booking_id}/cancel"), _BOOKING)

    # ------------------------------------------------------------------------- the wire

    def _headers(self, facility_id: str) -> dict[str, str]:
        claims = Claims(sub=f"service:{self.caller}", role=Role.registrar, facility_id=facility_id)
        headers = {"authorization": f"Bearer {issue_token(claims, self._settings)}"}
        request_id = request_id_var.get()
        if request_id:
            headers["x-request-id"] = request_id
        return headers

    async def _ask(
        self,
        facility_id: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        answers: tuple[int, ...] = (),
    ) -> httpx.Response:
        """The raw answer of a 2xx, or of a status in ``answers`` (one the caller gives a meaning)."""
        return await self._send(
            method,
            path,
            params=params,
            json=json,
            headers=self._headers(facility_id),
            idempotency_key=idempotency_key,
            answers=answers,
        )


def _instant(value: dt.datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("start_after must be an aware datetime (with an offset)")
    return value.isoformat()

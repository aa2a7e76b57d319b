"""eZWM adapter: a small typed HTTP client for NFZ's system of medical-supply orders.

It speaks to the sandbox's eZWM router or to the real system, chosen by base URL alone. Every
failure ends as one of three typed errors, so callers decide by kind, never by parsing messages:

- ``EzwmUnavailable``: no usable answer (timeout, connection refused, 5xx). Retrying later is right;
  a realisation made meanwhile is recorded locally and registered when eZWM answers again.
- ``EzwmRefused``: eZWM understood and said no (4xx with its reason). Retrying the same call is wrong.
- ``EzwmBadAnswer``: an answer that is not what the contract says (not JSON, missing fields).
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Literal

from pydantic import Field

from shared.http_client import DEFAULT_TIMEOUT_SECONDS as DEFAULT_TIMEOUT_SECONDS
from shared.http_client import ErrorKinds, HttpClientError, JsonAnswer, JsonClient, JsonRequest, segment


class EzwmError(HttpClientError):
    """Any failure to get a valid answer from eZWM."""


class EzwmUnavailable(EzwmError):
    """eZWM did not answer in time, could not be reached, or failed on its side (5xx)."""


class EzwmRefused(EzwmError):
    """eZWM refused the request (4xx, a 404 too); ``message`` carries its reason."""


class EzwmBadAnswer(EzwmError):
    """eZWM answered something the contract does not allow (not JSON, wrong shape, odd status)."""


# ----------------------------------------------------------------------------- the wire format


class OrderToVerify(JsonRequest):
    """An order as the doctor issues it; eZWM verifies it and assigns its number."""

    patient_pesel: str
    code: str
    group: str
    pieces_per_month: int
    months: int
    start_month: str
    entitlements: list[str]
    channel: str
    short_form: bool = False
    facility_id: str


class OrderVerification(JsonAnswer):
    number: str = Field(min_length=1, max_length=40)
    verification: Literal["positive", "negative"]
    reasons: list[str] = Field(default_factory=list)


class RealisationToRegister(JsonRequest):
    """One realisation; ``realization_id`` makes the registration idempotent on eZWM's side."""

    realization_id: uuid.UUID
    pharmacy_id: str
    realized_on: dt.date
    months: list[str]
    pieces: int
    unit_price: Decimal
    subsidy: Decimal
    patient_share: Decimal
    entitlements: list[str]


class RegistrationReceipt(JsonAnswer):
    realization_id: uuid.UUID
    registration_number: str = Field(min_length=1, max_length=60)


class OrderEnded(JsonAnswer):
    number: str
    end_month: str


class EzwmOrder(JsonAnswer):
    number: str
    verification: Literal["positive", "negative"]
    reasons: list[str] = Field(default_factory=list)
    locked_by: str | None = None
    end_month: str | None = None
    months_registered: list[str] = Field(default_factory=list)


# ----------------------------------------------------------------------------- the client


class EzwmClient(JsonClient):
    """``EzwmClient(base_url)`` for the network; add ``transport=httpx.ASGITransport(app=...)``
    to reach an in-process app (the embedded sandbox) through exactly the same code.
    """

    system = "eZWM"
    # eZWM has no not-found kind of its own: its 404 (no such order) is refused like its other 4xx.
    errors = ErrorKinds(
        unavailable=EzwmUnavailable, refused=EzwmRefused, not_found=EzwmRefused, bad_answer=EzwmBadAnswer
    )

    async def verify_order(self, order: OrderToVerify, *, idempotency_key: str | None = None) -> OrderVerification:
        """Verify and number a new order; a negative verification is an answer, not an error."""
        return await self._call(
            "POST", "/orders", OrderVerification, json=order, idempotency_key=idempotency_key or uuid.uuid4().hex
        )

    async def register_realisation(self, number: str, realisation: RealisationToRegister) -> RegistrationReceipt:
        return await self._call(
            "POST",
            f"/orders/{segment(number)}/realizations",
            RegistrationReceipt,
            json=realisation,
            idempotency_key=str(realisation.realization_id),
        )

    async def end_order(self, number: str, end_month: str) -> OrderEnded:
        return await self._call("POST", f"/orders/{segment(number)}/end", OrderEnded, json={"end_month": end_month})

    async def get_order(self, number: str) -> EzwmOrder:
        return await self._call("GET", f"/orders/{segment(number)}", EzwmOrder)

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
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_TIMEOUT_SECONDS = 5.0
Answer = TypeVar("Answer", bound=BaseModel)


class EzwmError(Exception):
    """Any failure to get a valid answer from eZWM."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class EzwmUnavailable(EzwmError):
    """eZWM did not answer in time, could not be reached, or failed on its side (5xx)."""


class EzwmRefused(EzwmError):
    """eZWM refused the request (4xx); ``message`` carries its reason."""


class EzwmBadAnswer(EzwmError):
    """eZWM answered something the contract does not allow (not JSON, wrong shape, odd status)."""


# ----------------------------------------------------------------------------- the wire format


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True)


class _Answer(BaseModel):
    # A newer eZWM may add fields; only a missing or malformed one is an error.
    model_config = ConfigDict(extra="ignore", frozen=True)


class OrderToVerify(_Request):
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


class OrderVerification(_Answer):
    number: str = Field(min_length=1, max_length=40)
    verification: Literal["positive", "negative"]
    reasons: list[str] = Field(default_factory=list)


class RealisationToRegister(_Request):
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


class RegistrationReceipt(_Answer):
    realization_id: uuid.UUID
    registration_number: str = Field(min_length=1, max_length=60)


class OrderEnded(_Answer):
    number: str
    end_month: str


class EzwmOrder(_Answer):
    number: str
    verification: Literal["positive", "negative"]
    reasons: list[str] = Field(default_factory=list)
    locked_by: str | None = None
    end_month: str | None = None
    months_registered: list[str] = Field(default_factory=list)


# ----------------------------------------------------------------------------- the client


class EzwmClient:
    """``EzwmClient(base_url)`` for the network; add ``transport=httpx.ASGITransport(app=...)``
    to reach an in-process app (the embedded sandbox) through exactly the same code.
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=base_url,
            timeout=httpx.Timeout(timeout),
            transport=transport,
            headers={"accept": "application/json", **(headers or {})},
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def verify_order(self, order: OrderToVerify, *, idempotency_key: str | None = None) -> OrderVerification:
        """Verify and number a new order; a negative verification is an answer, not an error."""
        return await self._call(
            "POST", "/orders", OrderVerification, body=_json(order), idempotency_key=idempotency_key or uuid.uuid4().hex
        )

    async def register_realisation(self, number: str, realisation: RealisationToRegister) -> RegistrationReceipt:
        return await self._call(
            "POST",
            f"/orders/{_segment(number)}/realizations",
            RegistrationReceipt,
            body=_json(realisation),
            idempotency_key=str(realisation.realization_id),
        )

    async def end_order(self, number: str, end_month: str) -> OrderEnded:
        return await self._call("POST", f"/orders/{_segment(number)}/end", OrderEnded, body={"end_month": end_month})

    async def get_order(self, number: str) -> EzwmOrder:
        return await self._call("GET", f"/orders/{_segment(number)}", EzwmOrder)

    async def _call(
        self,
        method: str,
        path: str,
        answer_model: type[Answer],
        *,
        body: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Answer:
        headers = {"idempotency-key": idempotency_key} if idempotency_key else {}
        try:
            answer = await self._http.request(method, path, json=body, headers=headers)
        except httpx.TimeoutException as exc:
            raise EzwmUnavailable(f"eZWM did not answer {method} {path} in time") from exc
        except httpx.TransportError as exc:
            raise EzwmUnavailable(f"eZWM is unreachable ({type(exc).__name__})") from exc
        return _parse(answer, answer_model)


def _segment(number: str) -> str:
    # Numbers come from eZWM itself, yet a "/" or ".." in one must not reach another path.
    return quote(number, safe="")


def _json(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json")


def _parse(answer: httpx.Response, model: type[Answer]) -> Answer:
    where = f"{answer.request.method} {answer.request.url.path}"
    if answer.status_code >= 500:
        raise EzwmUnavailable(f"eZWM failed on {where} with {answer.status_code}", status=answer.status_code)
    if 400 <= answer.status_code < 500:
        raise EzwmRefused(_reason(answer) or f"eZWM refused {where}", status=answer.status_code)
    if answer.status_code not in (200, 201):
        raise EzwmBadAnswer(f"eZWM answered {where} with an unexpected {answer.status_code}", status=answer.status_code)
    try:
        return model.model_validate_json(answer.content)
    except ValidationError as exc:
        raise EzwmBadAnswer(f"eZWM's answer to {where} is not valid: {_first_error(exc)}") from exc


def _reason(answer: httpx.Response) -> str | None:
    try:
        body = answer.json()
    except ValueError:
        return None
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str) and detail:
            return detail[:1000]
    return None


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error.get("loc", ())) or "body"
    return f"{where}: {error.get('msg', 'invalid')}"

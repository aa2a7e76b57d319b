"""SMS provider simulator: an HTTP SMS gateway (SMSAPI.pl style), as the notifications service sees it.

Behaviour, so tests and demos can steer it:

- ``POST /messages`` needs ``Authorization: Bearer <token>`` (any non-empty token) and answers 201
  with the number of SMS parts the text takes: GSM-7 texts 160 characters in one part, 153 a part
  when split (``€ [ ] { } \\ ^ ~ |`` count twice); one character outside GSM-7 (Polish ą, ę, ł...)
  makes the whole text UCS-2: 70 in one part, 67 a part.
- A repeated ``idempotency_key`` answers 200 with the first answer and sends nothing: the key alone
  decides, like the provider's duplicate check, so a retry after a lost answer is one SMS, not two.
- ``GET /messages`` / ``DELETE /messages`` read and clear what was sent; not the provider's API, so
  they answer during an outage too.
- ``POST /down`` makes sending answer 503 until ``POST /up``; ``POST /fail-next`` makes the next
  sends answer 500, 502, 503 or 429 (with ``Retry-After: 1``).

State lives in memory, per app instance: a restart forgets every message.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.problems import PROBLEM_JSON, PROBLEM_RESPONSES, Problem, ProblemError, Unauthorized, problem_response

PhoneNumber = Annotated[str, Field(pattern=r"^\+48[0-9]{9}$", examples=["+48600100200"])]
FailureStatus = Literal[500, 502, 503, 429]
MAX_TEXT = 918  # six GSM-7 parts, the provider's limit
# Oldest messages are forgotten past this, so a sandbox left running for days keeps a bounded memory.
MAX_KEPT = 10_000

# GSM 03.38: the default alphabet (one septet each) and its extension table (escape + one septet).
GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = frozenset("\f^{}\\[~]|€")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def sms_parts(text: str) -> int:
    """How many SMS the text is sent as. Parts are filled one character at a time, as phones do,
    because a character never straddles two parts: an escaped GSM-7 character or a UCS-2 surrogate
    pair that does not fit moves whole to the next part."""
    if all(c in GSM7_BASIC or c in GSM7_EXTENSION for c in text):
        units = [1 if c in GSM7_BASIC else 2 for c in text]
        single, per_part = 160, 153
    else:
        units = [2 if ord(c) > 0xFFFF else 1 for c in text]
        single, per_part = 70, 67
    if sum(units) <= single:
        return 1
    parts, used = 1, 0
    for unit in units:
        if used + unit > per_part:
            parts, used = parts + 1, 0
        used += unit
    return parts


# ----------------------------------------------------------------------------- schemas


class _In(BaseModel):
    # No whitespace stripping: the text is sent as written, and a stray space in a number is an error.
    model_config = ConfigDict(extra="forbid")


class SendIn(_In):
    to: PhoneNumber
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    sender: str | None = Field(default=None, min_length=1, max_length=11, description="the sender name shown")
    idempotency_key: str | None = Field(default=None, min_length=1, max_length=128)

    @field_validator("text")
    @classmethod
    def _not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("must not be blank")
        return text


class SentOut(BaseModel):
    id: str
    status: Literal["accepted"] = "accepted"
    parts: int


class SmsOut(BaseModel):
    id: str
    to: str
    text: str
    sender: str | None
    parts: int
    received_at: dt.datetime


class FailNextIn(_In):
    count: int = Field(ge=0, le=1000, description="how many of the next sends fail; 0 ends an earlier request")
    status: FailureStatus = 503


class FailNextOut(BaseModel):
    count: int
    status: FailureStatus


class StatusOut(BaseModel):
    up: bool
    failing_next: int = Field(description="sends still to fail by POST /fail-next")


class ClearedOut(BaseModel):
    deleted: int


# ----------------------------------------------------------------------------- state


@dataclass
class StoredSms:
    message: SmsOut
    answer: SentOut
    idempotency_key: str | None


@dataclass
class SmsState:
    now: Callable[[], dt.datetime] = _utcnow
    up: bool = True
    messages: dict[str, StoredSms] = field(default_factory=dict)  # in the order received
    by_key: dict[str, str] = field(default_factory=dict)  # idempotency key -> message id
    fail_count: int = 0
    fail_status: FailureStatus = 503

    def take_failure(self) -> FailureStatus | None:
        if self.fail_count == 0:
            return None
        self.fail_count -= 1
        return self.fail_status

    def store(self, body: SendIn) -> SentOut:
        message = SmsOut(
            id=str(uuid.uuid4()),
            to=body.to,
            text=body.text,
            sender=body.sender,
            parts=sms_parts(body.text),
            received_at=self.now(),
        )
        answer = SentOut(id=message.id, parts=message.parts)
        self.messages[message.id] = StoredSms(message, answer, body.idempotency_key)
        if body.idempotency_key is not None:
            self.by_key[body.idempotency_key] = message.id
        while len(self.messages) > MAX_KEPT:
            oldest = self.messages.pop(next(iter(self.messages)))
            if oldest.idempotency_key is not None:
                self.by_key.pop(oldest.idempotency_key, None)
        return answer

    def clear(self) -> int:
        count = len(self.messages)
        self.messages.clear()
        self.by_key.clear()
        return count


def sms_state(request: Request) -> SmsState:
    state: SmsState = request.app.state.sms
    return state


StateDep = Annotated[SmsState, Depends(sms_state)]


def _available(state: StateDep) -> None:
    if not state.up:
        raise ProblemError("the SMS provider is unavailable (simulated outage)", status=503, code="sms-unavailable")


def _authorised(authorization: Annotated[str | None, Header()] = None) -> None:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("an Authorization: Bearer <token> header is required (any token in the sandbox)")


def _problem_doc(description: str) -> dict[str, object]:
    return {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": description}


# ----------------------------------------------------------------------------- routes

_control = APIRouter()
_system = APIRouter(dependencies=[Depends(_available)])


@_control.post("/down", response_model=StatusOut, summary="Simulate an outage: sending answers 503")
async def go_down(state: StateDep) -> StatusOut:
    state.up = False
    return StatusOut(up=False, failing_next=state.fail_count)


@_control.post("/up", response_model=StatusOut, summary="End the simulated outage")
async def go_up(state: StateDep) -> StatusOut:
    state.up = True
    return StatusOut(up=True, failing_next=state.fail_count)


@_control.get("/status", response_model=StatusOut)
async def status(state: StateDep) -> StatusOut:
    return StatusOut(up=state.up, failing_next=state.fail_count)


@_control.post("/fail-next", response_model=FailNextOut, summary="Make the next sends fail with a status")
async def fail_next(body: FailNextIn, state: StateDep) -> FailNextOut:
    state.fail_count, state.fail_status = body.count, body.status
    return FailNextOut(count=body.count, status=body.status)


@_system.post(
    "/messages",
    status_code=201,
    response_model=SentOut,
    dependencies=[Depends(_authorised)],
    summary="Send an SMS",
    responses={
        200: {"description": "the same idempotency_key again: the first answer, nothing sent"},
        429: _problem_doc("Too many requests (POST /fail-next); Retry-After says when to try again"),
        500: _problem_doc("Internal server error (POST /fail-next)"),
        502: _problem_doc("Bad gateway (POST /fail-next)"),
        503: _problem_doc("Service unavailable (POST /down, POST /fail-next)"),
    },
)
async def send(body: SendIn, state: StateDep, request: Request, response: Response) -> SentOut | JSONResponse:
    failure = state.take_failure()
    if failure is not None:
        return problem_response(
            failure,
            f"simulated failure {failure} (POST /fail-next)",
            code="sms-simulated-failure",
            instance=request.url.path,
            headers={"Retry-After": "1"} if failure == 429 else None,
        )
    first = state.by_key.get(body.idempotency_key) if body.idempotency_key is not None else None
    if first is not None:
        response.status_code = 200
        return state.messages[first].answer
    return state.store(body)


@_control.get("/messages", response_model=list[SmsOut], summary="Messages sent so far, oldest first")
async def sent_messages(
    state: StateDep,
    to: Annotated[str | None, Query(max_length=16, examples=["+48600100200"])] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_KEPT, description="the newest this many")] = 100,
) -> list[SmsOut]:
    # A "+" typed into a URL arrives as a space: the number is matched with or without it.
    number = None if to is None else "+" + to.strip().removeprefix("+")
    found = [m.message for m in state.messages.values() if number is None or m.message.to == number]
    return found[-limit:]


@_control.delete("/messages", response_model=ClearedOut, summary="Forget every message and idempotency key")
async def clear_messages(state: StateDep) -> ClearedOut:
    return ClearedOut(deleted=state.clear())


router = APIRouter(prefix="/sandbox/sms", tags=["sandbox: SMS provider"], responses=PROBLEM_RESPONSES)
router.include_router(_control)
router.include_router(_system)

"""eZWM simulator: NFZ's system of medical-supply orders, as the suite's eZWM adapter sees it.

Behaviour, so tests and demos can steer it:

- ``POST /orders`` verifies an order and assigns a number **either way** (positive or negative). A
  patient is insured with any entitlement unless registered otherwise through ``POST /patients``:
  ``insured: false`` makes every order of that PESEL negative; an ``entitlements`` list limits the
  entitlements eZWM confirms (others make the order negative); ``max_pieces_per_month`` is the
  quantity limit eZWM sets for that patient (above it, negative).
- ``POST /orders/{number}/realizations`` registers a realisation, idempotent by ``realization_id``;
  the first pharmacy locks a full-form order; a month is registered at most once.
- ``POST /orders/{number}/end`` ends or shortens an order; nothing after the new end is registered
  anywhere, and the months up to it stay with the pharmacy that locked it.
- ``POST /down`` makes every other endpoint answer 503 until ``POST /up``: an outage.

State lives in memory, per app instance: a restart forgets every order, like a fresh test system.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.sandbox.outage import available, outage_controls
from shared.identifiers import Pesel
from shared.problems import PROBLEM_RESPONSES, Conflict, NotFound, Unprocessable

MonthText = Annotated[str, Field(pattern=r"^[0-9]{4}-(0[1-9]|1[0-2])$", examples=["2030-01"])]
EntitlementCode = Annotated[str, Field(pattern=r"^[0-9A-Za-z]{2,12}$", examples=["47ZN"])]
Identifier = Annotated[str, Field(min_length=1, max_length=64)]
_MONTH = re.compile(r"([0-9]{4})-([0-9]{2})")


def _month_index(text: str) -> int:
    match = _MONTH.fullmatch(text)
    if match is None:  # the schemas' patterns make this unreachable for API input
        raise ValueError(text)
    return int(match.group(1)) * 12 + int(match.group(2)) - 1


def _month_text(index: int) -> str:
    year, zero_based = divmod(index, 12)
    return f"{year:04d}-{zero_based + 1:02d}"


# ----------------------------------------------------------------------------- state


@dataclass
class PatientRecord:
    insured: bool = True
    entitlements: frozenset[str] | None = None  # None: every entitlement is confirmed
    max_pieces_per_month: int | None = None


@dataclass
class Registration:
    realization_id: uuid.UUID
    registration_number: str
    order_number: str
    pharmacy_id: str
    months: tuple[str, ...]


@dataclass
class SimulatedOrder:
    number: str
    patient_pesel: str
    verification: Literal["positive", "negative"]
    reasons: list[str]
    start_month: str
    months: int
    short_form: bool
    end_month: str | None = None
    locked_by: str | None = None
    months_registered: dict[str, uuid.UUID] = field(default_factory=dict)

    @property
    def last_month(self) -> str:
        return self.end_month or _month_text(_month_index(self.start_month) + self.months - 1)


@dataclass
class EzwmState:
    up: bool = True
    patients: dict[str, PatientRecord] = field(default_factory=dict)
    orders: dict[str, SimulatedOrder] = field(default_factory=dict)
    registrations: dict[uuid.UUID, Registration] = field(default_factory=dict)

    def new_number(self) -> str:
        # Random, not a counter: a restarted sandbox must not hand out a number a service still holds.
        while True:
            number = f"{secrets.randbelow(10**16):016d}"
            if number not in self.orders:
                return number


def ezwm_state(request: Request) -> EzwmState:
    state: EzwmState = request.app.state.ezwm
    return state


StateDep = Annotated[EzwmState, Depends(ezwm_state)]


# ----------------------------------------------------------------------------- schemas


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class PatientIn(_In):
    pesel: Pesel
    insured: bool = True
    entitlements: list[EntitlementCode] | None = Field(
        default=None, max_length=20, description="entitlements eZWM confirms; omitted: all of them"
    )
    max_pieces_per_month: int | None = Field(default=None, ge=1, le=100_000)


class PatientOut(BaseModel):
    pesel: str
    insured: bool
    entitlements: list[str] | None
    max_pieces_per_month: int | None


class OrderIn(_In):
    patient_pesel: Pesel
    code: Literal["P.100", "P.101"]
    group: Literal["PW", "MCH1", "PP", "MCH2", "PM2"]
    pieces_per_month: int = Field(ge=1, le=100_000)
    months: int = Field(ge=1, le=12)
    start_month: MonthText
    entitlements: list[EntitlementCode] = Field(default_factory=list, max_length=20)
    channel: Literal["visit", "teleconsultation"]
    short_form: bool = False
    facility_id: Identifier


class VerificationOut(BaseModel):
    number: str
    verification: Literal["positive", "negative"]
    reasons: list[str]


class OrderOut(VerificationOut):
    locked_by: str | None
    end_month: str | None
    months_registered: list[str]


class RealizationIn(_In):
    realization_id: uuid.UUID
    pharmacy_id: Identifier
    realized_on: dt.date
    months: list[MonthText] = Field(min_length=1, max_length=6)
    pieces: int = Field(ge=1, le=1_000_000)
    unit_price: Decimal = Field(gt=0, max_digits=10, decimal_places=2)
    subsidy: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    patient_share: Decimal = Field(ge=0, max_digits=12, decimal_places=2)
    entitlements: list[EntitlementCode] = Field(default_factory=list, max_length=20)


class ReceiptOut(BaseModel):
    realization_id: uuid.UUID
    registration_number: str
    order_number: str
    months: list[str]


class EndIn(_In):
    end_month: MonthText


class EndOut(BaseModel):
    number: str
    end_month: str


# ----------------------------------------------------------------------------- rules


def verify(order: OrderIn, patient: PatientRecord) -> list[str]:
    """Why eZWM would verify the order negatively; empty when it is positive."""
    reasons = []
    if not patient.insured:
        reasons.append("the patient has no right to NFZ benefits (not insured)")
    if patient.entitlements is not None:
        unconfirmed = sorted({e.upper() for e in order.entitlements} - patient.entitlements)
        reasons += [f"entitlement {code} is not confirmed for this patient" for code in unconfirmed]
    if patient.max_pieces_per_month is not None and order.pieces_per_month > patient.max_pieces_per_month:
        reasons.append(
            f"{order.pieces_per_month} pieces a month exceed the patient's quantity limit of "
            f"{patient.max_pieces_per_month}"
        )
    return reasons


def _order(state: EzwmState, number: str) -> SimulatedOrder:
    order = state.orders.get(number)
    if order is None:
        raise NotFound(f"eZWM knows no order {number}")
    return order


def _check_registration(order: SimulatedOrder, data: RealizationIn) -> None:
    if order.verification != "positive":
        raise Unprocessable.field("body.realization_id", "a negatively verified order cannot be realised")
    if not order.short_form and order.locked_by not in (None, data.pharmacy_id):
        raise Conflict("the order is locked by another pharmacy", code="order-locked")
    first, last = _month_index(order.start_month), _month_index(order.last_month)
    outside = [m for m in data.months if not first <= _month_index(m) <= last]
    if outside:
        raise Unprocessable.field("body.months", f"outside the order's validity: {', '.join(outside)}")
    taken = [m for m in data.months if m in order.months_registered]
    if taken:
        raise Conflict(f"already registered for this order: {', '.join(taken)}", code="month-registered")


# ----------------------------------------------------------------------------- routes

_control = outage_controls(ezwm_state, "other endpoints answer 503")
_system = APIRouter(dependencies=[Depends(available(ezwm_state, "eZWM", "ezwm-unavailable"))])


@_system.post("/patients", response_model=PatientOut, summary="Register what eZWM knows of a patient")
async def register_patient(body: PatientIn, state: StateDep) -> PatientOut:
    entitlements = frozenset(e.upper() for e in body.entitlements) if body.entitlements is not None else None
    state.patients[body.pesel] = PatientRecord(body.insured, entitlements, body.max_pieces_per_month)
    return PatientOut(
        pesel=body.pesel,
        insured=body.insured,
        entitlements=sorted(entitlements) if entitlements is not None else None,
        max_pieces_per_month=body.max_pieces_per_month,
    )


@_system.post(
    "/orders", status_code=201, response_model=VerificationOut, summary="Verify an order; a number either way"
)
async def verify_order(body: OrderIn, state: StateDep) -> VerificationOut:
    reasons = verify(body, state.patients.get(body.patient_pesel, PatientRecord()))
    order = SimulatedOrder(
        number=state.new_number(),
        patient_pesel=body.patient_pesel,
        verification="negative" if reasons else "positive",
        reasons=reasons,
        start_month=body.start_month,
        months=body.months,
        short_form=body.short_form,
    )
    state.orders[order.number] = order
    return VerificationOut(number=order.number, verification=order.verification, reasons=reasons)


@_system.get("/orders/{number}", response_model=OrderOut)
async def get_order(number: str, state: StateDep) -> OrderOut:
    order = _order(state, number)
    return OrderOut(
        number=order.number,
        verification=order.verification,
        reasons=order.reasons,
        locked_by=order.locked_by,
        end_month=order.end_month,
        months_registered=sorted(order.months_registered),
    )


@_system.post(
    "/orders/{number}/realizations",
    status_code=201,
    response_model=ReceiptOut,
    responses={200: {"description": "the same realization_id again: the first receipt"}},
)
async def register_realization(number: str, body: RealizationIn, state: StateDep, response: Response) -> ReceiptOut:
    order = _order(state, number)
    earlier = state.registrations.get(body.realization_id)
    if earlier is not None:
        if earlier.order_number != number:
            raise Conflict("this realization_id is registered for another order", code="realization-id-reused")
        response.status_code = 200
        return _receipt(earlier)
    _check_registration(order, body)
    registration = Registration(
        realization_id=body.realization_id,
        registration_number=f"R{secrets.token_hex(6).upper()}",
        order_number=number,
        pharmacy_id=body.pharmacy_id,
        months=tuple(sorted(body.months)),
    )
    if not order.short_form:
        order.locked_by = body.pharmacy_id
    for month in registration.months:
        order.months_registered[month] = body.realization_id
    state.registrations[body.realization_id] = registration
    return _receipt(registration)


def _receipt(registration: Registration) -> ReceiptOut:
    return ReceiptOut(
        realization_id=registration.realization_id,
        registration_number=registration.registration_number,
        order_number=registration.order_number,
        months=list(registration.months),
    )


@_system.post("/orders/{number}/end", response_model=EndOut, summary="The doctor ends or shortens an order")
async def end_order(number: str, body: EndIn, state: StateDep) -> EndOut:
    order = _order(state, number)
    end = _month_index(body.end_month)
    if not _month_index(order.start_month) <= end <= _month_index(order.last_month):
        raise Unprocessable.field(
            "body.end_month", f"must lie between {order.start_month} and {order.last_month}: an order is not extended"
        )
    if any(_month_index(m) > end for m in order.months_registered):
        raise Unprocessable.field("body.end_month", "months after it are already registered")
    # The lock stays: what is left of a shortened order is still the locking pharmacy's alone. The
    # patient moves to another pharmacy with the doctor's NEW order, never with the old one's months.
    order.end_month = body.end_month
    return EndOut(number=number, end_month=body.end_month)


router = APIRouter(prefix="/sandbox/ezwm", tags=["sandbox: eZWM"], responses=PROBLEM_RESPONSES)
router.include_router(_control)
router.include_router(_system)

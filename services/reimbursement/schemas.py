"""The reimbursement API's language (requests and answers). Money travels as "0.56"-style strings."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

from services.reimbursement.domain import Channel, ProductCode, ProductGroup, to_cents
from shared.identifiers import Pesel

MONTH_PATTERN = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
MonthText = Annotated[str, Field(pattern=MONTH_PATTERN, examples=["2030-01"], description="YYYY-MM")]
EntitlementCode = Annotated[
    str, Field(min_length=2, max_length=12, pattern=r"^[0-9A-Za-z]+$", examples=["47ZN", "47OR"])
]
# A decimal string, never a JSON number: a float would carry binary noise into the money.
PriceText = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{1,7}(\.[0-9]{1,2})?$",
        examples=["1.50"],
        description="PLN per piece as a decimal string with at most 2 decimal places",
    ),
]
MONEY_SCHEMA = {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{2}$", "examples": ["0.56"]}
Money = Annotated[
    Decimal,
    PlainSerializer(lambda amount: f"{to_cents(amount):.2f}", return_type=str),
    WithJsonSchema(MONEY_SCHEMA, mode="serialization"),
]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrderStatus(enum.StrEnum):
    active = "active"  # may be realised (in the locking pharmacy, once one has taken it)
    negative = "negative"  # verified negatively by eZWM: never realisable
    completed = "completed"  # every month of its validity supplied
    expired = "expired"  # its validity (possibly shortened by the doctor) has passed


class Verification(enum.StrEnum):
    positive = "positive"
    negative = "negative"


class EzwmStatus(enum.StrEnum):
    registered = "registered"
    pending_registration = "pending_registration"
    registration_rejected = "registration_rejected"


# ----------------------------------------------------------------------------- orders


class OrderIn(_In):
    patient_pesel: Pesel
    code: ProductCode = Field(description="P.100 or P.101")
    group: ProductGroup
    pieces_per_month: int = Field(ge=1, le=10_000, description="the most the patient may take in a month")
    months: int = Field(ge=1, le=12)
    start_month: MonthText
    entitlements: list[EntitlementCode] = Field(default_factory=list, max_length=20)
    channel: Channel
    short_form: bool = Field(
        default=False,
        description="a 2-page order issued when the original ended and nothing changed: realisable in any pharmacy. "
        "It must name the original in `continues_order`",
    )
    continues_order: str | None = Field(
        default=None,
        min_length=1,
        max_length=40,
        description="a short-form order only: the number of the original order it continues. The original is the "
        "same patient's, positively verified, with the same code, group and pieces_per_month, and has ended: the "
        "continuation starts after the original's (possibly shortened) last month, in that month or any later one. "
        "An original is continued once",
    )


class OrderOut(BaseModel):
    number: str
    verification: Verification
    reasons: list[str]
    status: OrderStatus
    locked_by_pharmacy: str | None
    months_realized: list[str]
    code: ProductCode
    group: ProductGroup
    group_code: str = Field(examples=["P.100.MCH1"])
    pieces_per_month: int
    months: int
    start_month: str
    valid_until: str = Field(description="the last month it may be realised for, after any ending or shortening")
    end_month: str | None
    entitlements: list[str]
    channel: Channel
    short_form: bool
    continues_order: str | None = Field(default=None, description="the original a short-form order continues")
    patient_age: int = Field(description="full years today: the pharmacy must check it against the entitlements")


class EndIn(_In):
    end_month: MonthText = Field(description="the new last month of the order (not later than its current one)")


# ----------------------------------------------------------------------------- realisations


class EntitlementIn(_In):
    code: EntitlementCode
    valid_from: dt.date | None = None
    valid_until: dt.date | None = Field(default=None, description="the last day it holds, inclusive")


def _code_as_object(value: Any) -> Any:
    # "47ZN" is shorthand for {"code": "47ZN"}: a document without dates.
    return {"code": value} if isinstance(value, str) else value


class RealisationIn(_In):
    months: list[MonthText] = Field(max_length=12, description="1 to 6 consecutive months from the realisation's")
    pieces: int = Field(ge=1, le=1_000_000)
    unit_price: PriceText
    realized_on: dt.date | None = Field(
        default=None,
        description="omitted: today (the server's date, Europe/Warsaw). An earlier date only with `offline: true` "
        "and `patient_statement: true`: the paper date of a realisation made while eZWM was down; its months "
        "start with that date's month. A future date is refused",
    )
    offline: bool = Field(
        default=False,
        description="this registers a paper (offline) realisation made while eZWM was down, under its paper date",
    )
    patient_statement: bool = Field(
        default=False,
        description="the patient's signed statement of the right to benefits is attached: required for an "
        "offline realisation dated before today",
    )
    entitlements: list[Annotated[EntitlementIn, BeforeValidator(_code_as_object)]] | None = Field(
        default=None,
        max_length=20,
        description="the entitlements as documented on the realisation day; they replace the order's. "
        "Omitted: the order's entitlements, checked against the patient's age on that day",
    )
    pesel: Pesel | None = Field(default=None, description="optional: refused with 404 unless it is the order's")
    birth_date: dt.date | None = Field(default=None, description="optional: refused with 404 unless it matches")


class DroppedEntitlementOut(BaseModel):
    code: str
    reason: str


class RealisationOut(BaseModel):
    id: uuid.UUID
    order_number: str
    months: list[str]
    pieces: int
    unit_price: Money
    realized_on: dt.date
    per_piece_limit: Money | None = Field(description="null under the pre-2023 rules, whose limit was monthly")
    value_limit: Money
    rate: Money = Field(description="NFZ's share up to the limit: 0.70, or 1.00 with a 100 % entitlement")
    total: Money
    subsidy: Money
    patient_share: Money
    rules_valid_from: dt.date
    patient_age: int
    offline: bool = Field(description="registered later from a paper realisation, under its paper date")
    patient_statement: bool
    entitlements_in_force: list[str]
    entitlements_dropped: list[DroppedEntitlementOut]
    continuation: bool
    ezwm_status: EzwmStatus
    ezwm_registration_number: str | None
    locked_by_pharmacy: str | None
    notes: list[str] = Field(default_factory=list)


# ----------------------------------------------------------------------------- settlements


class SettlementFormat(enum.StrEnum):
    json = "json"
    csv = "csv"


class SettlementRowOut(BaseModel):
    realisation_id: uuid.UUID
    order_number: str
    realized_on: dt.date
    months: list[str]
    group_code: str
    pieces: int
    unit_price: Money
    total: Money
    subsidy: Money
    patient_share: Money
    channel: Channel
    continuation: bool
    entitlements_changed: bool
    ezwm_status: EzwmStatus


class SettlementTotalsOut(BaseModel):
    realisations: int
    pieces: int
    total: Money
    subsidy: Money
    patient_share: Money


class DocumentOut(BaseModel):
    kind: str
    order_number: str | None
    description: str


class SettlementOut(BaseModel):
    month: str
    pharmacy_id: str
    rows: list[SettlementRowOut]
    totals: SettlementTotalsOut
    documents: list[DocumentOut]
    retain_until: dt.date = Field(description="keep the month's records until this day (5 years)")
    not_yet_registered: int = Field(description="realisations still waiting for eZWM: register them before settling")


# ----------------------------------------------------------------------------- rule sets


class MonthlyLimitsIn(_In):
    standard: PriceText = Field(description="the monthly value limit in PLN")
    higher: PriceText = Field(description="the higher monthly limit (47ZN from 91 pieces a month) in PLN")


class RuleSetOut(BaseModel):
    valid_from: dt.date
    basis: str
    loaded: bool
    standard_monthly_limit: Money | None = None
    higher_monthly_limit: Money | None = None

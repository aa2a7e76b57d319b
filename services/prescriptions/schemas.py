"""The prescription-ordering API's language (requests and answers)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from services.prescriptions.domain import (
    ControlledGroup,
    DrugScope,
    PrescriptionKind,
    Profession,
    RequestSource,
    ServiceMode,
)
from shared.identifiers import Npwz, Pesel

Drug = Annotated[str, Field(min_length=1, max_length=200)]
Comment = Annotated[str, Field(max_length=1000)]
Quantity = Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=4, examples=["30"])]
# Calendar dates the rules may add months and days to without leaving the calendar.
Day = Annotated[dt.date, Field(ge=dt.date(2000, 1, 1), le=dt.date(2100, 12, 31))]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class SettingsIn(_In):
    mode: ServiceMode = Field(
        description="demo (3 months, once per facility: asked for again after it was used, 422 naming `mode`), "
        "full (12 months from the purchase, today), or off. Asking for the mode that is running keeps its period."
    )
    activated_on: Day | None = Field(
        default=None,
        description="optional: the server's date (Europe/Warsaw) is the activation or purchase date; "
        "any other date is refused (422)",
    )
    drug_scope: DrugScope = Field(
        default=DrugScope.ANY, description="what the portal may order; IKP orders are taken as P1 delivers them"
    )
    problem_email: EmailStr | None = Field(default=None, max_length=254)

    @model_validator(mode="after")
    def _dates_match_mode(self) -> SettingsIn:
        if self.mode is ServiceMode.OFF and self.activated_on is not None:
            raise ValueError("activated_on: a service that is off has no activation date")
        return self


class SettingsOut(BaseModel):
    mode: ServiceMode
    activated_on: dt.date | None
    active_until: dt.date | None = Field(description="the last active day, inclusive")
    active: bool = Field(description="active today (Europe/Warsaw)")
    drug_scope: DrugScope
    problem_email: str | None
    ikp_enabled: bool
    demo_used_on: dt.date | None = Field(
        description="the day demo mode was first switched on; once set, demo mode can no longer be asked for"
    )


class OrderingIn(_In):
    enabled: bool


class OrderingOut(BaseModel):
    npwz: str
    enabled: bool


class AccountDrugIn(_In):
    drug: Drug


class AccountDrugOut(_Out):
    drug: str
    added_on: dt.date
    source: str


class ItemIn(_In):
    drug: Drug
    packages: int = Field(default=1, ge=1, le=99)
    comment: Comment | None = None


class RequestIn(_In):
    patient_pesel: Pesel
    practitioner_npwz: Npwz
    location_id: uuid.UUID
    items: list[ItemIn] = Field(min_length=1, max_length=20)
    source: RequestSource = RequestSource.PORTAL


class ItemOut(_Out):
    drug: str
    packages: int
    comment: str | None
    refused_reason: str | None = None


class RouteKindOut(enum.StrEnum):
    own = "own"
    duty = "duty"


class RequestOut(BaseModel):
    id: uuid.UUID
    status: str = Field(
        description="booked, unassigned (no slot: the facility was notified), refused (a polled IKP request that "
        "could not be taken, e.g. its location is gone: the facility was notified), issued"
    )
    source: RequestSource
    patient_pesel: str
    practitioner_npwz: str
    location_id: uuid.UUID
    routed_to: RouteKindOut | None
    assigned_npwz: str | None
    assigned_practitioner_id: uuid.UUID | None
    slot_id: uuid.UUID | None
    slot_start: dt.datetime | None
    booking_id: uuid.UUID | None
    items: list[ItemOut]
    comment: str | None
    problems: list[int] = Field(
        description="the problem notifications raised (DOMAIN.md 2), by number; 6: the request or items were refused"
    )
    created_at: dt.datetime


class ApiKind(enum.StrEnum):
    """The kinds of API.md; ``extended`` and ``controlled_group`` refine them."""

    standard = "standard"
    antibiotic = "antibiotic"
    narcotic = "narcotic"
    psychotropic_in_iip = "psychotropic_in_iip"
    immunological = "immunological"
    target_import = "target_import"


class PrescriptionIn(_In):
    drug: Drug
    packages: int = Field(ge=1, le=999)
    units_per_package: Quantity
    daily_dose_units: Quantity
    kind: ApiKind = ApiKind.standard
    extended: bool = Field(default=False, description="marked by the issuer as valid 365 days (standard only)")
    realise_from: Day | None = None
    controlled_group: ControlledGroup | None = Field(
        default=None,
        description="narcotic: its group (default I-N, the stricter 90-day limit); psychotropic_in_iip is II-P",
    )
    dosage: Annotated[str, Field(max_length=200)] | None = Field(default=None, examples=["1 tabletka 2 razy dziennie"])

    @model_validator(mode="after")
    def _refinements_fit_kind(self) -> PrescriptionIn:
        if self.extended and self.kind is not ApiKind.standard:
            raise ValueError("extended: only a standard prescription can be marked as valid 365 days")
        controlled = (ApiKind.narcotic, ApiKind.psychotropic_in_iip)
        if self.controlled_group is not None and self.kind not in controlled:
            raise ValueError("controlled_group: only a narcotic or psychotropic prescription has a group")
        return self

    def domain_kind(self) -> tuple[PrescriptionKind, ControlledGroup | None]:
        if self.kind is ApiKind.narcotic:
            return PrescriptionKind.NARCOTIC_PSYCHOTROPIC, self.controlled_group or ControlledGroup.I_N
        if self.kind is ApiKind.psychotropic_in_iip:
            return PrescriptionKind.NARCOTIC_PSYCHOTROPIC, self.controlled_group or ControlledGroup.II_P
        if self.extended:
            return PrescriptionKind.EXTENDED, None
        return PrescriptionKind(self.kind.value), None


class IssueIn(_In):
    issuer_npwz: Npwz | None = Field(
        default=None, description="optional: the issuer is the practitioner of the token; another NPWZ answers 403"
    )
    issuer_profession: Profession
    # More than 5 is refused by the package rule with its own sentence; 50 only bounds the body.
    prescriptions: list[PrescriptionIn] = Field(min_length=1, max_length=50)
    control_visit_on: Day | None = Field(default=None, description="optional control-visit date for the patient")


def api_kind(kind: str, controlled_group: str | None) -> tuple[ApiKind, bool]:
    """The stored issuing kind as API.md names it, with the ``extended`` mark."""
    if kind == PrescriptionKind.EXTENDED:
        return ApiKind.standard, True
    if kind == PrescriptionKind.NARCOTIC_PSYCHOTROPIC:
        return (ApiKind.psychotropic_in_iip if controlled_group == ControlledGroup.II_P else ApiKind.narcotic), False
    return ApiKind(kind), False


class IssuedPrescriptionOut(BaseModel):
    key: str
    access_code: str
    drug: str
    packages: int
    kind: ApiKind
    extended: bool
    controlled_group: str | None
    valid_from: dt.date
    valid_until: dt.date


class IssueOut(BaseModel):
    package_id: uuid.UUID
    package_key: str
    access_code: str
    issued_on: dt.date
    prescriptions: list[IssuedPrescriptionOut]


class PrescriptionOut(BaseModel):
    key: str
    package_key: str
    drug: str
    packages: int
    kind: ApiKind
    extended: bool
    controlled_group: str | None
    valid_from: dt.date
    valid_until: dt.date
    status: str
    issuer_npwz: str
    first_realised_on: dt.date | None

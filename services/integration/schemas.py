"""The integration API's language (requests and answers)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Annotated

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, EmailStr, Field, SecretStr, field_validator

from services.integration.cer_scope import CerSpecialty
from services.integration.domain import SpecialtyCompliance, weak_secret
from shared.identifiers import Npwz, Pesel


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class IkpStatusOut(BaseModel):
    status: str = Field(description="off, pending (asked P1, waiting for its confirmation) or enabled")
    requested_at: dt.datetime | None
    enabled_at: dt.datetime | None
    poller_npwz: str | None
    location_id: uuid.UUID | None
    department_code: str | None
    polling: bool = Field(description="enabled and a poller designated: new IKP requests are being fetched")
    last_polled_at: dt.datetime | None


class PollerIn(_In):
    practitioner_npwz: Npwz


class PollerCandidate(BaseModel):
    practitioner_id: uuid.UUID
    npwz: str
    name: str
    location_id: uuid.UUID
    department_code: str


class PollerCandidatesOut(BaseModel):
    candidates: list[PollerCandidate]
    missing: str | None = Field(description="when there is no candidate: what is missing")


class OutgoingOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    kind: str
    reference: str
    status: str
    attempts: int
    last_error: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None


class CerSettingsIn(_In):
    endpoint: AnyHttpUrl = Field(description="where CeR sends this facility's notifications (the gateway's webhook)")
    email: EmailStr = Field(max_length=254, description="where CeR problems are reported")
    secret: SecretStr = Field(
        max_length=200,
        description="the shared HMAC secret, at least 32 characters of which 10 different; never returned",
    )

    @field_validator("secret")
    @classmethod
    def _strong(cls, value: SecretStr) -> SecretStr:
        problem = weak_secret(value.get_secret_value())
        if problem:
            raise ValueError(problem)
        return value


class CerSettingsOut(BaseModel):
    endpoint: str
    email: str
    secret_set: bool = Field(description="the secret itself is never returned")


class CerEventType(enum.StrEnum):
    booking_created_ikp = "booking_created_ikp"
    booking_cancelled_ikp = "booking_cancelled_ikp"
    booking_created_other_entity = "booking_created_other_entity"
    booking_created_waiting_list = "booking_created_waiting_list"


class CerNotificationIn(BaseModel):
    """API.md's CeR notification body (extra fields a newer CeR may add are ignored)."""

    model_config = ConfigDict(extra="ignore")

    event_id: str = Field(min_length=1, max_length=100)
    event_type: CerEventType
    occurred_at: dt.datetime
    slot_id: uuid.UUID
    patient_pesel: Pesel


class DriftItem(BaseModel):
    """One difference between CeR and the local schedule."""

    slot_id: uuid.UUID
    patient_pesel: str
    start: dt.datetime
    reference: str = Field(description="CeR's booking id (missing locally) or the local booking id (missing in CeR)")
    channel: str = Field(description="how the patient booked in CeR: ikp, other_entity, waiting_list, facility")
    repaired: bool = Field(description="booked here now (only for a booking missing locally)")
    reason: str | None


class ReconcileOut(BaseModel):
    missing_locally: list[DriftItem] = Field(description="confirmed in CeR, missing at the facility")
    missing_in_cer: list[DriftItem] = Field(description="booked at the facility, unknown to CeR (reported)")
    repaired: int = Field(description="bookings missing locally that are now in the local schedule")
    checked_at: dt.datetime


class PaymentRiskOut(BaseModel):
    date: dt.date
    rule: str
    status: str = Field(description="ok, at_risk (the date is ahead), breached (it has passed) or not_applicable")
    detail: str


class SpecialtyComplianceOut(BaseModel):
    specialty: str
    covered_from: dt.date = Field(description="the day CeR covers this specialty from (the dated CeR table)")
    draft: bool = Field(description="the table's entry comes from a draft (of a regulation), not law in force")
    source: str
    contracted: bool = Field(description="the facility declared an NFZ contract in this specialty")
    status: str = Field(
        description="the worst payment risk: breached, at_risk, ok, or not_applicable (no contract declared)"
    )
    schedules: int = Field(description="schedules of this specialty published or queued for CeR")
    published: bool = Field(description="CeR accepted at least one schedule of this specialty")
    first_published_on: dt.date | None
    unsent_changes: int = Field(description="changes of this specialty waiting for CeR or refused by it")
    payment_risks: list[PaymentRiskOut]

    @classmethod
    def from_domain(cls, found: SpecialtyCompliance) -> SpecialtyComplianceOut:
        return cls(
            specialty=found.specialty,
            covered_from=found.covered_from,
            draft=found.draft,
            source=found.source,
            contracted=found.contracted,
            status=found.status,
            schedules=found.schedules,
            published=found.published,
            first_published_on=found.first_published_on,
            unsent_changes=found.unsent_changes,
            payment_risks=[
                PaymentRiskOut(date=r.date, rule=r.rule, status=r.status, detail=r.detail) for r in found.risks
            ],
        )


class ComplianceOut(BaseModel):
    today: dt.date
    specialties: list[SpecialtyComplianceOut] = Field(
        description="every specialty of the dated CeR table, in its order; those without a contract are not_applicable"
    )


# ----------------------------------------------------------------------------- the dated CeR table


class CoverageIn(_In):
    specialty: CerSpecialty
    covered_from: dt.date = Field(description="the first day CeR covers the specialty")
    source: str = Field(
        min_length=3,
        max_length=400,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="the legal act or announcement it comes from (one line)",
    )
    draft: bool = Field(description="the source is a draft, not law in force")

    @field_validator("covered_from")
    @classmethod
    def _plausible(cls, value: dt.date) -> dt.date:
        # A typo in the year (0226, 2206) would silently switch CeR off or on for a whole specialty.
        if not FIRST_PLAUSIBLE <= value <= LAST_PLAUSIBLE:
            raise ValueError(f"must lie between {FIRST_PLAUSIBLE} and {LAST_PLAUSIBLE}")
        return value


FIRST_PLAUSIBLE = dt.date(2020, 1, 1)
LAST_PLAUSIBLE = dt.date(2100, 12, 31)
CoverageCorrections = Annotated[list[CoverageIn], Field(min_length=1, max_length=len(CerSpecialty))]


class CoverageOut(BaseModel):
    specialty: CerSpecialty
    covered_from: dt.date
    source: str
    draft: bool
    origin: str = Field(description="seed (as the suite ships it) or operator (corrected through the API)")
    revision: int = Field(description="how many times an operator corrected it (0: the seed)")
    changed_by: str | None
    changed_at: dt.datetime | None


class CoverageValues(BaseModel):
    covered_from: dt.date
    source: str
    draft: bool


class CoverageChangeOut(BaseModel):
    specialty: CerSpecialty
    revision: int
    changed_at: dt.datetime
    changed_by: str = Field(description="the operator's token subject")
    changed_role: str
    request_id: str | None
    old_origin: str = Field(description="what was replaced: the seed's entry or an earlier correction")
    old: CoverageValues
    new: CoverageValues


class ContractsIn(_In):
    specialties: list[CerSpecialty] = Field(
        max_length=len(CerSpecialty),
        description="every CeR specialty the facility holds an NFZ contract in (replaces the earlier list)",
    )


class ContractsOut(BaseModel):
    specialties: list[CerSpecialty]
    declared_by: str | None
    declared_at: dt.datetime | None

"""Events the prescriptions service publishes (consumers import the payloads from here)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import ClassVar

from pydantic import Field

from shared.events import EventPayload


class SettingsChanged(EventPayload):
    """The integration service checks "prescription ordering active" before enabling IKP."""

    event_type: ClassVar[str] = "prescriptions.settings.changed"
    mode: str
    activated_on: dt.date | None
    active_until: dt.date | None
    drug_scope: str


class RequestAccepted(EventPayload):
    event_type: ClassVar[str] = "prescriptions.request.accepted"
    request_id: uuid.UUID
    source: str
    status: str
    routed_to: str | None
    assigned_npwz: str | None
    slot_id: uuid.UUID | None
    patient_pesel: str


class ProblemRaised(EventPayload):
    """One of the five problem notifications of DOMAIN.md 2, or (``problem`` 6) the notice of a refused
    request or items with ``details`` saying what was refused and why: the notifications service
    emails it to ``problem_email`` (none set: the notifications service records that nothing could
    be sent)."""

    event_type: ClassVar[str] = "prescriptions.problem.raised"
    problem: int
    problem_text: str
    fix_text: str
    problem_text_en: str
    fix_text_en: str
    problem_email: str | None
    npwz: str | None
    request_id: uuid.UUID | None
    details: list[str] = Field(default_factory=list)


class IssuedPrescriptionLine(EventPayload):
    event_type: ClassVar[str] = "prescriptions.prescription.line"  # never published on its own
    key: str
    drug: str
    packages: int
    units_per_package: str
    daily_dose_units: str
    kind: str
    valid_from: dt.date
    valid_until: dt.date
    dosage: str | None = None  # as the issuer wrote it, for the patient's information printout
    quantity_text: str | None = None


class PrescriptionIssued(EventPayload):
    """A package of e-prescriptions. It carries the access code because the patient must receive it
    (SMS) and P1 must register it; logs mask it, and no API lists it to anyone but the issuer."""

    event_type: ClassVar[str] = "prescriptions.prescription.issued"
    package_id: uuid.UUID
    package_key: str
    access_code: str
    patient_pesel: str
    issuer_npwz: str
    issuer_profession: str
    issued_on: dt.date
    issuer_name: str | None = None
    request_id: uuid.UUID | None
    prescriptions: list[IssuedPrescriptionLine]
    control_visit_on: dt.date | None = None


class PrescriptionCancelled(EventPayload):
    event_type: ClassVar[str] = "prescriptions.prescription.cancelled"
    key: str
    package_key: str
    patient_pesel: str
    issuer_npwz: str

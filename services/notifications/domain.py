"""Which messages an event makes, for whom and through which channel: pure rules, no I/O.

DOMAIN.md 7: patients hear of their bookings (confirmed, cancelled, moved), an issued
prescription (SMS: the 4-digit access code; e-mail: the prescription information as a PDF) and a
supply-order number; facilities get the five problem notifications and CeR synchronisation
failures by e-mail. Contact preferences decide the patient's channels: no channel, no message -
and that is recorded as such, so nobody wonders why nothing was sent.

Choices where the sources are silent:
- A booking made for a prescription request (source ``prescription_request``) is not announced:
  the patient does not come to that slot, the doctor issues in it.
- A booking moved or needing rescheduling is announced like a cancellation's counterpart; the
  patient must be asked to choose a new time when nobody could take over.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


class Channel(enum.StrEnum):
    EMAIL = "email"
    SMS = "sms"


class Audience(enum.StrEnum):
    PATIENT = "patient"
    FACILITY = "facility"


@dataclass(frozen=True)
class Contact:
    email: str | None
    phone: str | None
    channels: frozenset[Channel]


@dataclass(frozen=True)
class Planned:
    """One message to send; ``recipient`` None means the channel is wanted but has no address
    (or no channel at all): it is stored as ``no_channel`` and never sent."""

    channel: Channel | None
    audience: Audience
    recipient: str | None
    template: str
    context: Mapping[str, Any] = field(default_factory=dict)
    attach_prescription_pdf: bool = False


# event type -> (template, patient channels it may use)
PATIENT_TEMPLATES: dict[str, str] = {
    "scheduling.booking.created": "booking_created",
    "scheduling.booking.cancelled": "booking_cancelled",
    "scheduling.booking.moved": "booking_moved",
    "scheduling.booking.needs_rescheduling": "booking_needs_rescheduling",
    "prescriptions.prescription.issued": "prescription_issued",
    "reimbursement.order.number_issued": "order_number",
}
FACILITY_TEMPLATES: dict[str, str] = {
    "prescriptions.problem.raised": "problem",
    "integration.cer.sync_failed": "cer_sync_failed",
}
UNANNOUNCED_BOOKING_SOURCES = frozenset({"prescription_request"})


def patient_messages(event_type: str, payload: Mapping[str, Any], contact: Contact | None) -> list[Planned]:
    template = PATIENT_TEMPLATES.get(event_type)
    if template is None:
        return []
    if event_type == "scheduling.booking.created" and payload.get("source") in UNANNOUNCED_BOOKING_SOURCES:
        return []
    if contact is None or not contact.channels:
        return [Planned(None, Audience.PATIENT, None, template, payload)]
    planned: list[Planned] = []
    for channel in sorted(contact.channels):
        address = contact.email if channel is Channel.EMAIL else contact.phone
        attach = channel is Channel.EMAIL and template == "prescription_issued"
        planned.append(Planned(channel, Audience.PATIENT, address, template, payload, attach))
    return planned


def facility_messages(event_type: str, payload: Mapping[str, Any], facility_email: str | None) -> list[Planned]:
    template = FACILITY_TEMPLATES.get(event_type)
    if template is None:
        return []
    channel = Channel.EMAIL if facility_email else None
    return [Planned(channel, Audience.FACILITY, facility_email, template, payload)]


def plan(
    event_type: str, payload: Mapping[str, Any], contact: Contact | None, facility_email: str | None
) -> list[Planned]:
    return [*patient_messages(event_type, payload, contact), *facility_messages(event_type, payload, facility_email)]


def retry_delay(attempt: int, base_seconds: float, max_seconds: float) -> float:
    """Seconds before attempt ``attempt + 1`` (attempt counts from 1): doubling, capped."""
    return float(min(base_seconds * 2 ** max(attempt - 1, 0), max_seconds))


def is_dead(attempts: int, max_attempts: int) -> bool:
    return attempts >= max_attempts


# What a message needs only until it is delivered: the package's access code opens the patient's
# prescriptions with a PESEL, so a sent message keeps no copy (a dead one keeps it for its replay).
SECRET_CONTEXT_KEYS = frozenset({"access_code"})


def delivered_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """The context kept once the message is sent: everything but the secrets."""
    return {key: value for key, value in context.items() if key not in SECRET_CONTEXT_KEYS}


def subscribed_event_types() -> Sequence[str]:
    return [*PATIENT_TEMPLATES, *FACILITY_TEMPLATES]

"""Events the reimbursement service publishes (consumers import the payloads from here)."""

from __future__ import annotations

from typing import ClassVar

from shared.events import EventPayload


class OrderNumberIssued(EventPayload):
    """An order issued in a teleconsultation (teleporada): nothing is printed, so the patient learns
    the order number only from this message (SMS or e-mail, sent by the notifications service).
    """

    event_type: ClassVar[str] = "reimbursement.order.number_issued"
    number: str
    patient_pesel: str
    channel: str
    verification: str  # a negatively verified order still has a number; the message should say so

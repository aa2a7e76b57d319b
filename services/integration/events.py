"""Events the integration service publishes (consumers import the payloads from here)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import ClassVar

from shared.events import EventPayload

# Event ids of a national system's facts are uuid5 of that system's own id: the same P1 item polled
# twice, or the same CeR notification delivered twice, is the same event.
EXTERNAL_NAMESPACE = uuid.UUID("5a0c7a58-9a2f-4a43-8d0e-2f1f6a3c1b11")


class IkpItemReceived(EventPayload):
    """One drug a patient ordered on IKP, as polled from P1. The prescriptions service groups the
    items of one go into a request."""

    event_type: ClassVar[str] = "integration.ikp.item_received"
    item_id: str
    sequence: int
    patient_pesel: str
    doctor_npwz: str
    drug: str
    packages: int
    comment: str | None
    submitted_at: dt.datetime
    # The location the item was addressed to (its department code), else the poller's location.
    location_id: uuid.UUID


class IkpStatusChanged(EventPayload):
    event_type: ClassVar[str] = "integration.ikp.status_changed"
    status: str  # off, pending, enabled


class P1DeliveryFailed(EventPayload):
    """P1 refused a change for good (not an outage): a person must look at it."""

    event_type: ClassVar[str] = "integration.p1.delivery_failed"
    kind: str
    reference: str
    reason: str


def external_event_id(kind: str, reference: str) -> uuid.UUID:
    return uuid.uuid5(EXTERNAL_NAMESPACE, f"{kind}:{reference}")


class CerSyncFailed(EventPayload):
    """A CeR synchronisation failure the facility must hear of (the notifications service e-mails
    ``email``, the facility's CeR address): what failed, in a Polish sentence."""

    event_type: ClassVar[str] = "integration.cer.sync_failed"
    failure: str
    email: str | None
    slot_id: uuid.UUID | None = None
    start: dt.datetime | None = None


class CerNotificationReceived(EventPayload):
    """A signed CeR notification, accepted once; the scheduling service applies it to the slot."""

    event_type: ClassVar[str] = "integration.cer.notification_received"
    cer_event_id: str
    cer_event_type: str  # booking_created_ikp, booking_cancelled_ikp, booking_created_other_entity, ...
    occurred_at: dt.datetime
    slot_id: uuid.UUID
    patient_pesel: str


class CerCoverageChanged(EventPayload):
    """An operator corrected (or added) an entry of the dated CeR table. The scheduling service
    keeps a replica of the corrections, because it decides at a schedule's creation whether CeR
    covers it; ``revision`` counts the entry's corrections, so an older one arriving late is dropped."""

    event_type: ClassVar[str] = "integration.cer.coverage_changed"
    specialty: str
    covered_from: dt.date
    source: str
    draft: bool
    revision: int

"""Events the scheduling service publishes (consumers import the payloads from here)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from shared.events import EventPayload


class BookingCreated(EventPayload):
    event_type: ClassVar[str] = "scheduling.booking.created"
    booking_id: uuid.UUID
    slot_id: uuid.UUID
    practitioner_id: uuid.UUID
    location_id: uuid.UUID
    work_type_id: uuid.UUID
    start: dt.datetime
    end: dt.datetime
    patient_pesel: str
    source: str
    cer_published: bool
    cer_specialty: str | None = None
    schedule_id: uuid.UUID | None = None


class BookingCancelled(EventPayload):
    event_type: ClassVar[str] = "scheduling.booking.cancelled"
    booking_id: uuid.UUID
    slot_id: uuid.UUID
    patient_pesel: str
    start: dt.datetime
    cer_published: bool
    cer_specialty: str | None = None
    # Cancelled by the patient in CeR (IKP / mojeIKP): CeR knows already and is not told again.
    by_cer: bool = False


class BookingMoved(EventPayload):
    event_type: ClassVar[str] = "scheduling.booking.moved"
    booking_id: uuid.UUID
    old_slot_id: uuid.UUID
    new_slot_id: uuid.UUID
    new_practitioner_id: uuid.UUID
    patient_pesel: str
    start: dt.datetime
    end: dt.datetime | None = None
    old_cer_published: bool = False
    new_cer_published: bool = False
    new_cer_specialty: str | None = None
    old_cer_specialty: str | None = None
    new_schedule_id: uuid.UUID | None = None


class BookingNeedsRescheduling(EventPayload):
    """The practitioner is absent and no colleague is free: the patient must be asked."""

    event_type: ClassVar[str] = "scheduling.booking.needs_rescheduling"
    booking_id: uuid.UUID
    slot_id: uuid.UUID
    patient_pesel: str
    start: dt.datetime


class PublishedSlot(BaseModel):
    model_config = ConfigDict(frozen=True)

    slot_id: uuid.UUID
    start: dt.datetime
    end: dt.datetime


class SchedulePublished(EventPayload):
    event_type: ClassVar[str] = "scheduling.schedule.published"
    schedule_id: uuid.UUID
    practitioner_id: uuid.UUID
    location_id: uuid.UUID
    work_type_id: uuid.UUID
    date: dt.date
    slot_ids: list[uuid.UUID]
    cer_published: bool
    cer_specialty: str | None
    slots: list[PublishedSlot] = []


class SlotsWithdrawn(EventPayload):
    """Slots of a CeR-published schedule no longer offered (the practitioner is absent)."""

    event_type: ClassVar[str] = "scheduling.slots.withdrawn"
    slot_ids: list[uuid.UUID]
    reason: str
    cer_specialty: str | None = None


class CerConflict(EventPayload):
    """A CeR booking that cannot be applied (the slot was taken at the desk first, or is unknown):
    never two patients on one slot, so the facility is told and must settle it with the patient."""

    event_type: ClassVar[str] = "scheduling.cer.conflict"
    slot_id: uuid.UUID
    patient_pesel: str
    cer_event_id: str
    reason: str
    # Who holds the slot here (the desk's booking that came first), so CeR can be told.
    held_by_booking_id: uuid.UUID | None = None
    held_by_pesel: str | None = None
    cer_published: bool = False  # the slot is one CeR knows (else there is nothing to tell CeR)

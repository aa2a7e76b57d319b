"""The scheduling API's language (requests and answers)."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.integration.cer_scope import CerSpecialty
from shared.identifiers import Npwz, Pesel

Name = Annotated[str, Field(min_length=1, max_length=200)]


class Profession(enum.StrEnum):
    doctor = "doctor"
    dentist = "dentist"
    nurse = "nurse"
    midwife = "midwife"
    feldsher = "feldsher"


class BookingSource(enum.StrEnum):
    desk = "desk"
    portal = "portal"
    cer_ikp = "cer_ikp"
    cer_other_entity = "cer_other_entity"
    cer_waiting_list = "cer_waiting_list"
    # Booked by the prescriptions service when it routes a patient's prescription request to a slot.
    prescription_request = "prescription_request"


class SlotStatus(enum.StrEnum):
    free = "free"
    booked = "booked"
    unavailable = "unavailable"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class LocationIn(_In):
    name: Name
    department_code: Annotated[str, Field(pattern=r"^\d{4}$", description="VII część kodu resortowego")] | None = None
    cer_specialty: CerSpecialty | None = Field(
        default=None,
        description="CeR-covered specialty of this location (e.g. a mammography unit); its schedules go to CeR",
    )


class LocationOut(_Out):
    id: uuid.UUID
    name: str
    department_code: str | None
    duty_practitioner_id: uuid.UUID | None
    cer_specialty: CerSpecialty | None = None


class PractitionerIn(_In):
    name: Name
    npwz: Npwz
    profession: Profession
    poz: bool = False


class PractitionerOut(_Out):
    id: uuid.UUID
    name: str
    npwz: str
    profession: Profession
    poz: bool


class WorkTypeIn(_In):
    name: Name
    visible_online: bool = False
    prescription_only: bool = False
    cer_specialty: CerSpecialty | None = Field(
        default=None, description="CeR-covered specialty of this work; its schedules go to CeR"
    )


class WorkTypeOut(_Out):
    id: uuid.UUID
    name: str
    visible_online: bool
    prescription_only: bool
    cer_specialty: CerSpecialty | None


class ScheduleIn(_In):
    practitioner_id: uuid.UUID
    location_id: uuid.UUID
    work_type_id: uuid.UUID
    date: dt.date
    start_time: dt.time
    end_time: dt.time
    visit_minutes: int = Field(ge=5, le=480)
    cer_published: bool = Field(
        default=False,
        description="publish to CeR; a schedule of a CeR-covered specialty (work type or location) always is",
    )

    @field_validator("start_time", "end_time")
    @classmethod
    def _wall_clock(cls, value: dt.time) -> dt.time:
        # Times are read on the facility's clock; an offset (or a number of seconds) has no meaning here.
        if value.tzinfo is not None:
            raise ValueError("must be a wall-clock time HH:MM without an offset")
        return value

    @model_validator(mode="after")
    def _end_after_start(self) -> ScheduleIn:
        if self.end_time <= self.start_time:
            raise ValueError("end_time must be after start_time")
        return self


class ScheduleOut(BaseModel):
    id: uuid.UUID
    slots_created: int
    cer_published: bool = False
    cer_specialty: CerSpecialty | None = Field(
        default=None, description="the CeR specialty of the work type (or else the location)"
    )
    cer_covered: bool = Field(
        default=False,
        description="CeR covers this specialty on the schedule's date (the dated CeR table): it had to be published",
    )


class SlotOut(BaseModel):
    id: uuid.UUID
    practitioner_id: uuid.UUID
    location_id: uuid.UUID
    work_type_id: uuid.UUID
    start: dt.datetime
    end: dt.datetime
    status: SlotStatus


class BookingIn(_In):
    slot_id: uuid.UUID
    patient_pesel: Pesel
    source: BookingSource = BookingSource.desk


class BookingOut(_Out):
    id: uuid.UUID
    slot_id: uuid.UUID
    status: str
    source: BookingSource
    patient_pesel: str
    start: dt.datetime | None = None
    practitioner_id: uuid.UUID | None = None
    location_id: uuid.UUID | None = None
    warnings: list[str] = Field(
        default_factory=list,
        description="said once, in the answer that books: e.g. a screening (mammography: women 45-74, "
        "cytology/HPV: women 25-64) for a patient outside its ages; booked all the same",
    )


class EarliestBookingIn(_In):
    """Book the earliest free slot that fits, in one step: concurrent callers get successive slots
    instead of all racing for the same first one."""

    practitioner_id: uuid.UUID
    location_id: uuid.UUID | None = Field(default=None, description="only at this location")
    exclude_location_id: uuid.UUID | None = Field(default=None, description="anywhere but this location")
    prescription_only: bool | None = Field(default=None, description="true: prescription slots only")
    start_after: dt.datetime = Field(description="the slot starts strictly after this instant (with offset)")
    patient_pesel: Pesel
    source: BookingSource = BookingSource.desk

    @field_validator("start_after")
    @classmethod
    def _aware(cls, value: dt.datetime) -> dt.datetime:
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("give the instant with its offset")
        return value


class DutyPractitionerIn(_In):
    practitioner_id: uuid.UUID


class AbsenceIn(_In):
    date_from: dt.date
    date_to: dt.date

    @model_validator(mode="after")
    def _ordered(self) -> AbsenceIn:
        if self.date_to < self.date_from:
            raise ValueError("date_to must not be before date_from")
        return self


class Reassignment(BaseModel):
    booking_id: uuid.UUID
    new_slot_id: uuid.UUID


class AbsenceOut(BaseModel):
    reassigned: list[Reassignment]
    needs_rescheduling: list[uuid.UUID]

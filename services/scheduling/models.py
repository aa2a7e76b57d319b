"""Scheduling tables. Double booking and overlapping slots are refused by the database itself."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import TYPE_ANNOTATION_MAP, new_metadata, utcnow
from shared.outbox import IdempotencyMixin, InboxMixin, OutboxMixin


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


def _id() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


class Location(Base):
    __tablename__ = "locations"
    id: Mapped[uuid.UUID] = _id()
    facility_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    department_code: Mapped[str | None] = mapped_column(sa.String(20))  # "VII część kodu resortowego"
    # A CeR-covered specialty of everything offered here (a mammography unit): its schedules go to CeR.
    cer_specialty: Mapped[str | None] = mapped_column(sa.String(40))
    # One duty doctor per location (dyżurny) by construction: a single column, not a table.
    duty_practitioner_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("practitioners.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Practitioner(Base):
    __tablename__ = "practitioners"
    __table_args__ = (sa.UniqueConstraint("facility_id", "npwz", name="uq_practitioners_facility_npwz"),)
    id: Mapped[uuid.UUID] = _id()
    facility_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    npwz: Mapped[str] = mapped_column(sa.String(8))
    profession: Mapped[str] = mapped_column(sa.String(20))
    poz: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WorkType(Base):
    __tablename__ = "work_types"
    id: Mapped[uuid.UUID] = _id()
    facility_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    visible_online: Mapped[bool] = mapped_column(default=False)
    prescription_only: Mapped[bool] = mapped_column(default=False)
    cer_specialty: Mapped[str | None] = mapped_column(sa.String(40))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Schedule(Base):
    __tablename__ = "schedules"
    id: Mapped[uuid.UUID] = _id()
    facility_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    practitioner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("practitioners.id"))
    location_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("locations.id"))
    work_type_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("work_types.id"))
    date: Mapped[dt.date]
    start_time: Mapped[dt.time]
    end_time: Mapped[dt.time]
    visit_minutes: Mapped[int]
    # Published to CeR: asked for, or required by its CeR-covered specialty (of the work type or location).
    cer_published: Mapped[bool] = mapped_column(default=False)
    cer_specialty: Mapped[str | None] = mapped_column(sa.String(40))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Slot(Base):
    __tablename__ = "slots"
    __table_args__ = (
        sa.CheckConstraint("end_at > start_at", name="end_after_start"),
        sa.Index("ix_slots_search", "facility_id", "location_id", "start_at"),
        sa.Index("ix_slots_practitioner_start", "practitioner_id", "start_at"),
    )
    id: Mapped[uuid.UUID] = _id()
    facility_id: Mapped[str] = mapped_column(sa.String(64))
    schedule_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("schedules.id"), index=True)
    practitioner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("practitioners.id"))
    location_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("locations.id"))
    work_type_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("work_types.id"))
    start_at: Mapped[dt.datetime]
    end_at: Mapped[dt.datetime]
    # False while the practitioner is absent: the slot can be neither found free nor booked.
    available: Mapped[bool] = mapped_column(default=True)


BOOKED = "booked"
CANCELLED = "cancelled"
NEEDS_RESCHEDULING = "needs_rescheduling"


class Booking(Base):
    __tablename__ = "bookings"
    __table_args__ = (
        # The heart of "never two patients on one slot": at most one live booking per slot.
        sa.Index(
            "uq_bookings_active_slot",
            "slot_id",
            unique=True,
            postgresql_where=sa.text("status = 'booked'"),
            sqlite_where=sa.text("status = 'booked'"),
        ),
        sa.CheckConstraint("status IN ('booked', 'cancelled', 'needs_rescheduling')", name="status_known"),
    )
    id: Mapped[uuid.UUID] = _id()
    facility_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    slot_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("slots.id"), index=True)
    patient_pesel: Mapped[str] = mapped_column(sa.String(11), index=True)
    source: Mapped[str] = mapped_column(sa.String(30))
    status: Mapped[str] = mapped_column(sa.String(30), default=BOOKED)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    cancelled_at: Mapped[dt.datetime | None] = mapped_column(default=None)


class Absence(Base):
    __tablename__ = "absences"
    id: Mapped[uuid.UUID] = _id()
    facility_id: Mapped[str] = mapped_column(sa.String(64))
    practitioner_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("practitioners.id"), index=True)
    date_from: Mapped[dt.date]
    date_to: Mapped[dt.date]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CerSlotState(Base):
    """The newest CeR notification applied per slot and patient: an older one arriving late (a
    booking after its own cancellation) is recognised as stale and changes nothing."""

    __tablename__ = "cer_slot_states"
    facility_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    slot_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    patient_pesel: Mapped[str] = mapped_column(sa.String(11), primary_key=True)
    last_event_type: Mapped[str] = mapped_column(sa.String(40))
    last_occurred_at: Mapped[dt.datetime]
    conflict: Mapped[str | None] = mapped_column(sa.String(300))  # why CeR's booking could not be applied


class CerCoverage(Base):
    """The operators' corrections of the dated CeR table, replicated from the integration service
    (which owns them) by its events; the seed itself is code (``cer_scope.SEED``). ``revision``
    only grows: a correction arriving after a newer one changes nothing."""

    __tablename__ = "cer_coverage"
    specialty: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    covered_from: Mapped[dt.date]
    source: Mapped[str] = mapped_column(sa.String(400))
    draft: Mapped[bool]
    revision: Mapped[int]


class Outbox(Base, OutboxMixin):
    pass


class Inbox(Base, InboxMixin):
    pass


class IdempotencyKey(Base, IdempotencyMixin):
    pass


def slot_overlap_ddl(dialect: str) -> list[Any]:
    """The database rule that one practitioner's slots never overlap.

    PostgreSQL: an exclusion constraint over (practitioner, time range) with btree_gist. SQLite has
    no such constraint, so a trigger refuses the overlapping row with the same message.
    """
    if dialect == "postgresql":
        return [
            sa.text("CREATE EXTENSION IF NOT EXISTS btree_gist"),
            sa.text(
                "ALTER TABLE slots ADD CONSTRAINT ex_slots_practitioner_time EXCLUDE USING gist "
                "(practitioner_id WITH =, tstzrange(start_at, end_at, '[)') WITH &&)"
            ),
        ]
    return [
        sa.text(
            "CREATE TRIGGER ex_slots_practitioner_time BEFORE INSERT ON slots "
            "WHEN EXISTS (SELECT 1 FROM slots s WHERE s.practitioner_id = NEW.practitioner_id "
            "AND s.start_at < NEW.end_at AND NEW.start_at < s.end_at) "
            "BEGIN SELECT RAISE(ABORT, 'ex_slots_practitioner_time: overlapping slot'); END"
        )
    ]

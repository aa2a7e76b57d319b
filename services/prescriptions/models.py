"""Prescription-ordering tables.

- A request's slot is booked in the scheduling service (which owns double-booking); here the
  request only records which slot and booking it got.
- IKP items wait in ``ikp_items`` until their group is sealed (no new item within the gap); the
  P1 item id is the primary key, so an item delivered twice is stored once.
- Prescription keys and package keys are unique in the database: a drawn collision fails the insert
  rather than shadowing another patient's prescription.
"""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from shared.db import TYPE_ANNOTATION_MAP, new_metadata, utcnow
from shared.outbox import IdempotencyMixin, InboxMixin, OutboxMixin

# Request statuses
BOOKED = "booked"  # a prescription slot is booked with the own or the duty doctor
UNASSIGNED = "unassigned"  # accepted, but no slot could be booked: the facility was notified
REFUSED = "refused"  # a polled IKP request that could not be taken (its location is gone): the facility was notified
ISSUED = "issued"  # at least one e-prescription package was issued for it
REQUEST_STATUSES = (BOOKED, UNASSIGNED, REFUSED, ISSUED)


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class FacilitySettings(Base):
    __tablename__ = "facility_settings"
    __table_args__ = (
        sa.CheckConstraint("mode IN ('off', 'demo', 'full')", name="mode_known"),
        sa.CheckConstraint("drug_scope IN ('any', 'patient_account')", name="drug_scope_known"),
        # Demo mode is used once per facility: it can only be on once its first day is recorded.
        sa.CheckConstraint("mode <> 'demo' OR demo_used_on IS NOT NULL", name="demo_recorded"),
    )
    facility_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    mode: Mapped[str] = mapped_column(sa.String(8), default="off")
    activated_on: Mapped[dt.date | None]
    # The day demo mode was first switched on; kept when it is switched off or expires.
    demo_used_on: Mapped[dt.date | None]
    drug_scope: Mapped[str] = mapped_column(sa.String(16), default="any")
    problem_email: Mapped[str | None] = mapped_column(sa.String(254))
    # Projection of the integration service's IKP status: with IKP on, every POZ doctor takes orders.
    ikp_enabled: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class PractitionerOrdering(Base):
    """The per-practitioner switch (by NPWZ: IKP addresses doctors by NPWZ, not by our ids)."""

    __tablename__ = "practitioner_ordering"
    facility_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    npwz: Mapped[str] = mapped_column(sa.String(8), primary_key=True)
    enabled: Mapped[bool]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class AccountDrug(Base):
    """A drug on the patient's account: previously prescribed to the patient by this facility."""

    __tablename__ = "account_drugs"
    facility_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    patient_pesel: Mapped[str] = mapped_column(sa.String(11), primary_key=True)
    drug_key: Mapped[str] = mapped_column(sa.String(200), primary_key=True)  # normalised name
    drug: Mapped[str] = mapped_column(sa.String(200))
    added_on: Mapped[dt.date]
    source: Mapped[str] = mapped_column(sa.String(16))  # issued here, or recorded by the facility


class PrescriptionRequest(Base):
    __tablename__ = "prescription_requests"
    __table_args__ = (
        sa.CheckConstraint("status IN ('booked', 'unassigned', 'refused', 'issued')", name="status_known"),
        sa.CheckConstraint("source IN ('portal', 'ikp')", name="source_known"),
        sa.CheckConstraint("routed_to IS NULL OR routed_to IN ('own', 'duty')", name="routed_to_known"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    facility_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    patient_pesel: Mapped[str] = mapped_column(sa.String(11), index=True)
    practitioner_npwz: Mapped[str] = mapped_column(sa.String(8))
    location_id: Mapped[uuid.UUID]
    source: Mapped[str] = mapped_column(sa.String(8))
    status: Mapped[str] = mapped_column(sa.String(12))
    routed_to: Mapped[str | None] = mapped_column(sa.String(4))
    assigned_npwz: Mapped[str | None] = mapped_column(sa.String(8))
    assigned_practitioner_id: Mapped[uuid.UUID | None]
    slot_id: Mapped[uuid.UUID | None]
    booking_id: Mapped[uuid.UUID | None]
    slot_start: Mapped[dt.datetime | None]
    comment: Mapped[str | None] = mapped_column(sa.String(1000))
    problems: Mapped[str | None] = mapped_column(sa.String(40))  # "2,3": the notifications raised
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    items: Mapped[list[RequestItem]] = relationship(
        order_by="RequestItem.position", cascade="all, delete-orphan", lazy="selectin"
    )


class RequestItem(Base):
    __tablename__ = "request_items"
    request_id: Mapped[uuid.UUID] = mapped_column(
        sa.ForeignKey("prescription_requests.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(primary_key=True)
    drug: Mapped[str] = mapped_column(sa.String(200))
    packages: Mapped[int]
    comment: Mapped[str | None] = mapped_column(sa.String(1000))
    # A refused item is kept with the reason, so the facility sees what was refused.
    refused_reason: Mapped[str | None] = mapped_column(sa.String(400))


class IkpItem(Base):
    """An IKP item received from P1, waiting until its group is sealed into a request."""

    __tablename__ = "ikp_items"
    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)  # P1's item id
    facility_id: Mapped[str] = mapped_column(sa.String(64))
    patient_pesel: Mapped[str] = mapped_column(sa.String(11))
    doctor_npwz: Mapped[str] = mapped_column(sa.String(8))
    location_id: Mapped[uuid.UUID]
    drug: Mapped[str] = mapped_column(sa.String(200))
    packages: Mapped[int]
    comment: Mapped[str | None] = mapped_column(sa.String(1000))
    submitted_at: Mapped[dt.datetime]
    request_id: Mapped[uuid.UUID | None] = mapped_column(index=True)  # set when sealed
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (sa.Index("ix_ikp_items_waiting", "facility_id", "request_id", "submitted_at"),)


class PrescriptionPackage(Base):
    """A package (pakiet) of 1-5 e-prescriptions with one access code."""

    __tablename__ = "prescription_packages"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    package_key: Mapped[str] = mapped_column(sa.String(44), unique=True)
    access_code: Mapped[str] = mapped_column(sa.String(4))
    facility_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    request_id: Mapped[uuid.UUID | None] = mapped_column(sa.ForeignKey("prescription_requests.id"), index=True)
    patient_pesel: Mapped[str] = mapped_column(sa.String(11))
    issuer_npwz: Mapped[str] = mapped_column(sa.String(8))
    issuer_profession: Mapped[str] = mapped_column(sa.String(12))
    issued_on: Mapped[dt.date]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    prescriptions: Mapped[list[Prescription]] = relationship(
        order_by="Prescription.position", cascade="all, delete-orphan", lazy="selectin"
    )


class Prescription(Base):
    __tablename__ = "prescriptions"
    __table_args__ = (
        sa.CheckConstraint("status IN ('issued', 'cancelled')", name="status_known"),
        sa.CheckConstraint("packages >= 1", name="packages_positive"),
    )
    key: Mapped[str] = mapped_column(sa.String(44), primary_key=True)
    package_id: Mapped[uuid.UUID] = mapped_column(sa.ForeignKey("prescription_packages.id", ondelete="CASCADE"))
    position: Mapped[int]
    drug: Mapped[str] = mapped_column(sa.String(200))
    packages: Mapped[int]
    units_per_package: Mapped[Decimal]
    daily_dose_units: Mapped[Decimal]
    kind: Mapped[str] = mapped_column(sa.String(24))
    controlled_group: Mapped[str | None] = mapped_column(sa.String(6))
    valid_from: Mapped[dt.date]
    valid_until: Mapped[dt.date]
    status: Mapped[str] = mapped_column(sa.String(10), default="issued")
    # From the pharmacy's realisation events: once set, the issuer can no longer cancel.
    first_realised_on: Mapped[dt.date | None]


class Outbox(Base, OutboxMixin):
    __tablename__ = "outbox"


class Inbox(Base, InboxMixin):
    __tablename__ = "inbox"


class IdempotencyKey(Base, IdempotencyMixin):
    __tablename__ = "idempotency_keys"

"""Integration tables: the IKP integration of each facility and the changes queued for P1.

``p1_outgoing`` is this service's second outbox: what must reach P1 is written here in the
transaction that consumes the event, and a forwarder sends it in order, retrying while P1 is down,
so nothing is lost and nothing overtakes an earlier change.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import TYPE_ANNOTATION_MAP, new_metadata, utcnow
from shared.outbox import IdempotencyMixin, InboxMixin, OutboxMixin

IKP_OFF = "off"
IKP_PENDING = "pending"
IKP_ENABLED = "enabled"

PENDING = "pending"
SENT = "sent"
REJECTED = "rejected"  # P1 refused it for good: a person must look at it

REGISTER_PACKAGE = "register_package"
CANCEL_PRESCRIPTION = "cancel_prescription"
DISABLE_IKP = "disable_ikp"
RECORD_REALISATION = "record_realisation"

# The kinds of change sent to CeR.
CER_REGISTER_ENDPOINT = "register_endpoint"
CER_PUBLISH_SCHEDULE = "publish_schedule"
CER_WITHDRAW_SLOTS = "withdraw_slots"
CER_BOOK = "book"
CER_CANCEL = "cancel"
CER_REFUSE = "refuse"


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class IkpIntegration(Base):
    __tablename__ = "ikp_integrations"
    __table_args__ = (sa.CheckConstraint("status IN ('off', 'pending', 'enabled')", name="status_known"),)
    facility_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    status: Mapped[str] = mapped_column(sa.String(8), default=IKP_OFF)
    requested_at: Mapped[dt.datetime | None]
    enabled_at: Mapped[dt.datetime | None]
    # The designated poller and the location (with its department code) IKP requests go to.
    poller_npwz: Mapped[str | None] = mapped_column(sa.String(8))
    poller_practitioner_id: Mapped[uuid.UUID | None]
    location_id: Mapped[uuid.UUID | None]
    department_code: Mapped[str | None] = mapped_column(sa.String(4))
    # P1's queue cursor: the last item turned into an event, moved in the same transaction.
    last_sequence: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    last_polled_at: Mapped[dt.datetime | None]
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OrderingStatus(Base):
    """Projection of the prescriptions service's settings events (IKP needs ordering active)."""

    __tablename__ = "ordering_status"
    facility_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    mode: Mapped[str] = mapped_column(sa.String(8))
    activated_on: Mapped[dt.date | None]
    active_until: Mapped[dt.date | None]
    changed_at: Mapped[dt.datetime]


class CerSettings(Base):
    """Where CeR's notifications go and the secret they are signed with. The secret is kept to verify
    signatures and is never returned by the API nor logged (a deployment may hold it in a vault)."""

    __tablename__ = "cer_settings"
    facility_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    endpoint: Mapped[str] = mapped_column(sa.String(500))
    email: Mapped[str] = mapped_column(sa.String(254))
    secret: Mapped[str] = mapped_column(sa.Text())  # sealed (services/integration/sealed.py)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CerNotification(Base):
    """Every CeR notification accepted, once: the same event id again changes nothing."""

    __tablename__ = "cer_notifications"
    facility_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    event_type: Mapped[str] = mapped_column(sa.String(40))
    occurred_at: Mapped[dt.datetime]
    slot_id: Mapped[uuid.UUID]
    received_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class OutgoingMixin:
    """A queue of changes for one national system, sent oldest first by ``outgoing.Forwarder``."""

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    facility_id: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(24))
    reference: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(10), default=PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.String(400))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]


class P1Outgoing(OutgoingMixin, Base):
    __tablename__ = "p1_outgoing"
    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'sent', 'rejected')", name="status_known"),
        sa.UniqueConstraint("kind", "reference", name="uq_p1_outgoing_kind_reference"),
        sa.Index("ix_p1_outgoing_pending", "status", "id"),
    )


class CerOutgoing(OutgoingMixin, Base):
    """Changes for CeR: published schedules, withdrawn slots, local bookings and cancellations of
    published slots, refusals. While CeR is unreachable local bookings still succeed; their changes
    wait here and go out in order when CeR answers again."""

    __tablename__ = "cer_outgoing"
    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'sent', 'rejected')", name="status_known"),
        sa.UniqueConstraint("kind", "reference", name="uq_cer_outgoing_kind_reference"),
        sa.Index("ix_cer_outgoing_pending", "status", "id"),
    )
    # The CeR-covered specialty the change is about (compliance counts what has not reached CeR).
    specialty: Mapped[str | None] = mapped_column(sa.String(40))


class CerSchedule(Base):
    """Each schedule published to CeR and when CeR took it (the compliance report reads this)."""

    __tablename__ = "cer_schedules"
    schedule_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    facility_id: Mapped[str] = mapped_column(sa.String(64), index=True)
    specialty: Mapped[str | None] = mapped_column(sa.String(40))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    accepted_at: Mapped[dt.datetime | None]  # CeR answered the publication


class CerVisit(Base):
    """One booking on one slot as CeR must hear of it: taken first (a row lock) by whichever of its
    booking and its cancellation is consumed first, so that concurrent consumers queue them in the
    right order and a cancellation overtaking its booking means the booking is never sent."""

    __tablename__ = "cer_visits"
    reference: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    facility_id: Mapped[str] = mapped_column(sa.String(64))
    booked: Mapped[bool] = mapped_column(default=False)
    cancelled: Mapped[bool] = mapped_column(default=False)


class CerDrift(Base):
    """A difference between CeR and the local schedule found by reconciliation, reported once."""

    __tablename__ = "cer_drifts"
    facility_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20), primary_key=True)  # missing_locally, missing_in_cer
    reference: Mapped[str] = mapped_column(sa.String(100), primary_key=True)
    slot_id: Mapped[uuid.UUID]
    detail: Mapped[str] = mapped_column(sa.String(400))
    repaired: Mapped[bool] = mapped_column(default=False)
    found_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class CerCoverageRule(Base):
    """An operator's correction of the dated CeR table (``cer_scope.SEED`` is the rest of it).

    A row with revision 0 only holds the lock of a specialty the operator has not corrected yet
    (its values are the seed's); each correction raises the revision by one, which is what the
    scheduling service's replica compares to drop an older correction arriving late.
    """

    __tablename__ = "cer_coverage_rules"
    specialty: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    covered_from: Mapped[dt.date]
    source: Mapped[str] = mapped_column(sa.String(400))
    draft: Mapped[bool]
    revision: Mapped[int] = mapped_column(default=0)
    changed_by: Mapped[str | None] = mapped_column(sa.String(200))
    changed_role: Mapped[str | None] = mapped_column(sa.String(40))
    changed_at: Mapped[dt.datetime | None]


class CerCoverageChange(Base):
    """The table's history, append-only (never updated or deleted): who changed which entry when,
    from what to what. It is part of the audit."""

    __tablename__ = "cer_coverage_changes"
    __table_args__ = (sa.UniqueConstraint("specialty", "revision", name="uq_cer_coverage_changes_specialty_revision"),)
    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    specialty: Mapped[str] = mapped_column(sa.String(40))
    revision: Mapped[int]
    old_covered_from: Mapped[dt.date]
    old_source: Mapped[str] = mapped_column(sa.String(400))
    old_draft: Mapped[bool]
    old_origin: Mapped[str] = mapped_column(sa.String(10))  # seed or operator
    new_covered_from: Mapped[dt.date]
    new_source: Mapped[str] = mapped_column(sa.String(400))
    new_draft: Mapped[bool]
    changed_by: Mapped[str] = mapped_column(sa.String(200))
    changed_role: Mapped[str] = mapped_column(sa.String(40))
    changed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    request_id: Mapped[str | None] = mapped_column(sa.String(100))


class CerContract(Base):
    """The NFZ contracts in CeR specialties a facility holds, as its administrator declared them:
    one row per facility, replaced whole by each declaration (one upsert: two concurrent
    declarations never end as a mix of both)."""

    __tablename__ = "cer_contracts"
    facility_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    specialties: Mapped[list[str]] = mapped_column(sa.JSON)
    declared_by: Mapped[str] = mapped_column(sa.String(200))
    declared_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Outbox(Base, OutboxMixin):
    __tablename__ = "outbox"


class Inbox(Base, InboxMixin):
    __tablename__ = "inbox"


class IdempotencyKey(Base, IdempotencyMixin):
    __tablename__ = "idempotency_keys"

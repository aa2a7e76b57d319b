"""Notification tables: contact preferences and every message, with its delivery state.

A message row is written in the transaction that consumes its event, unique per (event,
audience, channel): an event delivered twice makes no second message. The sender reads the rows,
so a crash or an SMTP outage loses nothing; a message that keeps failing ends ``dead``, visible
and replayable, never silently dropped.
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import TYPE_ANNOTATION_MAP, new_metadata, utcnow
from shared.outbox import IdempotencyMixin, InboxMixin, OutboxMixin

QUEUED = "queued"
SENT = "sent"
FAILED = "failed"  # the last attempt failed; another one is due at next_attempt_at
DEAD = "dead"  # every attempt failed: waits for an operator's replay
NO_CHANNEL = "no_channel"  # the recipient has no channel or no address for it: nothing was sent
STATUSES = (QUEUED, SENT, FAILED, DEAD, NO_CHANNEL)


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class PatientContact(Base):
    __tablename__ = "patient_contacts"
    facility_id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    pesel: Mapped[str] = mapped_column(sa.String(11), primary_key=True)
    email: Mapped[str | None] = mapped_column(sa.String(254))
    phone: Mapped[str | None] = mapped_column(sa.String(12))
    channels: Mapped[str] = mapped_column(sa.String(20), default="")  # "email,sms"; "" = none
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        sa.UniqueConstraint("event_id", "audience", "channel", name="uq_messages_once_per_event"),
        sa.CheckConstraint("status IN ('queued', 'sent', 'failed', 'dead', 'no_channel')", name="status_known"),
        sa.Index("ix_messages_due", "status", "next_attempt_at"),
    )
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    event_id: Mapped[uuid.UUID]
    event_type: Mapped[str] = mapped_column(sa.String(200))
    facility_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    audience: Mapped[str] = mapped_column(sa.String(10))
    # "none" rather than NULL for a message without a channel: the unique key must hold for it too.
    channel: Mapped[str] = mapped_column(sa.String(8))
    recipient: Mapped[str | None] = mapped_column(sa.String(254))
    template: Mapped[str] = mapped_column(sa.String(40))
    # What the template needs (the access code included: it must reach the patient); never listed by the API.
    context: Mapped[str] = mapped_column(sa.Text)
    attach_prescription_pdf: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(sa.String(12), default=QUEUED)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.String(400))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[dt.datetime | None]


class Outbox(Base, OutboxMixin):
    __tablename__ = "outbox"


class Inbox(Base, InboxMixin):
    __tablename__ = "inbox"


class IdempotencyKey(Base, IdempotencyMixin):
    __tablename__ = "idempotency_keys"

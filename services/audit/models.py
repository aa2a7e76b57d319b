"""The audit's one table of its own, ``access_events``: append-only.

Rows come only from ``audit.access.recorded`` events, one per entry, unique per (event, position):
a redelivered event writes nothing. Nothing in the service updates or deletes a row; on PostgreSQL
the runtime role is granted SELECT and INSERT only (``APPEND_ONLY`` below, read by
``shared.alembic_env``), a trigger refuses UPDATE to everyone, and only the maintenance role may
DELETE (the retention purge, ``python -m services.audit.purge``).
"""

from __future__ import annotations

import datetime as dt
import uuid

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.db import TYPE_ANNOTATION_MAP, new_metadata, utcnow
from shared.outbox import IdempotencyMixin, InboxMixin, OutboxMixin

ACCESS_EVENTS = "access_events"


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


# Tables whose rows the runtime role may only add and read (shared.alembic_env grants accordingly).
Base.metadata.info["append_only"] = frozenset({ACCESS_EVENTS})


class AccessEvent(Base):
    __tablename__ = ACCESS_EVENTS
    __table_args__ = (
        sa.UniqueConstraint("event_id", "position", name="uq_access_events_event_position"),
        # The searches: a patient's accesses, a facility's, everything; each newest first.
        sa.Index("ix_access_events_patient_at", "patient_pesel", "at"),
        sa.Index("ix_access_events_tenant_at", "tenant", "at"),
        sa.Index("ix_access_events_at", "at"),
    )
    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[uuid.UUID]
    position: Mapped[int]
    at: Mapped[dt.datetime]
    actor: Mapped[str] = mapped_column(sa.String(200))
    role: Mapped[str] = mapped_column(sa.String(40))
    tenant: Mapped[str | None] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(80))
    resource: Mapped[str] = mapped_column(sa.String(200))
    patient_pesel: Mapped[str | None] = mapped_column(sa.String(11))
    request_id: Mapped[str | None] = mapped_column(sa.String(100))
    recorded_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Outbox(Base, OutboxMixin):
    __tablename__ = "outbox"


class Inbox(Base, InboxMixin):
    __tablename__ = "inbox"


class IdempotencyKey(Base, IdempotencyMixin):
    __tablename__ = "idempotency_keys"

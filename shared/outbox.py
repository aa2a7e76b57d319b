"""Transactional outbox, inbox and idempotency-key tables, the unit of work, and the relay.

A use case changes state and records its events in ONE transaction (``UnitOfWork``); the relay
publishes unsent rows in order with publisher confirms and only then marks them sent, so a crash
between commit and publish re-publishes (consumers deduplicate by event id) and never loses.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import uuid
import zlib
from types import TracebackType
from typing import Any, Self

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from shared.bus import EventBus
from shared.db import utcnow
from shared.events import Envelope, EventPayload
from shared.logging import request_id_var

log = structlog.get_logger("outbox")


class OutboxMixin:
    """Columns of a service's ``outbox`` table (declare ``class Outbox(Base, OutboxMixin)``)."""

    __tablename__ = "outbox"

    @declared_attr.directive
    def __table_args__(cls) -> tuple[Any, ...]:
        # The relay only ever looks for unsent rows: keep that index small. A fresh Index per
        # subclass, since every service declares its own outbox table.
        unsent = sa.text("published_at IS NULL")
        return (sa.Index("ix_outbox_unsent", "seq", postgresql_where=unsent, sqlite_where=unsent),)

    seq: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    event_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    event_type: Mapped[str] = mapped_column(sa.String(200))
    envelope: Mapped[str] = mapped_column(sa.Text())
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    published_at: Mapped[dt.datetime | None] = mapped_column(default=None)
    attempts: Mapped[int] = mapped_column(default=0)


class InboxMixin:
    """Event ids a consumer has applied, written in the same transaction as the effect."""

    __tablename__ = "inbox"
    consumer: Mapped[str] = mapped_column(sa.String(200), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    processed_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class IdempotencyMixin:
    """Answers to POSTs that carried an Idempotency-Key, replayed on a retry."""

    __tablename__ = "idempotency_keys"
    scope: Mapped[str] = mapped_column(sa.String(300), primary_key=True)  # who + method + path
    key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int | None] = mapped_column(default=None)
    content_type: Mapped[str | None] = mapped_column(sa.String(100), default=None)
    body: Mapped[bytes | None] = mapped_column(sa.LargeBinary(), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class UnitOfWork:
    """One transaction per use case; rolled back unless ``commit()`` is called.

    ``emit()`` collects events; ``commit()`` writes them as outbox rows in the same transaction.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox_model: type[Any],
        on_commit: asyncio.Event | None = None,
    ) -> None:
        self._sessions = sessions
        self._outbox_model = outbox_model
        self._on_commit = on_commit
        self._events: list[Envelope] = []
        self.session: AsyncSession

    async def __aenter__(self) -> Self:
        self.session = self._sessions()
        await self.session.begin()
        self._events = []
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if self.session.in_transaction():
                await self.session.rollback()
        finally:
            await self.session.close()

    def emit(self, payload: EventPayload, *, facility_id: str | None, event_id: uuid.UUID | None = None) -> Envelope:
        """``event_id``: a deterministic id (uuid5 of an outside key) when the same fact may be emitted
        twice, so that consumers' inboxes drop the second copy."""
        envelope = Envelope(
            id=event_id or uuid.uuid4(),
            type=payload.event_type,
            version=payload.version,
            facility_id=facility_id,
            correlation_id=request_id_var.get(),
            payload=payload.model_dump(mode="json"),
        )
        self._events.append(envelope)
        return envelope

    async def commit(self) -> None:
        for envelope in self._events:
            self.session.add(
                self._outbox_model(event_id=envelope.id, event_type=envelope.type, envelope=envelope.model_dump_json())
            )
        await self.session.commit()
        self._events = []
        if self._on_commit is not None:
            self._on_commit.set()

    async def rollback(self) -> None:
        await self.session.rollback()
        self._events = []


async def already_processed(session: AsyncSession, inbox_model: type[Any], consumer: str, event_id: uuid.UUID) -> bool:
    """Record ``event_id`` for ``consumer``; True when it had been recorded before.

    Call inside the transaction that applies the event: a concurrent duplicate then fails on the
    primary key at commit and its whole effect rolls back.
    """
    found = await session.get(inbox_model, (consumer, event_id))
    if found is not None:
        return True
    session.add(inbox_model(consumer=consumer, event_id=event_id))
    await session.flush()
    return False


class OutboxRelay:
    """Publishes unsent outbox rows in order; one active relay per database at a time."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        outbox_model: type[Any],
        bus: EventBus,
        *,
        poll_seconds: float = 0.5,
        batch_size: int = 100,
        wake: asyncio.Event | None = None,
    ) -> None:
        self._sessions = sessions
        self._model = outbox_model
        self._bus = bus
        self._poll = poll_seconds
        self._batch = batch_size
        self.wake = wake or asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock_id = zlib.crc32(f"outbox-relay:{outbox_model.__table__.fullname}".encode())
        self.failures = 0
        self._stopping = False

    async def publish_pending(self) -> int:
        """Publish one batch; returns how many rows were published."""
        model = self._model
        failure: Exception | None = None
        published = 0
        async with self._sessions() as session, session.begin():
            if session.bind.dialect.name == "postgresql":
                # Order matters to consumers (CeR wants changes in sequence), so only one relay of a
                # service publishes at a time; the others find the lock taken and wait for the next tick.
                got = await session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(self._lock_id)))
                if not got:
                    return 0
            rows = (
                await session.scalars(
                    sa.select(model).where(model.published_at.is_(None)).order_by(model.seq).limit(self._batch)
                )
            ).all()
            for row in rows:
                try:
                    await self._bus.publish(Envelope.model_validate_json(row.envelope))
                except Exception as exc:
                    # Keep what was confirmed so far; the rest waits, in order, for the next try.
                    row.attempts += 1
                    failure = exc
                    break
                row.published_at = utcnow()
                published += 1
        if failure is not None:
            raise failure
        return published

    async def run_forever(self) -> None:
        delay = self._poll
        # The flag, not only the cancel, ends the loop: on Python 3.11 a cancel that lands as a
        # publish is confirmed is swallowed inside aiormq (asyncio.wait_for), and the relay would
        # otherwise run on forever and block shutdown.
        while not self._stopping:
            try:
                while await self.publish_pending() == self._batch and not self._stopping:
                    pass
                delay = self._poll
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.failures += 1
                delay = min(max(delay * 2, self._poll), 30.0)
                log.warning("outbox relay could not publish; will retry", error=str(exc), retry_in=delay)
            if self._stopping:
                break
            self.wake.clear()
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that arrives just as the
            # event is set (right after a commit), and stop() then waits for the relay forever.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self.wake.wait()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run_forever(), name=f"outbox-relay-{self._lock_id}")

    async def stop(self) -> None:
        if self._task is not None:
            self._stopping = True
            self.wake.set()
            # Let the current round finish (a cancel mid-query leaves a SQLite connection behind
            # that later reports to a closed loop); cancel only a round that hangs.
            done, _ = await asyncio.wait({self._task}, timeout=5)
            if not done:
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self._stopping = False

    async def backlog(self) -> int:
        async with self._sessions() as session:
            count = await session.scalar(
                sa.select(sa.func.count()).select_from(self._model).where(self._model.published_at.is_(None))
            )
            return int(count or 0)

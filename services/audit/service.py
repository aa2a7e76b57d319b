"""Audit use cases: store an event's rows once, list them newest first, purge what retention lets go."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit import domain
from services.audit.models import AccessEvent
from shared.audit import AccessRecorded
from shared.db import upsert_insert
from shared.problems import Unprocessable

ROWS_PER_INSERT = 1000


async def store(session: AsyncSession, event_id: uuid.UUID, payload: AccessRecorded) -> int:
    """All rows of one event in one INSERT; a row already stored (redelivery) is skipped, not doubled."""
    rows = domain.rows_of(event_id, payload)
    insert = upsert_insert(session)
    stored = 0
    # Both drivers cap a statement's parameters at 32767: at 11 columns a row, 1000 rows a statement.
    for start in range(0, len(rows), ROWS_PER_INSERT):
        statement = (
            insert(AccessEvent)
            .values(rows[start : start + ROWS_PER_INSERT])
            .on_conflict_do_nothing(index_elements=["event_id", "position"])
        )
        result = await session.execute(statement)
        stored += int(result.rowcount)  # type: ignore[attr-defined]
    return stored


async def list_events(
    session: AsyncSession,
    *,
    tenant: str | None,
    patient_pesel: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    at_from: dt.datetime | None = None,
    at_to: dt.datetime | None = None,
    before: int | None = None,
    limit: int,
) -> Sequence[AccessEvent]:
    """Newest first (ties by id); ``before``: the rows older than that row (keyset paging)."""
    scope: list[sa.ColumnElement[bool]] = []
    if tenant is not None:
        scope.append(AccessEvent.tenant == tenant)
    if patient_pesel is not None:
        scope.append(AccessEvent.patient_pesel == patient_pesel)
    query = sa.select(AccessEvent).where(*scope)
    if actor is not None:
        query = query.where(AccessEvent.actor == actor)
    if action is not None:
        query = query.where(AccessEvent.action == action)
    if at_from is not None:
        query = query.where(AccessEvent.at >= at_from)
    if at_to is not None:
        query = query.where(AccessEvent.at < at_to)
    if before is not None:
        # The cursor must be a row the reader may see: another facility's row id says nothing here.
        at = await session.scalar(sa.select(AccessEvent.at).where(AccessEvent.id == before, *scope))
        if at is None:
            raise Unprocessable.field(
                "query.before", f"no audit row {before}: pass the id of a row from a previous page"
            )
        query = query.where(sa.or_(AccessEvent.at < at, sa.and_(AccessEvent.at == at, AccessEvent.id < before)))
    query = query.order_by(AccessEvent.at.desc(), AccessEvent.id.desc()).limit(limit)
    return (await session.scalars(query)).all()


async def purge(session: AsyncSession, cutoff: dt.datetime) -> int:
    """Delete the rows from before ``cutoff``; returns how many. Runs as the maintenance role."""
    result = await session.execute(sa.delete(AccessEvent).where(AccessEvent.at < cutoff))
    return int(result.rowcount)  # type: ignore[attr-defined]

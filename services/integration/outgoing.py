"""The queues of changes for the national systems (P1, CeR): written in the transaction that decides
the change, sent oldest first by a forwarder, retried with backoff while the system is unreachable.

While the system is down the whole queue waits behind its head, so nothing overtakes an earlier
change (a cancellation never reaches the system before its booking). A change the system refuses
for good is ``rejected`` and the queue moves on; the owner hears of it through ``on_settled``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.integration.models import PENDING, REJECTED, SENT, OutgoingMixin
from shared.db import updated_rows, utcnow
from shared.http_client import HttpClientError
from shared.outbox import UnitOfWork

Row = TypeVar("Row", bound=OutgoingMixin)
CLAIM_LEASE_SECONDS = 120  # longer than any call to P1 or CeR may take


def enqueue(
    session: AsyncSession,
    model: type[Row],
    facility_id: str,
    kind: str,
    reference: str,
    payload: dict[str, Any],
    **columns: Any,
) -> None:
    session.add(
        model(  # type: ignore[call-arg]  # the mapped subclass takes its columns as keywords
            facility_id=facility_id,
            kind=kind,
            reference=reference[:64],
            payload=json.dumps(payload, default=str),
            status=PENDING,
            attempts=0,
            next_attempt_at=utcnow(),
            **columns,
        )
    )


# Needed only until the national system has it: the package's access code opens the patient's
# prescriptions with a PESEL, so a delivered change keeps no copy (a refused one keeps it for a retry).
SECRET_PAYLOAD_KEYS = frozenset({"access_code"})


def delivered_payload(payload: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in payload.items() if key not in SECRET_PAYLOAD_KEYS}


@dataclass
class Forwarder(Generic[Row]):
    """``deliver`` sends one change; it raises ``unavailable`` to wait, any other client error to reject."""

    sessions: async_sessionmaker[AsyncSession]
    new_uow: Callable[[], UnitOfWork]
    model: type[Row]
    deliver: Callable[[Row], Awaitable[None]]
    unavailable: type[HttpClientError]
    retry_seconds: float
    retry_max_seconds: float
    # In the transaction that settles a change: sent (error None) or rejected (the reason).
    on_settled: Callable[[UnitOfWork, Row, str | None], Awaitable[None]] | None = None

    # One pass of this process at a time (the periodic one and one started by hand).
    _one_pass: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False, compare=False)

    async def forward_pending(self, now: dt.datetime | None = None) -> int:
        async with self._one_pass:
            sent = 0
            while True:
                now = now or utcnow()
                async with self.sessions() as session:
                    head = await session.scalar(
                        sa.select(self.model).where(self.model.status == PENDING).order_by(self.model.id).limit(1)
                    )
                if head is None or head.next_attempt_at > now:
                    return sent
                if not await self._claim(head):
                    return sent  # another replica is sending the head: nothing may overtake it
                if not await self._send(head):
                    return sent
                sent += 1
                now = None

    async def _claim(self, head: Row) -> bool:
        """Take the head for one attempt: of two replicas only one sends it (a second copy arriving
        late could undo a later change, e.g. book a visit again after its cancellation). The lease
        ends the claim if this process dies mid-send."""
        async with self.new_uow() as uow:
            claimed = await updated_rows(
                uow.session,
                sa.update(self.model)
                .where(
                    self.model.id == head.id,
                    self.model.status == PENDING,
                    self.model.next_attempt_at == head.next_attempt_at,
                )
                .values(next_attempt_at=utcnow() + dt.timedelta(seconds=CLAIM_LEASE_SECONDS)),
            )
            await uow.commit()
        return claimed == 1

    async def _send(self, item: Row) -> bool:
        """True when the item is settled (sent or rejected); False when the system is down."""
        try:
            await self.deliver(item)
        except self.unavailable as exc:
            await self._settle(item.id, error=exc.message, retry=True)
            return False
        except HttpClientError as exc:
            await self._settle(item.id, error=exc.message, retry=False)
            return True
        await self._settle(item.id, error=None, retry=False)
        return True

    async def _settle(self, item_id: int, *, error: str | None, retry: bool) -> None:
        async with self.new_uow() as uow:
            row = await uow.session.get(self.model, item_id, with_for_update=True)
            if row is None or row.status != PENDING:
                return
            row.attempts += 1
            row.last_error = error[:400] if error else None
            if retry:
                delay = min(self.retry_seconds * 2 ** min(row.attempts - 1, 20), self.retry_max_seconds)
                row.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
            else:
                row.status = SENT if error is None else REJECTED
                row.sent_at = utcnow() if error is None else None
                if error is None:
                    row.payload = json.dumps(delivered_payload(json.loads(row.payload)), default=str)
                if self.on_settled is not None:
                    await self.on_settled(uow, row, error)
            await uow.commit()

    async def backlog(self) -> int:
        async with self.sessions() as session:
            count = await session.scalar(sa.select(sa.func.count()).where(self.model.status == PENDING))
        return int(count or 0)

    async def state(self) -> dict[str, object]:
        """For ``/readyz``: what waits (and since when: a sign of an outage) and what was refused."""
        async with self.sessions() as session:
            rows = (
                await session.execute(
                    sa.select(self.model.status, sa.func.count(), sa.func.min(self.model.created_at))
                    .where(self.model.status.in_((PENDING, REJECTED)))
                    .group_by(self.model.status)
                )
            ).all()
        counts = {status: (int(count), oldest) for status, count, oldest in rows}
        pending, oldest = counts.get(PENDING, (0, None))
        waited = None if oldest is None else round((utcnow() - as_utc(oldest)).total_seconds(), 1)
        return {"backlog": pending, "oldest_pending_seconds": waited, "rejected": counts.get(REJECTED, (0, None))[0]}


def as_utc(value: dt.datetime | str) -> dt.datetime:
    """An aggregate over a timestamp column comes back as text from SQLite."""
    moment = dt.datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)

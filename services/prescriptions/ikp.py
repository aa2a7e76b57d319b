"""IKP items wait here until their group is complete, then become one routed request.

A group is complete when its last item is older than the gap plus a grace period (an item of the
same go could still be on its way from P1 until the integration service's next poll) and its last
item arrived here more than the grace period ago (the items of one poll arrive as one event each,
so a group polled late - its items submitted long ago - must not be sealed after its first item). Items are
stored once (P1's item id is the key); sealing claims them with a conditional UPDATE, so two
replicas sealing the same group at once store one request (the other releases its booking).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from itertools import groupby

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.integration.events import IkpItemReceived
from services.prescriptions import domain
from services.prescriptions.models import IkpItem
from services.prescriptions.service import RequestDraft, Requests
from shared.outbox import UnitOfWork
from shared.problems import ProblemError

log = structlog.get_logger("prescriptions.ikp")


async def store_item(session: AsyncSession, facility_id: str, item: IkpItemReceived) -> None:
    if await session.get(IkpItem, item.item_id) is not None:
        return
    session.add(
        IkpItem(
            id=item.item_id,
            facility_id=facility_id,
            patient_pesel=item.patient_pesel,
            doctor_npwz=item.doctor_npwz,
            location_id=item.location_id,
            drug=item.drug,
            packages=item.packages,
            comment=item.comment,
            submitted_at=item.submitted_at,
        )
    )


def _group_key(item: IkpItem) -> tuple[str, str, str, uuid.UUID]:
    return (item.facility_id, item.patient_pesel, item.doctor_npwz, item.location_id)


class Sealer:
    """Turns complete groups of waiting IKP items into requests (run by a ``Periodic``)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        new_uow: Callable[[], UnitOfWork],
        requests: Requests,
        *,
        gap: dt.timedelta,
        grace: dt.timedelta,
        timezone: dt.tzinfo,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
    ) -> None:
        self.sessions = sessions
        self.new_uow = new_uow
        self.requests = requests
        self.gap = gap
        self.grace = grace
        self.timezone = timezone
        self.clock = clock

    async def seal_due(self, now: dt.datetime | None = None) -> int:
        """Seal every complete group; returns the number of requests stored."""
        now = now or self.clock()
        async with self.sessions() as session:
            waiting = list(
                await session.scalars(
                    sa.select(IkpItem)
                    .where(IkpItem.request_id.is_(None))
                    .order_by(IkpItem.facility_id, IkpItem.patient_pesel, IkpItem.doctor_npwz, IkpItem.location_id)
                )
            )
        stored = 0
        for key, rows in groupby(waiting, key=_group_key):
            stored += await self._seal_group(key, list(rows), now)
        return stored

    async def _seal_group(self, key: tuple[str, str, str, uuid.UUID], rows: list[IkpItem], now: dt.datetime) -> int:
        facility_id, pesel, npwz, location_id = key
        # The domain orders by submission time, ties in input order, and returns consecutive runs:
        # the same order here maps each run back to its rows.
        rows = sorted(rows, key=lambda r: (r.submitted_at, r.id))
        grouped = domain.group_ikp_items(
            (domain.IkpItem(pesel, r.drug, r.packages, r.submitted_at, r.comment) for r in rows), self.gap
        )
        stored, offset = 0, 0
        for request in grouped:
            group = rows[offset : offset + len(request.items)]
            offset += len(request.items)
            if now - request.last_submitted_at <= self.gap + self.grace:
                continue  # the patient may still be adding items
            if now - max(r.received_at for r in group) <= self.grace:
                continue  # the rest of the same poll may still be on its way (items arrive one event each)
            draft = RequestDraft(
                facility_id=facility_id,
                patient_pesel=pesel,
                npwz=npwz,
                location_id=location_id,
                source=domain.RequestSource.IKP,
                items=request.items,
                comment=request.comment,
            )
            today = now.astimezone(self.timezone).date()
            try:
                row = await self.requests.accept(
                    self.sessions, self.new_uow, draft, now, today, item_ids=[r.id for r in group]
                )
            except ProblemError as exc:  # scheduling unavailable: the items wait for the next pass
                log.warning("ikp_group_not_sealed", facility_id=facility_id, reason=exc.detail)
                continue
            stored += row is not None
        return stored

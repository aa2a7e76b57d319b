"""The outbox relay: publishes committed events in order, and always lets the process stop."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.scheduling.models import Outbox
from shared.bus import InProcessBus
from shared.db import create_engine, session_factory
from shared.events import Envelope
from shared.outbox import OutboxRelay, UnitOfWork


@pytest.fixture
async def sessions(tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/outbox.db")
    async with engine.begin() as conn:
        await conn.run_sync(Outbox.metadata.create_all, tables=[Outbox.metadata.tables["outbox"]])
    yield session_factory(engine)
    await engine.dispose()


class Recorder(InProcessBus):
    def __init__(self) -> None:
        super().__init__()
        self.published: list[Envelope] = []

    async def publish(self, envelope: Envelope) -> None:
        self.published.append(envelope)


async def write_events(sessions: async_sessionmaker[AsyncSession], *types: str) -> list[Envelope]:
    uow = UnitOfWork(sessions, Outbox)
    written: list[Envelope] = []
    async with uow:
        for event_type in types:
            written.append(Envelope(type=event_type, payload={"n": len(written)}))
            uow.session.add(
                Outbox(event_id=written[-1].id, event_type=event_type, envelope=written[-1].model_dump_json())
            )
        await uow.commit()
    return written


async def test_committed_events_are_published_in_order_and_marked_sent(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    bus = Recorder()
    relay = OutboxRelay(sessions, Outbox, bus, batch_size=2)
    written = await write_events(sessions, "a.b.one", "a.b.two", "a.b.three")
    assert await relay.backlog() == 3
    assert await relay.publish_pending() == 2
    assert await relay.publish_pending() == 1
    assert await relay.publish_pending() == 0
    assert [e.id for e in bus.published] == [e.id for e in written]
    assert await relay.backlog() == 0


async def test_a_rolled_back_unit_of_work_leaves_no_event(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with UnitOfWork(sessions, Outbox) as uow:
        uow.session.add(Outbox(event_id=Envelope(type="a.b.c").id, event_type="a.b.c", envelope="{}"))
        # leaving without commit()
    assert await OutboxRelay(sessions, Outbox, Recorder()).backlog() == 0


async def test_a_failed_publish_keeps_the_event_for_the_next_try(sessions: async_sessionmaker[AsyncSession]) -> None:
    class Down(Recorder):
        async def publish(self, envelope: Envelope) -> None:
            raise ConnectionError("broker down")

    written = await write_events(sessions, "a.b.one", "a.b.two")
    with pytest.raises(ConnectionError):
        await OutboxRelay(sessions, Outbox, Down()).publish_pending()
    bus = Recorder()
    assert await OutboxRelay(sessions, Outbox, bus).publish_pending() == 2
    assert [e.id for e in bus.published] == [e.id for e in written]


@pytest.mark.parametrize("ticks", range(4))
async def test_the_relay_stops_even_when_woken_by_a_commit_at_that_moment(
    sessions: async_sessionmaker[AsyncSession], ticks: int
) -> None:
    relay = OutboxRelay(sessions, Outbox, Recorder(), poll_seconds=30)
    relay.start()
    await asyncio.sleep(0.1)  # the relay has looked once and now sleeps until woken
    relay.wake.set()  # what UnitOfWork.commit() does
    for _ in range(ticks):
        await asyncio.sleep(0)
    stopping = asyncio.ensure_future(relay.stop())
    done, _ = await asyncio.wait({stopping}, timeout=2)
    if not done:  # clean up before failing: a second cancel does get through
        assert relay._task is not None
        relay._task.cancel()
        await stopping
    assert done, "the relay swallowed its cancellation: the service could not shut down"

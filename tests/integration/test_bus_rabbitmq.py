"""RabbitMQBus against the real broker: idempotent consumers, retries, dead letters and replay."""

from __future__ import annotations

import asyncio
import gc
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable

import aio_pika
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from shared.bus import Handler, RabbitMQBus
from shared.db import TYPE_ANNOTATION_MAP, create_engine, new_metadata, session_factory
from shared.events import Envelope
from shared.outbox import InboxMixin, already_processed
from tests.integration.conftest import unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.infra

CONSUMER = "test.ledger"


class Base(DeclarativeBase):
    metadata = new_metadata()
    type_annotation_map = TYPE_ANNOTATION_MAP


class Inbox(Base, InboxMixin):
    pass


class Entry(Base):
    """The consumer's effect: a ledger line per applied event (applying twice would show)."""

    __tablename__ = "ledger"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    event_id: Mapped[uuid.UUID]
    amount: Mapped[int]


BusFactory = Callable[..., RabbitMQBus]


@pytest.fixture
async def make_bus(amqp_url: str) -> AsyncIterator[BusFactory]:
    """``make_bus(exchange=..., **options)`` -> a RabbitMQBus on the test vhost, closed afterwards."""
    buses: list[RabbitMQBus] = []

    def make(exchange: str, **options: float) -> RabbitMQBus:
        values = {"max_attempts": 5, "retry_base_seconds": 0.05, **options}
        bus = RabbitMQBus(
            amqp_url,
            exchange=exchange,
            max_attempts=int(values["max_attempts"]),
            retry_base_seconds=values["retry_base_seconds"],
        )
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()


@pytest.fixture
async def ledger(pg_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(pg_url)
    async with engine.begin() as conn:
        await conn.run_sync(Base.metadata.create_all)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def apply_once(sessions: async_sessionmaker[AsyncSession], envelope: Envelope) -> bool:
    """The idempotent consumer: inbox row and effect in one transaction. True when applied now."""
    async with sessions() as session, session.begin():
        if await already_processed(session, Inbox, CONSUMER, envelope.id):
            return False
        session.add(Entry(event_id=envelope.id, amount=int(envelope.payload["amount"])))
    return True


async def entries(sessions: async_sessionmaker[AsyncSession]) -> Counter[uuid.UUID]:
    async with sessions() as session:
        return Counter((await session.scalars(sa.select(Entry.event_id))).all())


def event(amount: int, event_type: str = "billing.charge.created") -> Envelope:
    return Envelope(type=event_type, facility_id="clinic-a", correlation_id=unique("corr"), payload={"amount": amount})


async def test_a_redelivered_event_is_applied_once(
    make_bus: BusFactory, ledger: async_sessionmaker[AsyncSession]
) -> None:
    exchange = unique("test.idem")
    bus = make_bus(exchange)
    calls: Counter[uuid.UUID] = Counter()
    twice, crashy, plain = event(10), event(20), event(30)

    async def handler(envelope: Envelope) -> None:
        calls[envelope.id] += 1
        await apply_once(ledger, envelope)
        if envelope.id == crashy.id and calls[envelope.id] == 1:
            # Committed, then died before the ack: the broker hands it out again.
            raise RuntimeError("crash between commit and ack")

    name = unique("test.idem-ledger")
    bus.subscribe(name, ["billing.charge.*"], handler)
    await bus.start()
    for envelope in (twice, twice, crashy, plain, twice):
        await bus.publish(envelope)

    async def settled() -> bool:
        return calls[twice.id] >= 3 and calls[crashy.id] >= 2 and calls[plain.id] >= 1

    await eventually(settled, what="every delivery handled")
    await asyncio.sleep(0.3)  # let any retry still in flight land as well

    assert await entries(ledger) == {twice.id: 1, crashy.id: 1, plain.id: 1}
    async with ledger() as session:
        assert await session.scalar(sa.select(sa.func.sum(Entry.amount))) == 60
        inbox = (await session.scalars(sa.select(Inbox.event_id).where(Inbox.consumer == CONSUMER))).all()
    assert sorted(inbox) == sorted([twice.id, crashy.id, plain.id])
    assert await bus.dead_letters(name) == []


async def test_a_message_whose_consumer_dies_before_the_ack_is_redelivered_and_applied_once(
    make_bus: BusFactory, ledger: async_sessionmaker[AsyncSession]
) -> None:
    exchange = unique("test.crash")
    name = unique("test.crash-ledger")
    committed, release = asyncio.Event(), asyncio.Event()

    async def dying(envelope: Envelope) -> None:
        await apply_once(ledger, envelope)
        committed.set()
        await release.wait()  # the process is killed here, before the ack

    first = make_bus(exchange)
    first.subscribe(name, ["billing.#"], dying)
    await first.start()
    envelope = event(42)
    await first.publish(envelope)
    await asyncio.wait_for(committed.wait(), timeout=10)
    await first.close()  # the connection goes away with the message unacknowledged
    release.set()

    redelivered: list[Envelope] = []

    async def survivor(envelope: Envelope) -> None:
        redelivered.append(envelope)
        await apply_once(ledger, envelope)

    second = make_bus(exchange)
    second.subscribe(name, ["billing.#"], survivor)
    await second.start()

    async def got_it() -> bool:
        return len(redelivered) >= 1

    await eventually(got_it, what="the unacknowledged message to come back")
    assert redelivered[0] == envelope
    assert await entries(ledger) == {envelope.id: 1}


async def test_a_message_that_always_fails_is_dead_lettered_then_replayed(make_bus: BusFactory) -> None:
    exchange = unique("test.dlq")
    bus = make_bus(exchange, max_attempts=3, retry_base_seconds=0.05)
    name = unique("test.dlq-consumer")
    attempts: Counter[uuid.UUID] = Counter()
    handled: list[Envelope] = []
    healthy = False

    async def handler(envelope: Envelope) -> None:
        attempts[envelope.id] += 1
        if not healthy:
            raise RuntimeError("the downstream system refuses it")
        handled.append(envelope)

    bus.subscribe(name, ["billing.charge.created"], handler)
    await bus.start()
    poison = event(7)
    await bus.publish(poison)

    async def parked() -> bool:
        return len(await bus.dead_letters(name)) == 1

    await eventually(parked, what=f"the message in {name}.dead")
    assert attempts[poison.id] == 3  # max_attempts, then no more
    await asyncio.sleep(0.4)  # longer than every retry delay: nothing is retried after parking
    assert attempts[poison.id] == 3
    assert handled == []

    # Reading the dead letters does not consume them.
    letters = await bus.dead_letters(name)
    assert letters == [poison]
    assert letters[0].payload == {"amount": 7} and letters[0].correlation_id == poison.correlation_id
    assert await bus.dead_letters(name) == [poison]

    healthy = True
    assert await bus.replay_dead_letters(name) == 1

    async def replayed() -> bool:
        return len(handled) == 1

    await eventually(replayed, what="the replayed message to be handled")
    assert handled == [poison]
    assert attempts[poison.id] == 4
    assert await bus.dead_letters(name) == []


async def test_each_subscription_gets_its_own_copy_by_topic(make_bus: BusFactory) -> None:
    exchange = unique("test.topic")
    bus = make_bus(exchange)
    seen: dict[str, list[str]] = {"all": [], "bookings": [], "created": []}

    def recorder(key: str) -> Handler:
        async def handler(envelope: Envelope) -> None:
            seen[key].append(envelope.type)

        return handler

    bus.subscribe(unique("test.all"), ["scheduling.#"], recorder("all"))
    bus.subscribe(unique("test.bookings"), ["scheduling.booking.*"], recorder("bookings"))
    bus.subscribe(unique("test.created"), ["*.*.created"], recorder("created"))
    await bus.start()
    for kind in ("scheduling.booking.created", "scheduling.schedule.published", "scheduling.booking.cancelled"):
        await bus.publish(Envelope(type=kind))
    await bus.publish(Envelope(type="billing.charge.created"))

    async def delivered() -> bool:
        return len(seen["all"]) == 3 and len(seen["bookings"]) == 2 and len(seen["created"]) == 2

    await eventually(delivered, what="every subscription's copy")
    assert sorted(seen["bookings"]) == ["scheduling.booking.cancelled", "scheduling.booking.created"]
    assert sorted(seen["created"]) == ["billing.charge.created", "scheduling.booking.created"]
    assert await bus.ready()


async def test_closing_the_bus_lets_the_deliveries_in_hand_finish_and_logs_no_error(
    make_bus: BusFactory, amqp_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 22: a stop used to close the connection under the running handlers (their work cut
    off, asyncio's "Future exception was never retrieved" at error level). Now the consumers are
    cancelled, the deliveries in hand finish and are acked, then the channels and the connection
    close; and nothing reconnects afterwards."""
    exchange = unique("test.close")
    bus = make_bus(exchange)
    name = unique("test.close-consumer")
    entered: list[uuid.UUID] = []
    finished: list[uuid.UUID] = []

    async def slow(envelope: Envelope) -> None:
        entered.append(envelope.id)
        await asyncio.sleep(0.3)
        finished.append(envelope.id)

    bus.subscribe(name, ["billing.#"], slow)
    await bus.start()
    sent = [event(n) for n in range(5)]
    for envelope in sent:
        await bus.publish(envelope)

    async def all_in_hand() -> bool:
        return len(entered) == len(sent)

    await eventually(all_in_hand, what="every delivery in a handler")
    caplog.set_level(logging.WARNING)
    await bus.close()
    assert sorted(finished) == sorted(e.id for e in sent)
    assert not await bus.ready()  # closed for good: a late probe opens no connection
    gc.collect()  # an unretrieved failed future complains when it is collected
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []

    # Acked before the close: nothing waits in the queue to be handled a second time.
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        queue = await channel.declare_queue(name, passive=True)
        assert queue.declaration_result.message_count == 0
    finally:
        await connection.close()

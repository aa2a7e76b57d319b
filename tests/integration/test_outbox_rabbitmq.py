"""The transactional outbox on PostgreSQL, relayed to the real RabbitMQ, through a broker outage."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import pytest

from services.scheduling.app import create_app
from shared.app import ServiceContext
from shared.bus import RabbitMQBus
from shared.events import Envelope
from tests.conftest import FACILITY, OTHER_PESEL, PESEL, token_for
from tests.integration.conftest import pg_settings, scalar, seed_schedule, serving, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.infra


@contextlib.asynccontextmanager
async def consuming(amqp_url: str, exchange: str, patterns: list[str]) -> AsyncIterator[list[Envelope]]:
    """A test consumer on its own RabbitMQBus subscription; yields the envelopes as they arrive."""
    bus = RabbitMQBus(amqp_url, exchange=exchange, retry_base_seconds=0.05)
    received: list[Envelope] = []

    async def handler(envelope: Envelope) -> None:
        received.append(envelope)

    bus.subscribe(unique("test.consumer"), patterns, handler)
    await bus.start()
    try:
        yield received
    finally:
        await bus.close()


def headers_for(settings_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings_token}"}


async def test_a_booking_event_reaches_a_rabbitmq_consumer_with_its_ids(
    tmp_path: Path, pg_url: str, amqp_url: str
) -> None:
    settings = pg_settings(tmp_path, pg_url, amqp_url)
    admin = headers_for(token_for(settings, "facility_admin"))
    desk = headers_for(token_for(settings, "registrar"))

    # A plain AMQP queue as well, to see the message's own properties.
    connection = await aio_pika.connect(amqp_url)
    try:
        channel = await connection.channel()
        exchange = await channel.declare_exchange(settings.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        raw = await channel.declare_queue(exclusive=True)
        await raw.bind(exchange, routing_key="scheduling.booking.created")

        app = create_app(settings)
        ctx: ServiceContext = app.state.ctx
        async with (
            consuming(amqp_url, settings.events_exchange, ["scheduling.booking.created"]) as received,
            serving(app) as client,
        ):
            seeded = await seed_schedule(client, admin, desk)
            slot = seeded["slots"][0]
            answer = await client.post(
                "/api/v1/scheduling/bookings",
                json={"slot_id": slot["id"], "patient_pesel": PESEL, "source": "desk"},
                headers={**desk, "X-Request-ID": "trace-booking-1"},
            )
            assert answer.status_code == 201, answer.text
            booking = answer.json()

            async def arrived() -> bool:
                return len(received) >= 1

            await eventually(arrived, what="the booking.created event at the consumer")
            assert await ctx.relay.backlog() == 0

        assert len(received) == 1
        envelope = received[0]
        assert envelope.type == "scheduling.booking.created"
        assert envelope.correlation_id == "trace-booking-1"
        assert envelope.facility_id == FACILITY
        assert envelope.payload["booking_id"] == booking["id"]
        assert envelope.payload["slot_id"] == slot["id"]
        assert envelope.payload["practitioner_id"] == seeded["practitioner_id"]
        assert envelope.payload["patient_pesel"] == PESEL
        assert envelope.payload["source"] == "desk"

        message = await raw.get(timeout=5, fail=True)
        assert message is not None
        await message.ack()
        assert message.message_id == str(envelope.id)
        assert message.correlation_id == "trace-booking-1"
        assert message.type == "scheduling.booking.created"
        assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
        assert Envelope.from_bytes(message.body) == envelope
    finally:
        await connection.close()

    # The outbox row is the same event, now marked as published.
    row_id = await scalar(
        pg_url,
        "SELECT event_id FROM outbox WHERE event_type = 'scheduling.booking.created' AND published_at IS NOT NULL",
    )
    assert row_id == envelope.id


# ----------------------------------------------------------------------------- broker outage


class TcpProxy:
    """Stands between the service and RabbitMQ; ``cut()`` is an outage, ``restore()`` ends it."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.WriteTransport] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._transports |= {writer.transport, upstream_writer.transport}
        await asyncio.gather(self._pipe(reader, upstream_writer), self._pipe(upstream_reader, writer))

    @staticmethod
    async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        try:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            sink.transport.abort()

    async def cut(self) -> None:
        """Refuse new connections and drop the open ones, as a dead broker would."""
        if self._server is not None:
            self._server.close()
            for transport in self._transports:
                transport.abort()
            self._transports.clear()
            await self._server.wait_closed()
            self._server = None

    async def restore(self) -> None:
        await self.start()

    def url_for(self, amqp_url: str) -> str:
        """The broker's URL through the proxy (reconnecting every half second, to keep the test short)."""
        parts = urlsplit(amqp_url)
        credentials = parts.netloc.rsplit("@", 1)[0]
        netloc = f"{credentials}@127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc, query="reconnect_interval=0.5"))


@pytest.fixture
async def proxy(amqp_url: str) -> AsyncIterator[TcpProxy]:
    target = urlsplit(amqp_url)
    tcp = TcpProxy(target.hostname or "127.0.0.1", target.port or 5672)
    await tcp.start()
    try:
        yield tcp
    finally:
        await tcp.cut()


async def test_the_relay_keeps_events_through_a_broker_outage_and_publishes_them_in_order(
    tmp_path: Path, pg_url: str, amqp_url: str, proxy: TcpProxy
) -> None:
    settings = pg_settings(tmp_path, pg_url, proxy.url_for(amqp_url), outbox_poll_seconds=0.05)
    admin = headers_for(token_for(settings, "facility_admin"))
    desk = headers_for(token_for(settings, "registrar"))

    app = create_app(settings)
    ctx: ServiceContext = app.state.ctx
    async with (
        consuming(amqp_url, settings.events_exchange, ["scheduling.#"]) as received,
        serving(app) as client,
    ):
        seeded = await seed_schedule(client, admin, desk)

        async def caught_up() -> bool:
            return await ctx.relay.backlog() == 0 and len(received) >= 1

        await eventually(caught_up, what="the schedule.published event before the outage")
        before = {e.id for e in received}

        await proxy.cut()
        failures = ctx.relay.failures
        slots = [s["id"] for s in seeded["slots"]]
        booking_ids = []
        for slot_id, pesel in zip(slots, (PESEL, OTHER_PESEL, PESEL), strict=True):
            answer = await client.post(
                "/api/v1/scheduling/bookings",
                json={"slot_id": slot_id, "patient_pesel": pesel, "source": "desk"},
                headers=desk,
            )
            assert answer.status_code == 201, answer.text  # the service keeps working without the broker
            booking_ids.append(answer.json()["id"])
        cancelled = await client.post(f"/api/v1/scheduling/bookings/{booking_ids[1]}/cancel", headers=desk)
        assert cancelled.status_code == 200, cancelled.text
        again = await client.post(
            "/api/v1/scheduling/bookings",
            json={"slot_id": slots[1], "patient_pesel": PESEL, "source": "desk"},
            headers=desk,
        )
        assert again.status_code == 201, again.text
        other_day = await client.post(
            "/api/v1/scheduling/schedules",
            json={
                "practitioner_id": seeded["practitioner_id"],
                "location_id": seeded["location_id"],
                "work_type_id": seeded["work_type_id"],
                "date": "2030-03-05",
                "start_time": "10:00",
                "end_time": "11:00",
                "visit_minutes": 30,
            },
            headers=desk,
        )
        assert other_day.status_code == 201, other_day.text

        async def relay_tried() -> bool:
            return ctx.relay.failures > failures

        await eventually(relay_tried, what="the relay to try (and fail) during the outage")
        # Six scheduling events and the audit records of the four bookings and the cancellation.
        assert await ctx.relay.backlog() == 11
        readiness = await client.get("/readyz")
        assert readiness.status_code == 503
        assert readiness.json()["checks"]["broker"] == "unreachable"
        assert readiness.json()["checks"]["outbox_backlog"] == 11
        await asyncio.sleep(0.3)
        assert {e.id for e in received} == before  # nothing got through

        await proxy.restore()

        async def drained() -> bool:
            return await ctx.relay.backlog() == 0

        await eventually(drained, interval=0.1, what="the outbox backlog to drain after the outage")
        outbox = [
            uuid.UUID(str(row))
            for row in (
                await scalar(
                    pg_url,
                    "SELECT array_agg(event_id::text ORDER BY seq) FROM outbox WHERE event_type LIKE 'scheduling.%'",
                )  # every scheduling event, in order (the consumer binds scheduling.#)
            )
        ]

        async def all_arrived() -> bool:
            return {e.id for e in received} >= set(outbox)

        await eventually(all_arrived, what="every outbox event at the consumer")
        readiness = await client.get("/readyz")
        assert readiness.status_code == 200
        assert readiness.json()["checks"]["outbox_backlog"] == 0

    assert len(outbox) == 7
    deduplicated = list(dict.fromkeys(e.id for e in received))
    assert deduplicated == outbox
    types = [next(e.type for e in received if e.id == i) for i in outbox]
    assert types == [
        "scheduling.schedule.published",
        "scheduling.booking.created",
        "scheduling.booking.created",
        "scheduling.booking.created",
        "scheduling.booking.cancelled",
        "scheduling.booking.created",
        "scheduling.schedule.published",
    ]


async def test_an_event_is_written_only_with_its_state_change(tmp_path: Path, pg_url: str, amqp_url: str) -> None:
    """A refused booking (409) leaves neither a booking nor an event behind."""
    settings = pg_settings(tmp_path, pg_url, amqp_url)
    admin = headers_for(token_for(settings, "facility_admin"))
    desk = headers_for(token_for(settings, "registrar"))
    async with serving(create_app(settings)) as client:
        seeded = await seed_schedule(client, admin, desk)
        body = {"slot_id": seeded["slots"][0]["id"], "patient_pesel": PESEL, "source": "desk"}
        first = await client.post("/api/v1/scheduling/bookings", json=body, headers=desk)
        second = await client.post(
            "/api/v1/scheduling/bookings", json={**body, "patient_pesel": OTHER_PESEL}, headers=desk
        )
        assert (first.status_code, second.status_code) == (201, 409)
    created = await scalar(pg_url, "SELECT count(*) FROM outbox WHERE event_type = 'scheduling.booking.created'")
    bookings = await scalar(pg_url, "SELECT count(*) FROM bookings")
    assert (created, bookings) == (1, 1)

"""Topic matching (AMQP semantics), retry backoff, the event envelope and the in-process bus."""

from __future__ import annotations

import datetime as dt
import json
import uuid

import pytest
from pydantic import ValidationError

from shared.bus import InProcessBus, backoff_delays, matches
from shared.events import Envelope
from tests.support.waiting import eventually


@pytest.mark.parametrize(
    ("pattern", "event_type", "expected"),
    [
        ("scheduling.booking.created", "scheduling.booking.created", True),
        ("scheduling.booking.created", "scheduling.booking.cancelled", False),
        ("scheduling.booking.*", "scheduling.booking.created", True),
        ("*.booking.created", "scheduling.booking.created", True),
        ("*.*.created", "scheduling.booking.created", True),
        # `*` is exactly one word, as in RabbitMQ
        ("scheduling.*", "scheduling.booking.created", False),
        ("scheduling.*.created", "scheduling.booking.moved.created", False),
        ("*.booking.created", "booking.created", False),
        # `#` is zero or more words
        ("scheduling.#", "scheduling.booking.created", True),
        ("scheduling.#", "scheduling", True),
        ("scheduling.#", "schedulingx.booking.created", False),
        ("scheduling.#", "prescriptions.request.created", False),
        ("#", "scheduling.booking.created", True),
        ("#.created", "scheduling.booking.created", True),
        ("#.created", "scheduling.booking.cancelled", False),
        ("scheduling.#.created", "scheduling.booking.created", True),
        ("scheduling.#.created", "scheduling.created", True),
        ("#.booking.#", "scheduling.booking.needs_rescheduling", True),
        # no accidental substring or prefix matches
        ("scheduling.booking", "scheduling.booking.created", False),
        ("scheduling.booking.created", "scheduling.booking.created.extra", False),
    ],
)
def test_topic_patterns_match_like_rabbitmq(pattern: str, event_type: str, expected: bool) -> None:
    assert matches(pattern, event_type) is expected


def test_backoff_grows_fourfold_and_stops_at_five_minutes() -> None:
    assert backoff_delays(1.0, 5) == [1.0, 4.0, 16.0, 64.0]
    assert backoff_delays(0.5, 3) == [0.5, 2.0]
    assert backoff_delays(100.0, 4) == [100.0, 300.0, 300.0]
    assert backoff_delays(1.0, 1) == []  # one attempt: no retry at all


def test_an_envelope_survives_the_wire_unchanged() -> None:
    envelope = Envelope(
        type="scheduling.booking.created",
        facility_id="clinic-a",
        correlation_id="req-1",
        payload={"booking_id": str(uuid.uuid4()), "start": "2030-03-04T07:00:00Z", "items": [1, 2]},
    )
    raw = envelope.to_bytes()
    assert json.loads(raw)["type"] == "scheduling.booking.created"
    again = Envelope.from_bytes(raw)
    assert again == envelope
    assert again.occurred_at.tzinfo is not None


def test_each_envelope_gets_its_own_id_and_an_aware_timestamp() -> None:
    first = Envelope(type="scheduling.booking.created")
    second = Envelope(type="scheduling.booking.created")
    assert first.id != second.id
    assert abs(first.occurred_at - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)


@pytest.mark.parametrize("event_type", ["booking", "scheduling.booking", "Scheduling.Booking.Created", "a..b.c", ""])
def test_malformed_event_types_are_refused(event_type: str) -> None:
    with pytest.raises(ValidationError):
        Envelope(type=event_type)


def test_unreadable_bytes_are_refused() -> None:
    with pytest.raises(ValueError):
        Envelope.from_bytes(b"not json")


def test_an_envelope_is_immutable() -> None:
    envelope = Envelope(type="scheduling.booking.created")
    with pytest.raises(ValidationError):
        envelope.type = "scheduling.booking.cancelled"  # type: ignore[misc]


# ----------------------------------------------------------------------------- in-process bus


async def test_the_in_process_bus_delivers_only_to_matching_subscriptions() -> None:
    bus = InProcessBus(max_attempts=2, retry_base_seconds=0.01)
    bookings: list[str] = []
    everything: list[str] = []

    async def on_booking(envelope: Envelope) -> None:
        bookings.append(envelope.type)

    async def on_anything(envelope: Envelope) -> None:
        everything.append(envelope.type)

    bus.subscribe("test.bookings", ["scheduling.booking.*"], on_booking)
    bus.subscribe("test.all", ["#"], on_anything)
    await bus.start()
    try:
        await bus.publish(Envelope(type="scheduling.booking.created"))
        await bus.publish(Envelope(type="scheduling.schedule.published"))
        await bus.publish(Envelope(type="scheduling.booking.moved.twice"))
        await eventually(lambda: len(everything) == 3, what="three events delivered")
    finally:
        await bus.close()
    assert bookings == ["scheduling.booking.created"]
    assert sorted(everything) == [
        "scheduling.booking.created",
        "scheduling.booking.moved.twice",
        "scheduling.schedule.published",
    ]


async def test_a_failing_handler_is_retried_then_parked_and_can_be_replayed() -> None:
    bus = InProcessBus(max_attempts=3, retry_base_seconds=0.01)
    attempts: list[uuid.UUID] = []
    healthy = False

    async def flaky(envelope: Envelope) -> None:
        attempts.append(envelope.id)
        if not healthy:
            raise RuntimeError("downstream is down")

    bus.subscribe("test.flaky", ["scheduling.#"], flaky)
    await bus.start()
    try:
        envelope = Envelope(type="scheduling.booking.created")
        await bus.publish(envelope)

        async def parked() -> bool:
            return bool(await bus.dead_letters("test.flaky"))

        await eventually(parked, what="the event parked")
        assert attempts == [envelope.id] * 3
        assert [e.id for e in await bus.dead_letters("test.flaky")] == [envelope.id]

        healthy = True
        assert await bus.replay_dead_letters("test.flaky") == 1
        await eventually(lambda: len(attempts) == 4, what="the replayed attempt")
        assert len(attempts) == 4
        assert await bus.dead_letters("test.flaky") == []
    finally:
        await bus.close()

"""The event bus: one interface, two transports (RabbitMQ and in-process).

Both give at-least-once delivery to every subscription, retry a failing handler with exponential
backoff and, after ``max_attempts``, park the message in a dead-letter queue an operator can read
and replay. Handlers must therefore be idempotent (see ``shared.inbox``).
"""

from __future__ import annotations

import abc
import asyncio
import collections
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aio_pika
import structlog
from aio_pika.abc import (
    AbstractChannel,
    AbstractExchange,
    AbstractIncomingMessage,
    AbstractQueue,
    AbstractRobustConnection,
)

from shared.events import Envelope
from shared.logging import bind_request_id

Handler = Callable[[Envelope], Awaitable[None]]
log = structlog.get_logger("bus")

DEAD_LETTER_EXCHANGE = "ehealth.dead-letter"
ATTEMPT_HEADER = "x-attempt"
CLOSE_GRACE_SECONDS = 5.0  # for the deliveries in hand when the bus closes
CANCEL_GRACE_SECONDS = 2.0  # for telling the broker to stop delivering


def backoff_delays(base_seconds: float, max_attempts: int) -> list[float]:
    """Delay before each retry: base, 4×base, 16×base… capped at five minutes."""
    return [min(base_seconds * 4**i, 300.0) for i in range(max_attempts - 1)]


def matches(pattern: str, event_type: str) -> bool:
    """Topic match with AMQP semantics: `*` exactly one word, `#` zero or more words."""
    return _words_match(tuple(pattern.split(".")), tuple(event_type.split(".")))


def _words_match(pattern: tuple[str, ...], words: tuple[str, ...]) -> bool:
    if not pattern:
        return not words
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return any(_words_match(rest, words[skip:]) for skip in range(len(words) + 1))
    return bool(words) and head in ("*", words[0]) and _words_match(rest, words[1:])


@dataclass
class Subscription:
    name: str  # unique per consumer, e.g. "notifications.booking-created"
    patterns: Sequence[str]
    handler: Handler


class EventBus(abc.ABC):
    def __init__(self, *, max_attempts: int, retry_base_seconds: float) -> None:
        self.max_attempts = max_attempts
        self.retry_base_seconds = retry_base_seconds
        self.subscriptions: list[Subscription] = []
        self.delays = backoff_delays(retry_base_seconds, max_attempts)
        # Messages this process parked, per subscription, since it started (``bus_dead_letters_total``);
        # a replay does not lower it: it counts what happened, not what is parked now.
        self.dead_lettered: collections.Counter[str] = collections.Counter()

    def subscribe(self, name: str, patterns: Sequence[str], handler: Handler) -> None:
        self.subscriptions.append(Subscription(name, list(patterns), handler))

    @abc.abstractmethod
    async def start(self) -> None:
        """Connect and begin consuming every subscription registered so far."""

    @abc.abstractmethod
    async def publish(self, envelope: Envelope) -> None:
        """Return only once the broker has taken responsibility for the message."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def ready(self) -> bool: ...

    @abc.abstractmethod
    async def dead_letters(self, subscription: str) -> list[Envelope]:
        """The messages parked for a subscription, oldest first (read without removing)."""

    def retry_delay(self, subscription: str, envelope: Envelope, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None when the message must be dead-lettered."""
        if attempt >= self.max_attempts:
            log.error(
                "event dead-lettered",
                subscription=subscription,
                event_id=str(envelope.id),
                attempts=attempt,
                exc_info=True,
            )
            return None
        delay = self.delays[attempt - 1]
        log.warning(
            "handler failed, retrying",
            subscription=subscription,
            event_id=str(envelope.id),
            attempt=attempt,
            delay=delay,
            exc_info=True,
        )
        return delay


async def _deliver(subscription: Subscription, envelope: Envelope) -> None:
    """The handler runs under the request id that caused the event, so its logs (and this line)
    carry the id the gateway gave the request: one id from the front end to every consumer."""
    with bind_request_id(envelope.correlation_id):
        await subscription.handler(envelope)
        log.info("event handled", subscription=subscription.name, type=envelope.type, event_id=str(envelope.id))


# --------------------------------------------------------------------------- in-process


@dataclass
class _LocalQueue:
    subscription: Subscription
    queue: asyncio.Queue[tuple[Envelope, int]] = field(default_factory=asyncio.Queue)
    dead: list[Envelope] = field(default_factory=list)


class InProcessBus(EventBus):
    """The embedded default: the same semantics as RabbitMQ, inside one process.

    Messages live in memory, so a process crash loses what was published but not yet handled; the
    outbox keeps everything not yet published. Use RabbitMQ where that matters.
    """

    def __init__(self, *, max_attempts: int = 5, retry_base_seconds: float = 1.0) -> None:
        super().__init__(max_attempts=max_attempts, retry_base_seconds=retry_base_seconds)
        self._queues: dict[str, _LocalQueue] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._started = False

    def subscribe(self, name: str, patterns: Sequence[str], handler: Handler) -> None:
        super().subscribe(name, patterns, handler)
        self._queues[name] = _LocalQueue(self.subscriptions[-1])
        if self._started:
            self._spawn(self._consume(self._queues[name]))

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        for local in self._queues.values():
            self._spawn(self._consume(local))

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def publish(self, envelope: Envelope) -> None:
        for local in self._queues.values():
            if any(matches(p, envelope.type) for p in local.subscription.patterns):
                local.queue.put_nowait((envelope, 1))

    async def _consume(self, local: _LocalQueue) -> None:
        while True:
            envelope, attempt = await local.queue.get()
            try:
                await _deliver(local.subscription, envelope)
            except Exception:
                self._retry_or_park(local, envelope, attempt)
            finally:
                local.queue.task_done()

    def _retry_or_park(self, local: _LocalQueue, envelope: Envelope, attempt: int) -> None:
        delay = self.retry_delay(local.subscription.name, envelope, attempt)
        if delay is None:
            local.dead.append(envelope)
            self.dead_lettered[local.subscription.name] += 1
            return
        self._spawn(self._requeue_later(local, envelope, attempt + 1, delay))

    async def _requeue_later(self, local: _LocalQueue, envelope: Envelope, attempt: int, delay: float) -> None:
        await asyncio.sleep(delay)
        local.queue.put_nowait((envelope, attempt))

    async def drain(self) -> None:
        """Wait until every queue is empty (tests and the demo use this)."""
        for local in self._queues.values():
            await local.queue.join()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._started = False

    async def ready(self) -> bool:
        return True

    async def dead_letters(self, subscription: str) -> list[Envelope]:
        return list(self._queues[subscription].dead)

    async def replay_dead_letters(self, subscription: str) -> int:
        local = self._queues[subscription]
        parked, local.dead = local.dead, []
        for envelope in parked:
            local.queue.put_nowait((envelope, 1))
        return len(parked)


# --------------------------------------------------------------------------- RabbitMQ


class RabbitMQBus(EventBus):
    """aio-pika on a durable topic exchange, publisher confirms and quorum queues.

    Per subscription: a quorum queue ``<name>`` bound to its patterns; failures go to delay queues
    ``<name>.retry.<ms>`` whose TTL dead-letters them back, and after ``max_attempts`` to
    ``<name>.dead``. ``x-delivery-limit`` on the quorum queue is the safety net for a message that
    kills its consumer before it can be retried: RabbitMQ then dead-letters it by itself.
    """

    def __init__(
        self,
        url: str,
        *,
        exchange: str = "ehealth.events",
        max_attempts: int = 5,
        retry_base_seconds: float = 1.0,
        prefetch: int = 32,
    ) -> None:
        super().__init__(max_attempts=max_attempts, retry_base_seconds=retry_base_seconds)
        self.url = url
        self.exchange_name = exchange
        self.prefetch = prefetch
        self._connection: AbstractRobustConnection | None = None
        self._publish_channel: AbstractChannel | None = None
        self._exchange: AbstractExchange | None = None
        self._publish_lock = asyncio.Lock()
        self._consume_channel: AbstractChannel | None = None
        self._consumers: list[tuple[AbstractQueue, str]] = []
        # The deliveries being handled now: close() lets them finish (ack, retry publish) first.
        self._handling: set[asyncio.Task[Any]] = set()
        # Set by close(): a handler or a readiness probe still running must not open a new connection
        # that nobody would close (its pending futures then die unretrieved at exit).
        self._closed = False

    async def _connect(self) -> AbstractRobustConnection:
        if self._closed:
            raise ConnectionError("the event bus is closed")
        if self._connection is None or self._connection.is_closed:
            self._connection = await aio_pika.connect_robust(self.url, timeout=5)
        return self._connection

    async def _publisher(self) -> AbstractExchange:
        connection = await self._connect()
        if self._publish_channel is None or self._publish_channel.is_closed or self._exchange is None:
            self._publish_channel = await connection.channel(publisher_confirms=True)
            self._exchange = await self._publish_channel.declare_exchange(
                self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
            )
        return self._exchange

    async def publish(self, envelope: Envelope) -> None:
        message = aio_pika.Message(
            body=envelope.to_bytes(),
            message_id=str(envelope.id),
            type=envelope.type,
            content_type="application/json",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            correlation_id=envelope.correlation_id,
            timestamp=envelope.occurred_at,
        )
        async with self._publish_lock:
            exchange = await self._publisher()
            # mandatory: an event no queue is bound to is still accepted (confirmed) by the broker.
            await exchange.publish(message, routing_key=envelope.type, timeout=10)

    async def start(self) -> None:
        self._closed = False
        connection = await self._connect()
        await self._publisher()
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=self.prefetch)
        self._consume_channel = channel
        dead_exchange = await channel.declare_exchange(DEAD_LETTER_EXCHANGE, aio_pika.ExchangeType.DIRECT, durable=True)
        for subscription in self.subscriptions:
            queue = await self._declare_topology(channel, dead_exchange, subscription)
            self._consumers.append((queue, await queue.consume(self._on_message_for(subscription))))

    async def _declare_topology(
        self, channel: AbstractChannel, dead_exchange: AbstractExchange, subscription: Subscription
    ) -> AbstractQueue:
        name = subscription.name
        exchange = await channel.declare_exchange(self.exchange_name, aio_pika.ExchangeType.TOPIC, durable=True)
        dead = await channel.declare_queue(f"{name}.dead", durable=True, arguments={"x-queue-type": "quorum"})
        await dead.bind(dead_exchange, routing_key=name)
        queue = await channel.declare_queue(
            name,
            durable=True,
            arguments={
                "x-queue-type": "quorum",
                "x-delivery-limit": self.max_attempts,
                "x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                "x-dead-letter-routing-key": name,
            },
        )
        for pattern in subscription.patterns:
            await queue.bind(exchange, routing_key=pattern)
        for delay in self.delays:
            await channel.declare_queue(
                self._retry_queue(name, delay),
                durable=True,
                arguments={
                    "x-message-ttl": int(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": name,
                },
            )
        return queue

    @staticmethod
    def _retry_queue(name: str, delay: float) -> str:
        return f"{name}.retry.{int(delay * 1000)}ms"

    def _on_message_for(self, subscription: Subscription) -> Callable[[AbstractIncomingMessage], Awaitable[None]]:
        async def on_message(message: AbstractIncomingMessage) -> None:
            task = asyncio.current_task()
            if task is not None:
                self._handling.add(task)
                task.add_done_callback(self._handling.discard)
            try:
                await handle(message)
            except Exception:
                if not self._closed:
                    raise
                # Still unacked: the broker hands it out again once a consumer is back.
                log.info("delivery left to the broker: the bus closed", subscription=subscription.name)

        async def handle(message: AbstractIncomingMessage) -> None:
            try:
                envelope = Envelope.from_bytes(message.body)
            except ValueError:
                log.error(
                    "unreadable message dead-lettered", subscription=subscription.name, message_id=message.message_id
                )
                await message.reject(requeue=False)
                self.dead_lettered[subscription.name] += 1
                return
            attempt = int((message.headers or {}).get(ATTEMPT_HEADER, 1))  # type: ignore[arg-type]
            try:
                await _deliver(subscription, envelope)
            except Exception:
                await self._retry_or_park(subscription, message, envelope, attempt)
            else:
                await message.ack()

        return on_message

    async def _retry_or_park(
        self, subscription: Subscription, message: AbstractIncomingMessage, envelope: Envelope, attempt: int
    ) -> None:
        name = subscription.name
        delay = self.retry_delay(name, envelope, attempt)
        if delay is None:
            await message.reject(requeue=False)  # the queue's dead-letter exchange parks it
            self.dead_lettered[name] += 1
            return
        retry = aio_pika.Message(
            body=message.body,
            message_id=message.message_id,
            type=message.type,
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            correlation_id=message.correlation_id,
            headers={**(message.headers or {}), ATTEMPT_HEADER: attempt + 1},
        )
        # Publish the retry (confirmed) before acking: a crash in between duplicates, never loses.
        async with self._publish_lock:
            await self._publisher()
            assert self._publish_channel is not None
            await self._publish_channel.default_exchange.publish(
                retry, routing_key=self._retry_queue(name, delay), timeout=10
            )
        await message.ack()

    async def dead_letters(self, subscription: str) -> list[Envelope]:
        connection = await self._connect()
        channel = await connection.channel()
        try:
            queue = await channel.declare_queue(
                f"{subscription}.dead", durable=True, arguments={"x-queue-type": "quorum"}
            )
            found: list[Envelope] = []
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                found.append(Envelope.from_bytes(message.body))
            # Closing the channel without acking returns every message to the dead-letter queue.
            return found
        finally:
            await channel.close()

    async def replay_dead_letters(self, subscription: str) -> int:
        connection = await self._connect()
        channel = await connection.channel(publisher_confirms=True)
        count = 0
        try:
            queue = await channel.declare_queue(
                f"{subscription}.dead", durable=True, arguments={"x-queue-type": "quorum"}
            )
            while (message := await queue.get(no_ack=False, fail=False)) is not None:
                await channel.default_exchange.publish(
                    aio_pika.Message(
                        body=message.body,
                        message_id=message.message_id,
                        type=message.type,
                        content_type=message.content_type,
                        correlation_id=message.correlation_id,  # the request that caused it, for tracing
                        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    ),
                    routing_key=subscription,
                )
                await message.ack()
                count += 1
            return count
        finally:
            await channel.close()

    async def ready(self) -> bool:
        try:
            await asyncio.wait_for(self._publisher(), timeout=2)
        except Exception:
            return False
        return True

    async def close(self) -> None:
        """Stop in the order that leaves nothing dangling: the consumers are cancelled (no new
        deliveries) while their channel is open, the deliveries in hand finish their ack or retry
        publish (up to ``CLOSE_GRACE_SECONDS``; an unfinished one is redelivered later), then the
        channels and the connection close. Closing the connection under a running handler or an
        unconfirmed publish left futures failed with CancelledError that nobody retrieved."""
        consumers, self._consumers = self._consumers, []
        # One bound for them all: with the broker gone each cancel would wait out its own timeout.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(_cancel_consumers(consumers), timeout=CANCEL_GRACE_SECONDS)
        in_hand = {t for t in self._handling if t is not asyncio.current_task()}
        if in_hand:
            await asyncio.wait(in_hand, timeout=CLOSE_GRACE_SECONDS)
        self._closed = True
        async with self._publish_lock:  # a publish in progress gets its confirmation first
            channels = [c for c in (self._consume_channel, self._publish_channel) if c is not None]
            for channel in channels:
                if not channel.is_closed:
                    with contextlib.suppress(Exception):
                        await channel.close()
            if self._connection is not None:
                await self._connection.close()
            self._connection = None
            self._consume_channel = None
            self._publish_channel = None
            self._exchange = None


async def _cancel_consumers(consumers: list[tuple[AbstractQueue, str]]) -> None:
    for queue, tag in consumers:
        await queue.cancel(tag)


def create_bus(
    amqp_url: str | None, *, exchange: str, max_attempts: int, retry_base_seconds: float, prefetch: int
) -> EventBus:
    if amqp_url:
        return RabbitMQBus(
            amqp_url,
            exchange=exchange,
            max_attempts=max_attempts,
            retry_base_seconds=retry_base_seconds,
            prefetch=prefetch,
        )
    return InProcessBus(max_attempts=max_attempts, retry_base_seconds=retry_base_seconds)

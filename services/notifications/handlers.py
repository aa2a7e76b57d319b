"""Event consumers: an event's messages are stored once (inbox) in the transaction of its effect."""

from __future__ import annotations

from services.notifications import domain, service
from shared.app import ServiceContext
from shared.events import Envelope
from shared.outbox import already_processed
from shared.periodic import Periodic

SUBSCRIPTION = "notifications"


def subscribe(ctx: ServiceContext) -> None:
    async def handle(envelope: Envelope) -> None:
        async with ctx.sessions() as session, session.begin():
            if await already_processed(session, ctx.inbox_model, SUBSCRIPTION, envelope.id):
                return
            made = await service.record_event(session, envelope)
        if made:
            sending: Periodic = ctx.extras["sending"]
            sending.wake.set()

    ctx.bus.subscribe(SUBSCRIPTION, list(domain.subscribed_event_types()), handle)

"""The one consumer: every ``audit.access.recorded`` event becomes its rows, once (inbox, and unique
(event, position) beneath it). A payload that does not validate raises: retried, then dead-lettered and
visible, never dropped."""

from __future__ import annotations

from services.audit import service
from shared.app import ServiceContext
from shared.audit import ACCESS_RECORDED, AccessRecorded
from shared.events import Envelope
from shared.outbox import already_processed

SUBSCRIPTION = "audit"


def subscribe(ctx: ServiceContext) -> None:
    async def handle(envelope: Envelope) -> None:
        payload = AccessRecorded.model_validate(envelope.payload)
        async with ctx.sessions() as session, session.begin():
            if await already_processed(session, ctx.inbox_model, SUBSCRIPTION, envelope.id):
                return
            await service.store(session, envelope.id, payload)

    ctx.bus.subscribe(SUBSCRIPTION, [ACCESS_RECORDED], handle)

"""The one consumer: every ``audit.*`` event becomes its rows, once (inbox and unique (event, position))."""

from __future__ import annotations

from services.audit import service
from shared.app import ServiceContext
from shared.audit import ACCESS_RECORDED, AccessRecorded
from shared.events import Envelope
from shared.outbox import already_processed

SUBSCRIPTION = "audit"


def subscribe(ctx: ServiceContext) -> None:
    async def handle(envelope: Envelope) -> None:
        if envelope.type != ACCESS_RECORDED:
            return  # a newer kind of audit event this version does not know: not ours to guess at
        payload = AccessRecorded.model_validate(envelope.payload)
        async with ctx.sessions() as session, session.begin():
            if await already_processed(session, ctx.inbox_model, SUBSCRIPTION, envelope.id):
                return
            await service.store(session, envelope.id, payload)

    ctx.bus.subscribe(SUBSCRIPTION, [ACCESS_RECORDED], handle)

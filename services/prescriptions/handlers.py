"""Event consumers: each applies its event once (inbox) in the transaction of its effect."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from services.integration.events import IkpItemReceived, IkpStatusChanged
from services.prescriptions import ikp, service
from shared.app import ServiceContext
from shared.events import Envelope
from shared.outbox import already_processed
from shared.periodic import Periodic

SUBSCRIPTION = "prescriptions"
# Published by the pharmacy service when it records a realisation; only these fields are read.
REALISATION_RECORDED = "pharmacy.realisation.recorded"


class RealisationRecorded(BaseModel):
    key: str
    realised_on: dt.date


def subscribe(ctx: ServiceContext) -> None:
    async def handle(envelope: Envelope) -> None:
        async with ctx.sessions() as session, session.begin():
            if await already_processed(session, ctx.inbox_model, SUBSCRIPTION, envelope.id):
                return
            if envelope.type == IkpItemReceived.event_type and envelope.facility_id:
                await ikp.store_item(session, envelope.facility_id, IkpItemReceived.model_validate(envelope.payload))
            elif envelope.type == IkpStatusChanged.event_type and envelope.facility_id:
                status = IkpStatusChanged.model_validate(envelope.payload).status
                await service.set_ikp_enabled(session, envelope.facility_id, status == "enabled")
            elif envelope.type == REALISATION_RECORDED:
                realised = RealisationRecorded.model_validate(envelope.payload)
                await service.record_first_realisation(session, realised.key, realised.realised_on)
        if envelope.type == IkpItemReceived.event_type:
            sealing: Periodic = ctx.extras["sealing"]
            sealing.wake.set()

    ctx.bus.subscribe(
        SUBSCRIPTION, [IkpItemReceived.event_type, IkpStatusChanged.event_type, REALISATION_RECORDED], handle
    )

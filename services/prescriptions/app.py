"""Wiring of the prescriptions service: routers, the scheduling client, IKP sealing, consumers."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import FastAPI

from services.prescriptions import handlers
from services.prescriptions.api import router
from services.prescriptions.ikp import Sealer
from services.prescriptions.models import IdempotencyKey, Inbox, Outbox
from services.prescriptions.routing import Router
from services.prescriptions.service import Requests
from services.prescriptions.settings import PrescriptionsSettings
from services.scheduling.client import SchedulingClient
from shared.app import ServiceContext, ServiceDefinition, build_service_app
from shared.bus import EventBus
from shared.peers import PeerApps, peer_address
from shared.periodic import Periodic
from shared.settings import Settings


async def _start(ctx: ServiceContext) -> None:
    sealing: Periodic = ctx.extras["sealing"]
    sealing.start()


async def _stop(ctx: ServiceContext) -> None:
    sealing: Periodic = ctx.extras["sealing"]
    scheduling: SchedulingClient = ctx.extras["scheduling"]
    await sealing.stop()
    await scheduling.aclose()


DEFINITION = ServiceDefinition(
    name="prescriptions",
    title="Prescriptions service (ordering and issuing e-prescriptions)",
    migrations_dir=Path(__file__).parent / "migrations",
    outbox_model=Outbox,
    inbox_model=Inbox,
    idempotency_model=IdempotencyKey,
    routers=[router],
    subscribe=handlers.subscribe,
    on_started=_start,
    on_stopping=_stop,
)


def create_app(
    settings: Settings | None = None, *, bus: EventBus | None = None, peers: PeerApps | None = None
) -> FastAPI:
    """``peers``: the apps of this process (embedded default); else SCHEDULING_URL says where it is."""
    config = PrescriptionsSettings.from_settings(settings)
    app = build_service_app(DEFINITION, config, bus=bus)
    ctx: ServiceContext = app.state.ctx
    address = peer_address("scheduling", config, peers)
    scheduling = SchedulingClient(
        address.base_url,
        config,
        timeout=config.http_timeout_seconds,
        transport=address.transport,
        caller="prescriptions",
    )
    requests = Requests(Router(scheduling))
    sealer = Sealer(
        ctx.sessions,
        ctx.uow,
        requests,
        gap=dt.timedelta(seconds=config.ikp_group_gap_seconds),
        grace=dt.timedelta(seconds=config.ikp_seal_grace_seconds),
        timezone=ZoneInfo(config.timezone),
        clock=lambda: ctx.clock.now(),  # read at each pass: a test may replace the clock
    )
    sealing = Periodic("ikp-sealing", config.ikp_seal_interval_seconds, sealer.seal_due)
    ctx.extras.update(scheduling=scheduling, requests=requests, sealer=sealer, sealing=sealing)
    return app

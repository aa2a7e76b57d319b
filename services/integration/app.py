"""Wiring of the integration service: IKP API, the P1 and scheduling clients, polling, forwarding."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.integration import handlers
from services.integration.api import router, webhooks
from services.integration.models import IdempotencyKey, Inbox, Outbox
from services.integration.p1 import P1Client
from services.integration.service import Forwarder, Ikp, Poller
from services.integration.settings import IntegrationSettings, p1_address
from services.scheduling.client import SchedulingClient
from shared.app import ServiceContext, ServiceDefinition, build_service_app
from shared.bus import EventBus
from shared.peers import PeerApps, peer_address
from shared.periodic import Periodic
from shared.settings import Settings


async def _start(ctx: ServiceContext) -> None:
    for task in ("polling", "forwarding"):
        periodic: Periodic = ctx.extras[task]
        periodic.start()


async def _stop(ctx: ServiceContext) -> None:
    for task in ("polling", "forwarding"):
        periodic: Periodic = ctx.extras[task]
        await periodic.stop()
    p1: P1Client = ctx.extras["p1"]
    scheduling: SchedulingClient = ctx.extras["scheduling"]
    await p1.aclose()
    await scheduling.aclose()


DEFINITION = ServiceDefinition(
    name="integration",
    title="Integration service (P1 / IKP, CeR, eZWM adapters)",
    migrations_dir=Path(__file__).parent / "migrations",
    outbox_model=Outbox,
    inbox_model=Inbox,
    idempotency_model=IdempotencyKey,
    routers=[router, webhooks],
    subscribe=handlers.subscribe,
    on_started=_start,
    on_stopping=_stop,
)


def create_app(
    settings: Settings | None = None, *, bus: EventBus | None = None, peers: PeerApps | None = None
) -> FastAPI:
    config = IntegrationSettings.from_settings(settings)
    app = build_service_app(DEFINITION, config, bus=bus)
    ctx: ServiceContext = app.state.ctx
    p1_at = p1_address(config.p1_url, config, peers)
    p1 = P1Client(p1_at.base_url, timeout=config.p1_timeout_seconds, transport=p1_at.transport)
    address = peer_address("scheduling", config, peers)
    scheduling = SchedulingClient(
        address.base_url, config, timeout=config.http_timeout_seconds, transport=address.transport, caller="integration"
    )
    ikp = Ikp(ctx.sessions, p1, scheduling)
    poller = Poller(ctx.sessions, ctx.uow, ikp, config.ikp_poll_batch)
    forwarder = Forwarder(ctx.sessions, ctx.uow, p1, config.p1_retry_seconds, config.p1_retry_max_seconds)
    ctx.extras.update(
        p1=p1,
        scheduling=scheduling,
        ikp=ikp,
        poller=poller,
        forwarder=forwarder,
        polling=Periodic("ikp-polling", config.ikp_poll_seconds, poller.poll_all),
        forwarding=Periodic("p1-forwarding", config.p1_retry_seconds, forwarder.forward_pending),
    )
    return app

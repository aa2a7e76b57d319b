"""Wiring of the integration service: IKP API, the P1 and scheduling clients, polling, forwarding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI

from services.integration import handlers
from services.integration.api import router, webhooks
from services.integration.cer import CerClient
from services.integration.cer_service import Reconciler, cer_forwarder
from services.integration.models import IdempotencyKey, Inbox, Outbox
from services.integration.outgoing import Forwarder
from services.integration.p1 import P1Client
from services.integration.sealed import SecretBox
from services.integration.service import Ikp, Poller, p1_forwarder
from services.integration.settings import (
    EMBEDDED_CER_PATH,
    IntegrationSettings,
    national_address,
    p1_address,
    with_sandbox,
)
from services.scheduling.client import SchedulingClient
from shared.app import ServiceContext, ServiceDefinition, build_service_app
from shared.bus import EventBus
from shared.peers import PeerApps, peer_address
from shared.periodic import Periodic
from shared.settings import Settings

PERIODIC = ("polling", "forwarding", "cer_forwarding", "cer_reconciling")


async def _start(ctx: ServiceContext) -> None:
    for task in PERIODIC:
        periodic: Periodic = ctx.extras[task]
        periodic.start()


async def _stop(ctx: ServiceContext) -> None:
    for task in PERIODIC:
        periodic: Periodic = ctx.extras[task]
        await periodic.stop()
    for client in ("p1", "cer", "scheduling"):
        await ctx.extras[client].aclose()


async def _queues(ctx: ServiceContext) -> dict[str, Any]:
    """What waits for P1 and CeR: an outage shows here while local work goes on."""
    found: dict[str, Any] = {}
    for system, name in (("p1", "forwarder"), ("cer", "cer_forwarder")):
        forwarder: Forwarder[Any] = ctx.extras[name]
        found.update({f"{system}_{key}": value for key, value in (await forwarder.state()).items()})
    return found


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
    readiness_details=_queues,
)


def create_app(
    settings: Settings | None = None, *, bus: EventBus | None = None, peers: PeerApps | None = None
) -> FastAPI:
    config = IntegrationSettings.from_settings(settings)
    app = build_service_app(DEFINITION, config, bus=bus)
    ctx: ServiceContext = app.state.ctx
    peers = with_sandbox(config, peers) if not (config.p1_url and config.cer_url) else peers
    p1_at = p1_address(config.p1_url, config, peers)
    cer_at = national_address(config.cer_url, EMBEDDED_CER_PATH, config, peers)
    cer = CerClient(cer_at.base_url, timeout=config.cer_timeout_seconds, transport=cer_at.transport)
    p1 = P1Client(p1_at.base_url, timeout=config.p1_timeout_seconds, transport=p1_at.transport)
    address = peer_address("scheduling", config, peers)
    scheduling = SchedulingClient(
        address.base_url, config, timeout=config.http_timeout_seconds, transport=address.transport, caller="integration"
    )
    ikp = Ikp(ctx.sessions, p1, scheduling)
    poller = Poller(ctx.sessions, ctx.uow, ikp, config.ikp_poll_batch)
    forwarder = p1_forwarder(ctx.sessions, ctx.uow, p1, config.p1_retry_seconds, config.p1_retry_max_seconds)
    to_cer = cer_forwarder(
        ctx.sessions,
        ctx.uow,
        cer,
        config.cer_retry_seconds,
        config.cer_retry_max_seconds,
        now=lambda: ctx.clock.now(),  # read at each call: a test may swap the clock after start-up
    )
    reconciler = Reconciler(ctx.sessions, ctx.uow, cer, scheduling, config.timezone)
    ctx.extras.update(
        secrets=SecretBox(
            config.secrets_key.get_secret_value() if config.secrets_key else None,
            config.jwt_secret.get_secret_value(),
        ),
        p1=p1,
        scheduling=scheduling,
        ikp=ikp,
        poller=poller,
        forwarder=forwarder,
        polling=Periodic("ikp-polling", config.ikp_poll_seconds, poller.poll_all),
        forwarding=Periodic("p1-forwarding", config.p1_retry_seconds, forwarder.forward_pending),
        cer=cer,
        cer_forwarder=to_cer,
        reconciler=reconciler,
        cer_forwarding=Periodic("cer-forwarding", config.cer_retry_seconds, to_cer.forward_pending),
        cer_reconciling=Periodic("cer-reconciling", config.cer_reconcile_seconds, reconciler.reconcile_all),
    )
    return app

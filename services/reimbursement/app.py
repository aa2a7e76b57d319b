"""Wiring of the reimbursement service: its routers, its eZWM client and the registration retry."""

from __future__ import annotations

from pathlib import Path

import httpx
from fastapi import FastAPI

from services.integration.ezwm import EzwmClient
from services.reimbursement.api import router
from services.reimbursement.models import IdempotencyKey, Inbox, Outbox
from services.reimbursement.registration import Registrar
from services.reimbursement.settings import ReimbursementSettings
from shared.app import ServiceContext, ServiceDefinition, build_service_app
from shared.bus import EventBus
from shared.peers import PeerApps
from shared.settings import Settings

EMBEDDED_EZWM_URL = "http://sandbox.embedded/sandbox/ezwm"


async def _start_registration(ctx: ServiceContext) -> None:
    """Realisations recorded while eZWM was down are offered to it again in the background."""
    registrar: Registrar = ctx.extras["registrar"]
    registrar.start()


async def _stop_registration(ctx: ServiceContext) -> None:
    registrar: Registrar = ctx.extras["registrar"]
    client: EzwmClient = ctx.extras["ezwm"]
    await registrar.stop()
    await client.aclose()


DEFINITION = ServiceDefinition(
    name="reimbursement",
    title="Reimbursement service (eZWM orders)",
    migrations_dir=Path(__file__).parent / "migrations",
    outbox_model=Outbox,
    inbox_model=Inbox,
    idempotency_model=IdempotencyKey,
    routers=[router],
    on_started=_start_registration,
    on_stopping=_stop_registration,
)


def create_app(
    settings: Settings | None = None,
    *,
    bus: EventBus | None = None,
    peers: PeerApps | None = None,
    ezwm_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """``ezwm_transport`` (or the ``sandbox`` of ``peers``) reaches an eZWM app in this process;
    without either and without ``EZWM_URL`` the service starts a sandbox of its own.
    """
    config = ReimbursementSettings.from_settings(settings)
    app = build_service_app(DEFINITION, config, bus=bus)
    ctx: ServiceContext = app.state.ctx
    if ezwm_transport is None and not config.ezwm_base_url() and peers and "sandbox" in peers:
        app.state.ezwm_sandbox = peers["sandbox"]
        ezwm_transport = httpx.ASGITransport(app=peers["sandbox"])
    client = _ezwm_client(config, ezwm_transport, app)
    registrar = Registrar(ctx.sessions, client, interval=config.ezwm_retry_seconds, batch_size=config.ezwm_retry_batch)
    ctx.extras.update(ezwm=client, registrar=registrar)
    return app


def _ezwm_client(config: ReimbursementSettings, transport: httpx.AsyncBaseTransport | None, app: FastAPI) -> EzwmClient:
    base = config.ezwm_base_url()
    if base:
        return EzwmClient(base, timeout=config.ezwm_timeout_seconds, transport=transport)
    if transport is None:
        from services.sandbox.app import create_app as create_sandbox

        sandbox = create_sandbox(config.for_service("sandbox"))
        app.state.ezwm_sandbox = sandbox  # so tests and demos can steer this very sandbox
        transport = httpx.ASGITransport(app=sandbox)
    return EzwmClient(EMBEDDED_EZWM_URL, timeout=config.ezwm_timeout_seconds, transport=transport)

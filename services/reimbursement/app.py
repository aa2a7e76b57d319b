"""Wiring of the reimbursement service: its routers, its eZWM client and the registration retry."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
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
from shared.settings import Settings

EMBEDDED_EZWM_URL = "http://sandbox.embedded/sandbox/ezwm"

DEFINITION = ServiceDefinition(
    name="reimbursement",
    title="Reimbursement service (eZWM orders)",
    migrations_dir=Path(__file__).parent / "migrations",
    outbox_model=Outbox,
    inbox_model=Inbox,
    idempotency_model=IdempotencyKey,
    routers=[router],
)


def create_app(
    settings: Settings | None = None,
    *,
    bus: EventBus | None = None,
    ezwm_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """``ezwm_transport`` reaches an eZWM app in this process (a shared sandbox); without it and
    without ``EZWM_URL`` the service starts a sandbox of its own (embedded default).
    """
    config = ReimbursementSettings.from_settings(settings)
    app = build_service_app(DEFINITION, config, bus=bus)
    ctx: ServiceContext = app.state.ctx
    client = _ezwm_client(config, ezwm_transport, app)
    registrar = Registrar(ctx.sessions, client, interval=config.ezwm_retry_seconds, batch_size=config.ezwm_retry_batch)
    ctx.extras.update(ezwm=client, registrar=registrar)
    _run_alongside(app, registrar, client)
    return app


def _ezwm_client(config: ReimbursementSettings, transport: httpx.AsyncBaseTransport | None, app: FastAPI) -> EzwmClient:
    if config.ezwm_url:
        return EzwmClient(config.ezwm_url, timeout=config.ezwm_timeout_seconds, transport=transport)
    if transport is None:
        from services.sandbox.app import create_app as create_sandbox

        sandbox = create_sandbox(config.for_service("sandbox"))
        app.state.ezwm_sandbox = sandbox  # so tests and demos can steer this very sandbox
        transport = httpx.ASGITransport(app=sandbox)
    return EzwmClient(EMBEDDED_EZWM_URL, timeout=config.ezwm_timeout_seconds, transport=transport)


def _run_alongside(app: FastAPI, registrar: Registrar, client: EzwmClient) -> None:
    """Start the registration retry with the service and stop it before the database closes.

    ``ServiceDefinition.on_started`` has no stopping counterpart, so the shared lifespan is wrapped.
    """
    shared_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(the_app: FastAPI) -> AsyncIterator[None]:
        async with shared_lifespan(the_app):
            registrar.start()
            try:
                yield
            finally:
                await registrar.stop()
                await client.aclose()

    app.router.lifespan_context = lifespan

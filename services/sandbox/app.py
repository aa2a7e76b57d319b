"""The sandbox app: simulated national systems for development and tests (no database, no auth).

Each national system is one router, reached under ``/sandbox/<system>``; pointing a service's
adapter at the real system is a change of its base URL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.sandbox import cer, ezwm, mail, p1, sms
from services.sandbox.settings import SandboxSettings
from shared.bus import EventBus
from shared.logging import configure_logging
from shared.metrics import install_metrics
from shared.middleware import BodyLimitMiddleware, RequestIdMiddleware
from shared.peers import PeerApps
from shared.problems import install_problem_handlers
from shared.settings import Settings


def create_app(
    settings: Settings | None = None, *, bus: EventBus | None = None, peers: PeerApps | None = None
) -> FastAPI:
    """``bus`` and ``peers`` are accepted for the launchers' uniform call and unused: the simulators
    publish nothing and call no service."""
    settings = SandboxSettings.from_settings(settings)
    configure_logging(settings.log_level, json=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        catcher: mail.MailCatcher = app.state.mail
        if settings.smtp_enabled:
            # Only the default port may move: a port someone chose is one their sender was told about.
            chosen = "smtp_port" in settings.model_fields_set
            await catcher.start(settings.smtp_host, settings.smtp_port, any_port_if_taken=not chosen)
        try:
            yield
        finally:
            await app.state.cer.close()
            await catcher.stop()

    app = FastAPI(
        title="Sandbox (simulated national systems)",
        version="1.0.0",
        description="In-memory simulators; state is lost on restart. Not for production use.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.ezwm = ezwm.EzwmState()
    app.state.p1 = p1.P1State(confirm_after=dt.timedelta(seconds=settings.p1_ikp_confirm_seconds))
    app.state.sms = sms.SmsState()
    app.state.cer = cer.CerState(
        retry_seconds=settings.cer_delivery_retry_seconds, max_attempts=settings.cer_delivery_attempts
    )
    # The SMTP server starts with the app's lifespan; its port is app.state.mail.port from then on.
    app.state.mail = mail.MailCatcher()
    install_problem_handlers(app)
    app.include_router(ezwm.router)
    app.include_router(p1.router)
    app.include_router(cer.router)
    app.include_router(sms.router)
    app.include_router(mail.router)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Ready: the simulators need no database or broker")
    async def readyz() -> dict[str, object]:
        return {"status": "ready", "service": "sandbox", "checks": {"state": "in memory"}}

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware, service="sandbox")
    install_metrics(app)
    return app

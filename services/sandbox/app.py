"""The sandbox app: simulated national systems for development and tests (no database, no auth).

Each national system is one router, reached under ``/sandbox/<system>``; pointing a service's
adapter at the real system is a change of its base URL.
"""

from __future__ import annotations

import datetime as dt

from fastapi import FastAPI

from services.sandbox import ezwm, p1
from services.sandbox.settings import SandboxSettings
from shared.bus import EventBus
from shared.logging import configure_logging
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
    app = FastAPI(
        title="Sandbox (simulated national systems)",
        version="1.0.0",
        description="In-memory simulators; state is lost on restart. Not for production use.",
    )
    app.state.settings = settings
    app.state.ezwm = ezwm.EzwmState()
    app.state.p1 = p1.P1State(confirm_after=dt.timedelta(seconds=settings.p1_ikp_confirm_seconds))
    install_problem_handlers(app)
    app.include_router(ezwm.router)
    app.include_router(p1.router)

    @app.get("/healthz", tags=["health"], summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], summary="Ready: the simulators need no database or broker")
    async def readyz() -> dict[str, object]:
        return {"status": "ready", "service": "sandbox", "checks": {"state": "in memory"}}

    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware, service="sandbox")
    return app

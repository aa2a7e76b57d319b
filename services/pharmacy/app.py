"""Wiring of the pharmacy service."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.integration.p1 import P1Client
from services.integration.settings import p1_address
from services.pharmacy import code_limit
from services.pharmacy.api import router
from services.pharmacy.dispensing import Dispensing, TooManyWrongCodes
from services.pharmacy.models import IdempotencyKey, Inbox, Outbox
from services.pharmacy.settings import PharmacySettings
from shared.app import ServiceContext, ServiceDefinition, build_service_app
from shared.bus import EventBus
from shared.peers import PeerApps
from shared.problems import problem_response
from shared.settings import Settings


async def _close_p1(ctx: ServiceContext) -> None:
    p1: P1Client = ctx.extras["p1"]
    await p1.aclose()


DEFINITION = ServiceDefinition(
    name="pharmacy",
    title="Pharmacy service",
    migrations_dir=Path(__file__).parent / "migrations",
    outbox_model=Outbox,
    inbox_model=Inbox,
    idempotency_model=IdempotencyKey,
    routers=[router],
    # A whole product file (BLOZ-like export) in one request; the gateway allows the same.
    body_limit_overrides={"/products/import": 10 * 1024 * 1024},
    on_stopping=_close_p1,
)


def create_app(
    settings: Settings | None = None, *, bus: EventBus | None = None, peers: PeerApps | None = None
) -> FastAPI:
    """``peers``: the sandbox of this process (embedded default); else P1_URL or SANDBOX_URL."""
    config = PharmacySettings.from_settings(settings)
    app = build_service_app(DEFINITION, config, bus=bus)
    ctx: ServiceContext = app.state.ctx
    p1_at = p1_address(config.p1_url, config, peers)
    p1 = P1Client(p1_at.base_url, timeout=config.p1_timeout_seconds, transport=p1_at.transport)
    ctx.extras["p1"] = p1
    ctx.extras["dispensing"] = Dispensing(
        ctx.sessions,
        p1,
        per_pharmacy=code_limit.Limit(
            code_limit.Scope.pharmacy,
            config.lookup_failures_allowed,
            dt.timedelta(seconds=config.lookup_failure_window_seconds),
        ),
        per_patient=code_limit.Limit(
            code_limit.Scope.patient,
            config.lookup_failures_allowed_per_pesel,
            dt.timedelta(seconds=config.lookup_failure_window_per_pesel_seconds),
        ),
        digest_key=code_limit.digest_key(config.jwt_secret.get_secret_value()),
        now=lambda: ctx.clock.now(),
        timezone=ZoneInfo(config.timezone),
    )
    app.add_exception_handler(TooManyWrongCodes, _too_many_wrong_codes)
    return app


async def _too_many_wrong_codes(request: Request, exc: Exception) -> JSONResponse:
    """The problem answer with ``Retry-After`` (RFC 9110), which the shared handler has no place for."""
    assert isinstance(exc, TooManyWrongCodes)
    return problem_response(
        exc.status,
        exc.detail,
        code=exc.code,
        instance=request.url.path,
        headers={"Retry-After": str(exc.retry_after)},
        extra=exc.extra,
    )

"""The house every service lives in: middleware, errors, health, database, bus and outbox relay.

A service's ``app.py`` calls ``build_service_app`` with its routers, tables and event handlers;
everything else is the same for all of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.bus import EventBus, create_bus
from shared.clock import Clock
from shared.db import Grants, create_engine, migrate, session_factory
from shared.idempotency import IdempotencyMiddleware
from shared.logging import configure_logging
from shared.metrics import install_metrics, watch_service
from shared.middleware import BodyLimitMiddleware, RequestIdMiddleware
from shared.outbox import OutboxRelay, UnitOfWork
from shared.problems import FieldError, Unprocessable, install_problem_handlers
from shared.settings import Settings


@dataclass
class ServiceContext:
    """What a running service holds: its database, its bus and its outbox relay."""

    name: str
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    bus: EventBus
    outbox_model: type[Any]
    inbox_model: type[Any]
    relay: OutboxRelay
    owns_bus: bool
    extras: dict[str, Any] = field(default_factory=dict)
    # The subscriptions this service registered: on a bus shared with other services (the embedded
    # default), the only ones whose dead letters it reports.
    subscriptions: list[str] = field(default_factory=list)
    # Every rule that reads the date or the instant asks this clock; a test replaces it.
    clock: Clock = field(default_factory=Clock)

    def today(self) -> dt.date:
        """Today in the suite's timezone (Europe/Warsaw): the date the rules apply."""
        return self.clock.today(self.settings.timezone)

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self.sessions, self.outbox_model, on_commit=self.relay.wake)


def service_context(request: Request) -> ServiceContext:
    ctx: ServiceContext = request.app.state.ctx
    return ctx


ContextDep = Annotated[ServiceContext, Depends(service_context)]


@dataclass
class ServiceDefinition:
    name: str
    title: str
    migrations_dir: Path
    outbox_model: type[Any]
    inbox_model: type[Any]
    idempotency_model: type[Any]
    routers: Sequence[APIRouter]
    subscribe: Callable[[ServiceContext], None] | None = None
    on_started: Callable[[ServiceContext], Awaitable[None]] | None = None
    # Runs first on shutdown, while the database and the bus are still open.
    on_stopping: Callable[[ServiceContext], Awaitable[None]] | None = None
    body_limit_overrides: dict[str, int] = field(default_factory=dict)
    # More for ``/readyz``'s checks (queues waiting for a national system): shown, never deciding readiness.
    readiness_details: Callable[[ServiceContext], Awaitable[dict[str, Any]]] | None = None


def build_service_app(definition: ServiceDefinition, settings: Settings, *, bus: EventBus | None = None) -> FastAPI:
    settings = settings if settings.service_name == definition.name else settings.for_service(definition.name)
    configure_logging(settings.log_level, json=settings.log_json)
    url = settings.resolved_database_url
    engine = create_engine(url)
    sessions = session_factory(engine)
    owns_bus = bus is None
    the_bus = bus or create_bus(
        settings.amqp_url,
        exchange=settings.events_exchange,
        max_attempts=settings.bus_max_attempts,
        retry_base_seconds=settings.bus_retry_base_seconds,
        prefetch=settings.bus_prefetch,
    )
    relay = OutboxRelay(
        sessions,
        definition.outbox_model,
        the_bus,
        poll_seconds=settings.outbox_poll_seconds,
        batch_size=settings.outbox_batch_size,
    )
    ctx = ServiceContext(
        definition.name,
        settings,
        engine,
        sessions,
        the_bus,
        definition.outbox_model,
        definition.inbox_model,
        relay,
        owns_bus,
    )
    if definition.readiness_details is not None:
        ctx.extras["readiness_details"] = definition.readiness_details

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.run_migrations:
            grants = Grants.of(settings.database_runtime_role, settings.database_maintenance_role)
            await migrate(definition.migrations_dir, settings.resolved_migration_database_url, grants)
        if definition.subscribe is not None:
            before = len(the_bus.subscriptions)
            definition.subscribe(ctx)
            ctx.subscriptions = [s.name for s in the_bus.subscriptions[before:]]
        retrying = await _start_bus_when_reachable(the_bus) if owns_bus else None
        relay.start()
        if definition.on_started is not None:
            await definition.on_started(ctx)
        try:
            yield
        finally:
            if definition.on_stopping is not None:
                await definition.on_stopping(ctx)
            # In this order: the relay (its last batch published) before the bus it publishes on; a
            # broker still being waited for is given up; the database last, which handlers use until
            # the bus has let them finish.
            await relay.stop()
            if retrying is not None:
                retrying.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await retrying
            if owns_bus:
                await the_bus.close()
            await engine.dispose()

    app = FastAPI(
        title=definition.title,
        version="1.0.0",
        lifespan=lifespan,
        root_path_in_servers=False,
        dependencies=[Depends(refuse_unknown_query_parameters), Depends(refuse_control_characters)],
    )
    app.state.settings = settings
    app.state.ctx = ctx
    install_problem_handlers(app)
    for router in definition.routers:
        app.include_router(router)
    app.include_router(health_router())
    app.add_middleware(IdempotencyMiddleware, sessions=sessions, model=definition.idempotency_model, settings=settings)
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, overrides=definition.body_limit_overrides
    )
    app.add_middleware(RequestIdMiddleware, service=definition.name)
    watch_service(install_metrics(app), ctx)
    return app


async def refuse_unknown_query_parameters(request: Request) -> None:
    """A misspelt or unsupported filter (``GET /bookings?slot_id=``) is an error, not a silent "everything"."""
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None or not request.query_params:
        return
    known = {param.alias for param in _query_params(dependant)}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise Unprocessable(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            errors=[FieldError(field=f"query.{name}", message="not a parameter of this operation") for name in unknown],
        )


# C0 controls but tab, line feed and carriage return; DEL and the C1 controls; the bidirectional
# embeddings, overrides and isolates that make a name read differently from what is stored.
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def control_character_fields(value: Any, path: str = "body") -> list[str]:
    """The paths of the JSON strings (values and keys) in ``value`` that hold a control character."""
    if isinstance(value, str):
        return [path] if _CONTROL.search(value) else []
    if isinstance(value, list):
        return [found for i, item in enumerate(value) for found in control_character_fields(item, f"{path}.{i}")]
    if isinstance(value, dict):
        found = []
        for key, item in value.items():
            if _CONTROL.search(key):
                found.append(f"{path}.{key!r}")
            found.extend(control_character_fields(item, f"{path}.{key}"))
        return found
    return []


async def refuse_control_characters(request: Request) -> None:
    """No text field takes NUL, BEL or a bidi override: they corrupt logs, letters and what a reader sees."""
    if request.method not in {"POST", "PUT", "PATCH"} or "json" not in request.headers.get("content-type", ""):
        return
    try:
        document = json.loads(await request.body())
    except ValueError:
        return  # not JSON: the operation's own validation answers
    fields = control_character_fields(document)
    if fields:
        raise Unprocessable(
            "text may not contain control characters or bidirectional overrides",
            errors=[FieldError(field=f, message="contains a control character") for f in fields],
        )


def _query_params(dependant: Any) -> list[Any]:
    found = list(dependant.query_params)
    for sub in dependant.dependencies:
        found.extend(_query_params(sub))
    return found


async def _start_bus_when_reachable(bus: EventBus) -> asyncio.Task[None] | None:
    """A service starts even while the broker is down; its outbox keeps events until it is back.
    Returns the task still trying to connect, which the shutdown cancels (left pending, asyncio
    reports it destroyed at exit)."""
    try:
        await asyncio.wait_for(bus.start(), timeout=15)
    except Exception:
        return asyncio.create_task(_retry_bus_start(bus), name="bus-start-retry")
    return None


async def _retry_bus_start(bus: EventBus) -> None:
    delay = 1.0
    while True:
        await asyncio.sleep(delay)
        try:
            await asyncio.wait_for(bus.start(), timeout=15)
            return
        except Exception:
            delay = min(delay * 2, 30.0)


def health_router() -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="The process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz", summary="Database and broker reachable; outbox backlog")
    async def readyz(ctx: ContextDep) -> JSONResponse:
        return JSONResponse(*await readiness(ctx))

    return router


async def readiness(ctx: ServiceContext) -> tuple[dict[str, Any], int]:
    checks: dict[str, Any] = {}
    try:
        async with ctx.engine.connect() as conn:
            await asyncio.wait_for(conn.execute(sa.text("SELECT 1")), timeout=3)
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
    checks["broker"] = "ok" if await ctx.bus.ready() else "unreachable"
    try:
        checks["outbox_backlog"] = await ctx.relay.backlog()
    except Exception:
        checks["outbox_backlog"] = None
    details = ctx.extras.get("readiness_details")
    if details is not None:
        try:
            checks.update(await details(ctx))
        except Exception as exc:
            checks["details"] = f"unavailable: {type(exc).__name__}"
    ready = checks["database"] == "ok" and checks["broker"] == "ok"
    return {"status": "ready" if ready else "not ready", "service": ctx.name, "checks": checks}, (200 if ready else 503)

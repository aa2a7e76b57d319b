"""Prometheus ``GET /metrics`` for every app: request counts and latencies, outbox, dead letters.

One registry per app, not the process-global ``prometheus_client.REGISTRY``: the embedded default
runs every service, the sandbox and the gateway in one process, and the tests build hundreds of apps
in one process. With the global registry the second app would fail on a duplicate metric name (or,
with a ``service`` label, every app would serve every other app's figures). So ``install_metrics``
gives each app its own ``CollectorRegistry`` (``app.state.metrics.registry``); nothing here is
registered at import, and an app's ``/metrics`` shows that app alone. The process-wide collectors
(``process_*``, ``python_gc_*``) are added to each registry too: in a deployment each app is its own
process, so they tell that pod's memory and CPU.

What needs the database (the outbox backlog, a service's readiness details) is read by the
``/metrics`` handler itself, awaited before rendering: prometheus collectors are synchronous and
would otherwise block the event loop on a query. What is in memory (dead letters the bus parked,
relay failures) is read by a collector while rendering.

Labels stay bounded: ``route`` is the route template (``/bookings/{booking_id}``), never the path
with its ids; a path no route knows is ``unmatched``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import fastapi.routing
import structlog
from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from shared.app import ServiceContext

UNMATCHED = "unmatched"
# A scrape must answer within Prometheus's scrape timeout (10 s by default) even when the database hangs.
SCRAPE_QUERY_TIMEOUT_SECONDS = 3.0
log = structlog.get_logger("metrics")
T = TypeVar("T")


class AppMetrics:
    """One app's registry, its request instruments, and what to refresh before each scrape."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.requests = Counter(
            "http_requests",
            "HTTP requests answered, by method, route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "http_request_duration_seconds",
            "Time from receiving an HTTP request to the end of its answer",
            ["method", "route"],
            registry=self.registry,
        )
        self._refreshers: list[Callable[[], Awaitable[None]]] = []

    def refresh_before_scrape(self, refresh: Callable[[], Awaitable[None]]) -> None:
        self._refreshers.append(refresh)

    async def exposition(self) -> bytes:
        for refresh in self._refreshers:
            await refresh()
        return generate_latest(self.registry)


def route_template(scope: Scope, routes: Sequence[Any]) -> str:
    """The template of the route that will answer, chosen as Starlette's router chooses."""
    partial: str | None = None
    for route in routes:
        match, _ = route.matches(scope)
        path = getattr(route, "path", None)
        if match is Match.FULL and path is not None:
            return str(path)
        if match is Match.PARTIAL and partial is None and path is not None:
            partial = str(path)  # the path exists under another method: the answer is a 405
    return partial or UNMATCHED


class RequestMetricsMiddleware:
    """Counts and times every HTTP request by its route template."""

    def __init__(self, app: ASGIApp, *, metrics: AppMetrics) -> None:
        self.app = app
        self.metrics = metrics
        self._routes: list[Any] = []
        self._routes_of: tuple[int, int] | None = None

    def _routes_for(self, scope: Scope) -> list[Any]:
        """The app's routes with their full templates, worked out again only when routes were added."""
        routes = getattr(getattr(scope.get("app"), "router", None), "routes", [])
        key = (id(routes), len(routes))
        if key != self._routes_of:
            # FastAPI 0.16x keeps an included router nested (its routes carry no prefix on their
            # own); iter_route_contexts gives each route with its effective path. Older FastAPI
            # copied the routes, prefix included, into the app's list.
            flatten = getattr(fastapi.routing, "iter_route_contexts", None)
            self._routes = list(flatten(routes)) if flatten is not None else list(routes)
            self._routes_of = key
        return self._routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Before the call: the router rewrites parts of the scope (a Mount's root_path) as it routes.
        route = route_template(scope, self._routes_for(scope))
        status = 500  # what the client gets when the app raises before answering
        started = time.perf_counter()

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            method = scope["method"]
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(method, route, str(status)).inc()


def install_metrics(app: FastAPI, metrics: AppMetrics | None = None) -> AppMetrics:
    """Request metrics and an open ``GET /metrics`` (scraped inside the cluster, like ``/healthz``).

    Call it after the app's other middleware, so that the timing covers them too. ``metrics``: one
    made earlier, when a part of the app registers its own instruments in the registry first.
    """
    metrics = metrics or AppMetrics()
    app.state.metrics = metrics
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    async def scrape() -> Response:
        return Response(await metrics.exposition(), media_type=CONTENT_TYPE_PLAIN_0_0_4)

    return metrics


class ServiceFigures:
    """A service's own figures: outbox backlog, numeric readiness details, dead letters.

    ``refresh`` (awaited by the scrape) reads the database; ``collect`` only reports what it read.
    """

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.backlog: int | None = None
        self.details: dict[str, float] = {}

    async def refresh(self) -> None:
        self.backlog = await _or_none(self.ctx.relay.backlog(), "outbox backlog")
        details: Callable[[ServiceContext], Awaitable[dict[str, Any]]] | None = self.ctx.extras.get("readiness_details")
        found = {} if details is None else await _or_none(details(self.ctx), "readiness details") or {}
        self.details = {name: float(value) for name, value in found.items() if _is_number(value)}

    def collect(self) -> Iterable[Metric]:
        if self.backlog is not None:  # unknown (database down) is absent, not zero
            yield GaugeMetricFamily("outbox_backlog", "Outbox rows not yet published", value=self.backlog)
        depth = GaugeMetricFamily(
            "queue_depth", "Numeric readiness details (work waiting for a national system)", labels=["name"]
        )
        for name, value in sorted(self.details.items()):
            depth.add_metric([name], value)
        yield depth
        dead = CounterMetricFamily(
            "bus_dead_letters", "Messages parked in <subscription>.dead by this process", labels=["subscription"]
        )
        for subscription in self._subscriptions():
            dead.add_metric([subscription], self.ctx.bus.dead_lettered[subscription])
        yield dead
        yield CounterMetricFamily(
            "outbox_relay_failures", "Relay rounds that could not publish", value=self.ctx.relay.failures
        )

    def _subscriptions(self) -> list[str]:
        """Every subscription of a bus the service owns; of a shared bus (the embedded default), only
        those the service registered, so that no two services report the same dead letters."""
        if self.ctx.owns_bus:
            return sorted({s.name for s in self.ctx.bus.subscriptions} | set(self.ctx.bus.dead_lettered))
        return sorted(set(self.ctx.subscriptions))


def watch_service(metrics: AppMetrics, ctx: ServiceContext) -> None:
    figures = ServiceFigures(ctx)
    metrics.registry.register(figures)
    metrics.refresh_before_scrape(figures.refresh)


async def _or_none(reading: Awaitable[T], what: str) -> T | None:
    try:
        return await asyncio.wait_for(reading, timeout=SCRAPE_QUERY_TIMEOUT_SECONDS)
    except Exception as exc:
        log.warning("metric unavailable", what=what, error=type(exc).__name__)
        return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)

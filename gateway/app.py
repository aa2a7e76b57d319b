"""The gateway: the one public API of the suite (see API.md)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any
from urllib.parse import quote

import httpx
import structlog
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from prometheus_client import CollectorRegistry, Counter, Histogram

from gateway import openapi
from gateway.cors import GatewayCORSMiddleware
from gateway.registry import SANDBOX, SERVICES, factory
from gateway.upstreams import Upstream, in_process_upstream, remote_upstream
from shared.auth import authenticate, install_dev_auth
from shared.bus import InProcessBus
from shared.logging import configure_logging, request_id_var
from shared.metrics import AppMetrics, install_metrics
from shared.middleware import BodyLimitMiddleware, HeaderLimitMiddleware, RequestIdMiddleware
from shared.problems import Forbidden, NotFound, Problem, ProblemError, install_problem_handlers, problem_response
from shared.settings import GatewaySettings

FORWARDED_REQUEST_HEADERS = (
    "authorization",
    "content-type",
    "accept",
    "idempotency-key",
    "accept-language",
    "x-cer-timestamp",
    "x-cer-signature",
)
WEBHOOK_MAX_BYTES = 64 * 1024  # a CeR notification is a few hundred bytes
FORWARDED_RESPONSE_HEADERS = ("content-type", "location", "retry-after", "idempotent-replayed", "content-disposition")
METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
SPEC_FIRST_RETRY_SECONDS = 0.5
DOCS_ASSETS = "/docs-assets"
SPEC_TIMEOUT_SECONDS = 5.0  # a service's own document: a hung service must not hold /readyz for long
log = structlog.get_logger("gateway")


class ForwardingMetrics:
    """What the gateway passed on, per upstream service: its own requests are labelled by the one
    catch-all route, which says nothing about where they went."""

    def __init__(self, registry: CollectorRegistry) -> None:
        # ``upstream`` only ever takes the names of the configured services (and the sandbox), never
        # a name from the URL: /api/v1/<anything>/ that is no service is a 404 before forwarding.
        self.requests = Counter(
            "gateway_upstream_requests",
            "Requests forwarded to an upstream service, by the status the client got",
            ["upstream", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "gateway_upstream_request_duration_seconds",
            "Time an upstream service took to answer a forwarded request",
            ["upstream"],
            registry=registry,
        )

    def observe(self, upstream: str, method: str, status: int, seconds: float) -> None:
        self.latency.labels(upstream).observe(seconds)
        self.requests.labels(upstream, method, str(status)).inc()


class Gateway:
    """Holds the upstreams; builds the in-process services of the embedded default."""

    def __init__(self, settings: GatewaySettings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.forwarding = ForwardingMetrics(registry or CollectorRegistry())
        self.upstreams: dict[str, Upstream] = {}
        self.sandbox: Upstream | None = None
        self.bus: InProcessBus | None = None

    def build_upstreams(self) -> None:
        s = self.settings
        apps: dict[str, FastAPI] = {}  # the services of this process, so later ones can call earlier ones
        if s.environment != "production":
            self.sandbox = self._upstream(SANDBOX, apps)
        for name in SERVICES:
            self.upstreams[name] = self._upstream(name, apps)

    def _upstream(self, name: str, apps: dict[str, FastAPI]) -> Upstream:
        s = self.settings
        url = s.service_url(name)
        if url:
            return remote_upstream(name, url, s.upstream_timeout_seconds, s.upstream_max_connections)
        if self.bus is None:
            self.bus = InProcessBus(max_attempts=s.bus_max_attempts, retry_base_seconds=s.bus_retry_base_seconds)
        app = factory(name)(s.for_service(name), bus=self.bus, peers=apps)
        apps[name] = app
        return in_process_upstream(name, app, s.upstream_timeout_seconds)

    def all_upstreams(self) -> list[Upstream]:
        return [*([self.sandbox] if self.sandbox else []), *self.upstreams.values()]

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for upstream in self.all_upstreams():
                stack.push_async_callback(upstream.client.aclose)
                if upstream.app is not None:
                    await stack.enter_async_context(upstream.app.router.lifespan_context(upstream.app))
            if self.bus is not None:
                await self.bus.start()
                stack.push_async_callback(self.bus.close)
            keepers: list[asyncio.Task[None]] = []
            for upstream in self.upstreams.values():
                if upstream.embedded:
                    await upstream.load_spec()
                else:
                    # The gateway often starts before its services (a fresh pod, make run-distributed):
                    # their specs are loaded as soon as they answer, not on their first request.
                    keepers.append(asyncio.create_task(self._keep_spec(upstream), name=f"spec-{upstream.name}"))
            try:
                yield
            finally:
                for task in keepers:
                    task.cancel()
                await asyncio.gather(*keepers, return_exceptions=True)

    async def _keep_spec(self, upstream: Upstream) -> None:
        """Load a remote service's spec, retrying while it does not answer (half a second, doubling up
        to ``openapi_retry_max_seconds``), then fetch it again every ``openapi_refresh_seconds``."""
        s = self.settings
        fetch_seconds = min(SPEC_TIMEOUT_SECONDS, s.upstream_timeout_seconds)
        retry = SPEC_FIRST_RETRY_SECONDS
        while True:
            try:
                await upstream.load_spec(refresh=True, fetch_seconds=fetch_seconds)
            except (httpx.HTTPError, ValueError) as exc:
                log.info("service spec not loaded; will retry", service=upstream.name, error=type(exc).__name__)
                await asyncio.sleep(retry)
                retry = min(retry * 2, s.openapi_retry_max_seconds)
            else:
                retry = SPEC_FIRST_RETRY_SECONDS
                await asyncio.sleep(s.openapi_refresh_seconds)

    async def forward(self, service: str, request: Request) -> Response:
        upstream = self.upstreams.get(service)
        if upstream is None:
            raise NotFound(f"no service named {service!r}")
        await self._authorise(upstream, request)
        return await self._pass(upstream, request)

    async def forward_webhook(self, service: str, request: Request) -> Response:
        """A partner's signed call, passed on as it came (the raw body is what was signed)."""
        upstream = self.upstreams.get(service)
        if upstream is None:
            raise NotFound(f"no service named {service!r}")
        return await self._pass(upstream, request)

    @property
    def sandbox_public(self) -> bool:
        """Whether /sandbox/... is forwarded: only beside dev auth, on a developer's machine. Elsewhere
        (docker compose, the image) the sandbox still stands in for the national systems, but only the
        services reach it, on their own network: open without a token, it would hand out whatever it
        holds (sent mail, SMS, prescriptions) and its outage switch to anyone."""
        return self.sandbox is not None and self.settings.dev_auth

    async def forward_to_sandbox(self, request: Request) -> Response:
        """The simulated national systems, open without a token: development and demos only."""
        if self.sandbox is None or not self.sandbox_public:
            raise NotFound("the sandbox is not part of this deployment")
        return await self._pass(self.sandbox, request)

    async def _pass(self, upstream: Upstream, request: Request) -> Response:
        service = upstream.name
        headers = {h: request.headers[h] for h in FORWARDED_REQUEST_HEADERS if h in request.headers}
        headers["x-request-id"] = request_id_var.get() or ""
        content = await request.body()
        started = time.perf_counter()
        status = 500  # an unexpected error reaches the client as a 500
        try:
            answer = await upstream.client.request(
                request.method, _raw_path(request), params=request.query_params, content=content, headers=headers
            )
            status = answer.status_code
        except httpx.TimeoutException:
            status = 504
            return problem_response(504, f"the {service} service did not answer in time", code="upstream-timeout")
        except httpx.TransportError:
            status = 502
            return problem_response(502, f"the {service} service is unreachable", code="upstream-unreachable")
        finally:
            self.forwarding.observe(service, request.method, status, time.perf_counter() - started)
        return Response(
            answer.content,
            status_code=answer.status_code,
            headers={h: answer.headers[h] for h in FORWARDED_RESPONSE_HEADERS if h in answer.headers},
        )

    async def _authorise(self, upstream: Upstream, request: Request) -> None:
        """Token and role are checked here, before anything reaches the service."""
        try:
            await upstream.load_spec()
        except httpx.TimeoutException as exc:
            raise ProblemError(
                f"the {upstream.name} service did not answer in time", status=504, code="upstream-timeout"
            ) from exc
        except httpx.HTTPError as exc:
            raise ProblemError(
                f"the {upstream.name} service is unreachable", status=502, code="upstream-unreachable"
            ) from exc
        operation, path_known = upstream.match(request.method, request.url.path)
        if operation is None:
            if path_known:
                raise ProblemError(f"{request.method} is not allowed here", status=405, code="method-not-allowed")
            raise NotFound(f"no such endpoint: {request.url.path}")
        if operation.roles is None:
            return
        principal = await authenticate(request.headers.get("authorization"), self.settings)
        if principal.role not in operation.roles:
            raise Forbidden(f"role {principal.role} may not do this; allowed: {', '.join(sorted(operation.roles))}")

    async def readiness(self) -> tuple[dict[str, Any], int]:
        async def one(upstream: Upstream) -> tuple[str, Any]:
            try:
                answer = await upstream.client.get("/readyz", timeout=min(5.0, self.settings.upstream_timeout_seconds))
                return upstream.name, answer.json()
            except (httpx.HTTPError, ValueError) as exc:
                return upstream.name, {"status": "unreachable", "error": type(exc).__name__}

        results = dict(await asyncio.gather(*(one(u) for u in self.all_upstreams())))
        # A service that answers gets its spec loaded now rather than at the keeper's next try, so
        # that "ready" also means the API document lists it.
        answering = [u for u in self.upstreams.values() if u.spec is None and results[u.name].get("status") == "ready"]
        await asyncio.gather(*(self._try_spec(u) for u in answering))
        missing = sorted(name for name, u in self.upstreams.items() if u.spec is None)
        ready = all(r.get("status") == "ready" for r in results.values()) and not missing
        body = {"status": "ready" if ready else "not ready", "services": results, "openapi": {"missing": missing}}
        return body, 200 if ready else 503

    async def _try_spec(self, upstream: Upstream) -> None:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            await upstream.load_spec(fetch_seconds=min(SPEC_TIMEOUT_SECONDS, self.settings.upstream_timeout_seconds))

    def openapi(self, app: FastAPI) -> dict[str, Any]:
        base = get_openapi(
            title="E-health suite API",
            version="1.0.0",
            routes=app.routes,
            description="The single public API of the e-health suite: scheduling, prescriptions, "
            "integration, notifications, pharmacy and reimbursement.",
        )
        specs = {name: u.spec for name, u in self.upstreams.items() if u.spec is not None}
        unavailable = [name for name, u in self.upstreams.items() if u.spec is None]
        merged = openapi.merge(base, specs, unavailable=unavailable)
        return openapi.document_problems(merged, Problem.model_json_schema(ref_template=openapi.REF_PREFIX + "{model}"))


def _raw_path(request: Request) -> str:
    """The path as the client sent it, still percent-encoded: decoded, an id holding ``%2F`` or a
    control character would reach another route or be no URL at all (the fuzzer's 500s)."""
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if isinstance(raw, bytes) and raw else quote(request.url.path)


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()
    configure_logging(settings.log_level, json=settings.log_json)
    metrics = AppMetrics()
    gateway = Gateway(settings, metrics.registry)
    gateway.build_upstreams()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        async with gateway.running():
            yield

    # /docs and /redoc with Swagger UI and ReDoc served by the gateway itself (fastapi-offline ships
    # them): the default pages load them from a CDN, blank on a clinic's offline network. No
    # validator badge either: it would send the document to an outside validator.
    app = FastAPIOffline(
        title="E-health suite API",
        version="1.0.0",
        lifespan=lifespan,
        static_url=DOCS_ASSETS,
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
    )
    app.state.settings = settings
    app.state.gateway = gateway
    install_problem_handlers(app)
    install_dev_auth(app, settings)

    @app.get("/healthz", tags=["health"], summary="The gateway process is up")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="Every service ready (database, broker, outbox backlog) and its API document loaded",
        description="503 while a service is not ready or its OpenAPI document is not loaded yet; "
        "`openapi.missing` names the services whose operations `/openapi.json` cannot list yet.",
    )
    async def readyz() -> JSONResponse:
        return JSONResponse(*await gateway.readiness())

    @app.api_route("/api/v1/{service}/{path:path}", methods=METHODS, include_in_schema=False)
    async def proxy(service: str, request: Request) -> Response:
        return await gateway.forward(service, request)

    @app.post("/webhooks/cer/{facility_id}", include_in_schema=False)
    async def cer_webhook(request: Request) -> Response:
        """Signed by CeR, not by a token: the integration service checks the signature."""
        return await gateway.forward_webhook("integration", request)

    @app.api_route("/sandbox/{path:path}", methods=METHODS, include_in_schema=False)
    async def sandbox(request: Request) -> Response:
        return await gateway.forward_to_sandbox(request)

    def merged_openapi() -> dict[str, Any]:
        return gateway.openapi(app)

    app.openapi = merged_openapi  # type: ignore[method-assign]
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        overrides={"/products/import": 10 * 1024 * 1024, "/webhooks/": WEBHOOK_MAX_BYTES},
    )
    app.add_middleware(HeaderLimitMiddleware, max_bytes=settings.max_header_bytes)
    app.add_middleware(RequestIdMiddleware, service="gateway")
    install_metrics(app, metrics)
    # Outermost: a preflight carries no token and is answered here, before auth, limits or routing.
    app.add_middleware(GatewayCORSMiddleware, origins=settings.allowed_cors_origins)
    return app

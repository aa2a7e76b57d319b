"""One upstream per service: an httpx client (in-process ASGI or pooled HTTP) and its route table."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI

from shared.auth import ROLES_EXTENSION

_PARAM = re.compile(r"\{([^}/]+)\}")


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    pattern: re.Pattern[str]
    roles: frozenset[str] | None  # None: no token needed


def compile_template(template: str) -> re.Pattern[str]:
    parts = _PARAM.split(template)
    regex = "".join(re.escape(p) if i % 2 == 0 else "[^/]+" for i, p in enumerate(parts))
    return re.compile(f"^{regex}$")


def operations_from_openapi(spec: dict[str, Any]) -> list[Operation]:
    found = []
    for template, item in spec.get("paths", {}).items():
        for method, op in item.items():
            if method.lower() not in {"get", "post", "put", "patch", "delete"}:
                continue
            roles = op.get(ROLES_EXTENSION)
            found.append(
                Operation(
                    method.upper(),
                    template,
                    compile_template(template),
                    frozenset(roles) if roles is not None else None,
                )
            )
    # Literal paths before templated ones: /bookings/search must win over /bookings/{id}.
    return sorted(found, key=lambda o: (o.template.count("{"), -len(o.template)))


@dataclass
class Upstream:
    name: str
    client: httpx.AsyncClient
    app: FastAPI | None = None  # set when the service runs in the gateway's process
    spec: dict[str, Any] | None = None
    operations: list[Operation] = field(default_factory=list)
    # Why the last attempt to load the spec failed (None once it loaded): shown in /readyz.
    spec_error: str | None = None
    # One fetch at a time: a burst of first requests must not fetch the same document 32 times.
    _spec_lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def embedded(self) -> bool:
        return self.app is not None

    async def load_spec(self, *, refresh: bool = False, fetch_seconds: float | None = None) -> dict[str, Any]:
        """The service's OpenAPI document, fetched once; ``refresh`` fetches it again (a service
        redeployed with new routes). A failed refresh keeps the document already loaded."""
        if self.spec is not None and not refresh:
            return self.spec
        async with self._spec_lock:
            if self.spec is not None and not refresh:
                return self.spec
            try:
                spec = await self._fetch_spec(fetch_seconds)
            except (httpx.HTTPError, ValueError) as exc:
                self.spec_error = type(exc).__name__
                raise
            self.operations = operations_from_openapi(spec)
            self.spec = spec
            self.spec_error = None
            return spec

    async def _fetch_spec(self, fetch_seconds: float | None) -> dict[str, Any]:
        if self.app is not None:
            return self.app.openapi()
        response = await (
            self.client.get("/openapi.json")
            if fetch_seconds is None
            else self.client.get("/openapi.json", timeout=fetch_seconds)
        )
        response.raise_for_status()
        spec = response.json()
        if not isinstance(spec, dict) or not isinstance(spec.get("paths"), dict):
            raise ValueError("not an OpenAPI document")
        return spec

    def match(self, method: str, path: str) -> tuple[Operation | None, bool]:
        """The operation for ``method path``, and whether the path exists under another method."""
        path_known = False
        for op in self.operations:
            if op.pattern.match(path):
                if op.method == method:
                    return op, True
                path_known = True
        return None, path_known


def in_process_upstream(name: str, app: FastAPI, timeout: float) -> Upstream:
    transport = httpx.ASGITransport(app=app)
    return Upstream(name, httpx.AsyncClient(transport=transport, base_url=f"http://{name}", timeout=timeout), app)


def remote_upstream(name: str, base_url: str, timeout: float, max_connections: int) -> Upstream:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    client = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(timeout, connect=3.0), limits=limits)
    return Upstream(name, client)

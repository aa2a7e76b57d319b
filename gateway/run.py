"""`make run`: the whole suite in one process on embedded defaults, gateway on :8000."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from fastapi import FastAPI

from gateway import demo
from gateway.app import create_app
from shared.settings import GatewaySettings

BANNER = """
  E-health suite (embedded: one process, SQLite under ./var, in-process event bus, demo data)

  API docs:   http://{host}:{port}/docs        OpenAPI: http://{host}:{port}/openapi.json
  Readiness:  http://{host}:{port}/readyz

  A development token (demo clinic administrator):
    curl -s -X POST http://{host}:{port}/api/v1/auth/dev-token -H 'Content-Type: application/json' \\
         -d '{{"sub": "me", "role": "facility_admin", "facility_id": "{facility}"}}'
  then:  curl -H "Authorization: Bearer <access_token>" http://{host}:{port}/api/v1/scheduling/slots
"""


def embedded_app(settings: GatewaySettings, public_url: str = "http://127.0.0.1:8000") -> FastAPI:
    app = create_app(settings)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan_with_demo(a: FastAPI) -> AsyncIterator[None]:
        async with inner(a):
            if settings.seed_demo_data:
                transport = httpx.ASGITransport(app=a)
                async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
                    await demo.seed(client, public_url=public_url)
            yield

    app.router.lifespan_context = lifespan_with_demo
    return app


def refuse_dev_auth_beyond_loopback(host: str, settings: GatewaySettings) -> None:
    """Dev auth hands a token of any role to whoever asks: only this machine may ask."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if settings.dev_auth and not loopback:
        raise SystemExit(
            f"DEV_AUTH is on: `make run` binds to 127.0.0.1 only (HOST={host}); to listen on {host}, "
            "set DEV_AUTH=false and a JWT_SECRET of your own"
        )


def main() -> None:
    os.environ.setdefault("SEED_DEMO_DATA", "true")
    os.environ.setdefault("LOG_JSON", "false")
    settings = GatewaySettings()
    host, port = os.environ.get("HOST", "127.0.0.1"), int(os.environ.get("PORT", "8000"))
    refuse_dev_auth_beyond_loopback(host, settings)
    print(BANNER.format(host=host, port=port, facility=demo.DEMO_FACILITY), flush=True)
    # A server bound to every interface is reached from here at the loopback address.
    public = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"  # noqa: S104
    uvicorn.run(embedded_app(settings, public), host=host, port=port, log_config=None)


if __name__ == "__main__":
    main()

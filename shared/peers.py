"""How one service reaches another over HTTP: by base URL (distributed) or in this process (embedded).

ARCHITECTURE: a question that needs an answer now goes over HTTP through a typed client; in the
embedded default the same client talks to the other service's app in memory (httpx's ASGI
transport). One code path, two transports - the service never knows which one it got.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpx
from fastapi import FastAPI

from shared.settings import Settings

# The apps already built in this process, by service name (the embedded launcher fills it).
PeerApps = Mapping[str, FastAPI]


class PeerUnreachable(RuntimeError):
    """Neither a URL nor an in-process app: a configuration error, reported at start-up."""


@dataclass(frozen=True)
class PeerAddress:
    base_url: str
    transport: httpx.AsyncBaseTransport | None = None


def peer_address(name: str, settings: Settings, apps: PeerApps | None) -> PeerAddress:
    url = settings.service_url(name)
    if url:
        return PeerAddress(url)
    app = (apps or {}).get(name)
    if app is None:
        raise PeerUnreachable(
            f"the {settings.service_name} service needs the {name} service: set {name.upper()}_URL to its base URL"
        )
    return PeerAddress(f"http://{name}.embedded", httpx.ASGITransport(app=app))

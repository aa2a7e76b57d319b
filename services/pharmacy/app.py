"""Wiring of the pharmacy service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.pharmacy.api import router
from services.pharmacy.models import IdempotencyKey, Inbox, Outbox
from shared.app import ServiceDefinition, build_service_app
from shared.bus import EventBus
from shared.peers import PeerApps
from shared.settings import Settings

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
)


def create_app(
    settings: Settings | None = None, *, bus: EventBus | None = None, peers: PeerApps | None = None
) -> FastAPI:
    """``peers`` is accepted for the launchers' uniform call: this service calls no other."""
    return build_service_app(DEFINITION, settings or Settings(service_name="pharmacy"), bus=bus)

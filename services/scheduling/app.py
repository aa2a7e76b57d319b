"""Wiring of the scheduling service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.scheduling import cer
from services.scheduling.api import router
from services.scheduling.models import IdempotencyKey, Inbox, Outbox
from shared.app import ServiceDefinition, build_service_app
from shared.bus import EventBus
from shared.peers import PeerApps
from shared.settings import Settings

DEFINITION = ServiceDefinition(
    name="scheduling",
    title="Scheduling service",
    migrations_dir=Path(__file__).parent / "migrations",
    outbox_model=Outbox,
    inbox_model=Inbox,
    idempotency_model=IdempotencyKey,
    routers=[router],
    subscribe=cer.subscribe,
)


def create_app(
    settings: Settings | None = None, *, bus: EventBus | None = None, peers: PeerApps | None = None
) -> FastAPI:
    """``peers`` is accepted for the launchers' uniform call: this service calls no other (it hears
    of CeR's notifications as events)."""
    return build_service_app(DEFINITION, settings or Settings(service_name="scheduling"), bus=bus)

"""Wiring of the audit service: the consumer of ``audit.access.recorded`` and the read-only API."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.audit import handlers
from services.audit.api import router
from services.audit.models import IdempotencyKey, Inbox, Outbox
from services.audit.settings import AuditSettings
from shared.app import ServiceDefinition, build_service_app
from shared.bus import EventBus
from shared.peers import PeerApps
from shared.settings import Settings

DEFINITION = ServiceDefinition(
    name="audit",
    title="Access audit service (who read or changed patient data)",
    migrations_dir=Path(__file__).parent / "migrations",
    outbox_model=Outbox,
    inbox_model=Inbox,
    idempotency_model=IdempotencyKey,
    routers=[router],
    subscribe=handlers.subscribe,
)


def create_app(
    settings: Settings | None = None, *, bus: EventBus | None = None, peers: PeerApps | None = None
) -> FastAPI:
    del peers  # the audit calls nobody
    return build_service_app(DEFINITION, AuditSettings.from_settings(settings), bus=bus)

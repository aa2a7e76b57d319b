"""The access audit's rows on the real PostgreSQL, with the roles a production deployment uses.

The migration runs as the owner (here the superuser) and grants the runtime role SELECT and INSERT on
``access_events``, nothing more, and the maintenance role SELECT and DELETE. Connected as the runtime
role, the service stores events and lists them but can neither UPDATE nor DELETE a row; a trigger
refuses UPDATE even to the owner; the maintenance role's purge deletes only rows past the retention.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from services.audit.app import DEFINITION, create_app
from services.audit.models import Base
from services.audit.purge import purge_expired
from shared.audit import ACCESS_RECORDED, AccessRecorded, AuditEntry
from shared.auth import Claims, Role, issue_token
from shared.bus import InProcessBus
from shared.db import Grants, migrate
from shared.events import Envelope
from tests.conftest import PG_BASE, make_settings, running_client
from tests.integration.conftest import scalar

pytestmark = pytest.mark.infra

PATIENT = "44051401359"
NOW = dt.datetime(2046, 6, 1, 12, 0, tzinfo=dt.UTC)
INSERT = (
    "INSERT INTO access_events (event_id, position, at, actor, role, tenant, action, resource, patient_pesel,"
    " recorded_at) VALUES (:event_id, 0, :at, 'desk', 'registrar', 'clinic-a', 'scheduling.booking.create',"
    " 'booking/1', :pesel, :at)"
)


@dataclass(frozen=True)
class Roles:
    runtime: str
    maintenance: str

    def url(self, database_url: str, role: str) -> str:
        return make_url(database_url).set(username=role, password=None).render_as_string(hide_password=False)


async def _admin(sql: str) -> None:
    engine = create_async_engine(f"{PG_BASE}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(sql))
    finally:
        await engine.dispose()


@pytest_asyncio.fixture
async def roles(pg_url: str) -> AsyncIterator[Roles]:
    tag = uuid.uuid4().hex[:8]
    made = Roles(f"audit_runtime_{tag}", f"audit_maintenance_{tag}")
    for role in (made.runtime, made.maintenance):
        await _admin(f"CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
    await migrate(DEFINITION.migrations_dir, pg_url, Grants(made.runtime, made.maintenance))
    yield made
    engine = create_async_engine(pg_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(f"DROP OWNED BY {made.runtime}, {made.maintenance}"))
    finally:
        await engine.dispose()
    for role in (made.runtime, made.maintenance):
        await _admin(f"DROP ROLE {role}")


async def _execute(url: str, sql: str, **params: object) -> int:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(sa.text(sql), params)
            return int(result.rowcount)
    finally:
        await engine.dispose()


async def _insert(url: str, at: dt.datetime) -> None:
    await _execute(url, INSERT, event_id=uuid.uuid4(), at=at, pesel=PATIENT)


async def test_the_runtime_role_may_add_and_read_audit_rows_but_never_change_or_delete_them(
    pg_url: str, roles: Roles
) -> None:
    runtime = roles.url(pg_url, roles.runtime)
    await _insert(runtime, NOW)
    assert await scalar(runtime, "SELECT count(*) FROM access_events") == 1
    for statement in ("UPDATE access_events SET actor = 'someone-else'", "DELETE FROM access_events"):
        with pytest.raises(sa.exc.DBAPIError, match="permission denied"):
            await _execute(runtime, statement)
    with pytest.raises(sa.exc.DBAPIError, match="permission denied"):
        await _execute(runtime, "TRUNCATE access_events")
    # Not even the owner (a superuser here, as the services connect today) may rewrite a row.
    with pytest.raises(sa.exc.DBAPIError, match="append-only"):
        await _execute(pg_url, "UPDATE access_events SET actor = 'someone-else'")
    assert await scalar(pg_url, "SELECT actor FROM access_events") == "desk"
    # The rest of the service's tables are the runtime role's to use as the code does.
    assert await _execute(runtime, "DELETE FROM idempotency_keys") == 0


async def test_the_maintenance_purge_deletes_only_rows_past_the_retention(pg_url: str, roles: Roles) -> None:
    runtime = roles.url(pg_url, roles.runtime)
    maintenance = roles.url(pg_url, roles.maintenance)
    # Kept through the end of the row's year + 20: at NOW (2046) the rows of 2025 go, those of 2026 stay.
    cutoff = dt.datetime(2026, 1, 1, tzinfo=ZoneInfo("Europe/Warsaw"))
    for at in (cutoff - dt.timedelta(seconds=1), cutoff, NOW):
        await _insert(runtime, at)
    # The maintenance role deletes, nothing else: no UPDATE, no INSERT.
    with pytest.raises(sa.exc.DBAPIError, match="permission denied"):
        await _insert(maintenance, NOW)
    with pytest.raises(sa.exc.DBAPIError, match="permission denied"):
        await _execute(maintenance, "UPDATE access_events SET actor = 'x'")
    with pytest.raises(sa.exc.DBAPIError, match="permission denied"):
        await purge_expired(runtime, NOW, 20)

    assert await purge_expired(maintenance, NOW, 20) == 1
    assert await scalar(pg_url, "SELECT count(*) FROM access_events") == 2
    assert await scalar(pg_url, "SELECT min(at) FROM access_events") == cutoff
    assert await purge_expired(maintenance, NOW, 20) == 0


async def test_the_service_runs_as_the_runtime_role_and_stores_a_redelivered_event_once(
    pg_url: str, roles: Roles, tmp_path: Path
) -> None:
    settings = make_settings(
        tmp_path,
        service_name="audit",
        database_url=roles.url(pg_url, roles.runtime),
        migration_database_url=pg_url,
        database_runtime_role=roles.runtime,
        database_maintenance_role=roles.maintenance,
    )
    bus = InProcessBus(retry_base_seconds=0.01)
    app = create_app(settings, bus=bus)
    payload = AccessRecorded(
        actor="desk",
        role="registrar",
        tenant="clinic-a",
        action="scheduling.booking.list",
        at=NOW,
        # A long list answer: more rows than one INSERT's parameters allow.
        entries=[AuditEntry(resource=f"booking/{n}", patient_pesel=PATIENT) for n in range(3500)],
    )
    envelope = Envelope(type=ACCESS_RECORDED, facility_id="clinic-a", payload=payload.model_dump(mode="json"))
    admin = issue_token(Claims(sub="admin", role=Role.facility_admin, facility_id="clinic-a"), settings)
    async for client in running_client(app):
        await bus.start()
        for _ in range(2):
            await bus.publish(envelope)
        await bus.drain()
        answer = await client.get("/api/v1/audit/events", headers={"Authorization": f"Bearer {admin}"})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()) == 100
        assert {r["patient"] for r in answer.json()} == {"44*********"}
        assert await scalar(pg_url, "SELECT count(DISTINCT resource) FROM access_events") == 3500
        assert await scalar(pg_url, "SELECT count(*) FROM access_events") == 3500
        assert await bus.dead_letters("audit") == []


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": False})
    return list(compare_metadata(context, Base.metadata))


async def test_the_audit_migration_builds_exactly_what_the_models_declare(pg_url: str, roles: Roles) -> None:
    engine = create_async_engine(pg_url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
    finally:
        await engine.dispose()

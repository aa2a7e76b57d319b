"""The scheduling migrations on the real PostgreSQL: they build exactly what the models declare."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from services.scheduling.models import Base
from shared.db import alembic_config, migrate
from tests.conftest import PG_BASE, SESSION_TAG, _drop_database
from tests.integration.conftest import ROOT, scalar

pytestmark = pytest.mark.infra

MIGRATIONS = Path(__file__).resolve().parents[2] / "services" / "scheduling" / "migrations"
EXCLUSION = "ex_slots_practitioner_time"


def _at(hour: int, minute: int) -> dt.datetime:
    return dt.datetime(2030, 1, 7, hour, minute, tzinfo=dt.UTC)


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": False})
    return list(compare_metadata(context, Base.metadata))


def _about_exclusion_constraint(diff: Any) -> bool:
    """The exclusion constraint (and the GiST index behind it) exists only in the migration."""
    if isinstance(diff, list):  # modify_* entries come as a list of tuples
        return all(_about_exclusion_constraint(d) for d in diff)
    return any(getattr(part, "name", None) == EXCLUSION for part in diff)


async def test_migrations_on_a_fresh_database_match_the_models(pg_url: str) -> None:
    url = pg_url
    await migrate(MIGRATIONS, url)

    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            differences = await conn.run_sync(_differences)
            constraint = (
                await conn.execute(
                    sa.text(
                        "SELECT c.contype::text, pg_get_constraintdef(c.oid) FROM pg_constraint c "
                        "JOIN pg_class t ON t.oid = c.conrelid WHERE t.relname = 'slots' AND c.conname = :name"
                    ),
                    {"name": EXCLUSION},
                )
            ).one_or_none()
            active_index = await conn.scalar(
                sa.text("SELECT indexdef FROM pg_indexes WHERE indexname = 'uq_bookings_active_slot'")
            )
            version = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
    finally:
        await engine.dispose()

    assert [d for d in differences if not _about_exclusion_constraint(d)] == []
    assert constraint is not None, "the exclusion constraint on slots is missing"
    kind, definition = constraint
    assert kind == "x"
    assert "gist" in definition.lower() and "practitioner_id WITH =" in definition and "&&" in definition
    assert active_index is not None and "UNIQUE" in active_index and "status)::text = 'booked'" in active_index
    head = ScriptDirectory.from_config(alembic_config(MIGRATIONS, url)).get_current_head()
    assert version == head

    # Running them again (every restart does) changes nothing.
    await migrate(MIGRATIONS, url)
    assert await scalar(url, "SELECT count(*) FROM alembic_version") == 1


async def test_the_database_itself_refuses_overlapping_slots_and_a_second_active_booking(pg_url: str) -> None:
    url = pg_url
    await migrate(MIGRATIONS, url)
    ids = {name: uuid.uuid4() for name in ("practitioner", "location", "work_type", "schedule", "slot")}
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            now = "now()"
            await conn.execute(
                sa.text(
                    "INSERT INTO practitioners (id, facility_id, name, npwz, profession, poz, created_at) "
                    f"VALUES (:practitioner, 'f', 'Dr', '5425740', 'doctor', true, {now})"
                ),
                {"practitioner": ids["practitioner"]},
            )
            await conn.execute(
                sa.text(
                    f"INSERT INTO locations (id, facility_id, name, created_at) VALUES (:location, 'f', 'L', {now})"
                ),
                {"location": ids["location"]},
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO work_types (id, facility_id, name, visible_online, prescription_only, created_at) "
                    f"VALUES (:work_type, 'f', 'W', false, false, {now})"
                ),
                {"work_type": ids["work_type"]},
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO schedules (id, facility_id, practitioner_id, location_id, work_type_id, date, "
                    "start_time, end_time, visit_minutes, cer_published, created_at) VALUES (:schedule, 'f', "
                    f":practitioner, :location, :work_type, '2030-01-07', '08:00', '09:00', 30, false, {now})"
                ),
                ids,
            )
        insert_slot = sa.text(
            "INSERT INTO slots (id, facility_id, schedule_id, practitioner_id, location_id, work_type_id, start_at, "
            "end_at, available) VALUES (:id, 'f', :schedule, :practitioner, :location, :work_type, :start, :end, true)"
        )
        async with engine.begin() as conn:
            await conn.execute(
                insert_slot,
                {**ids, "id": ids["slot"], "start": _at(8, 0), "end": _at(8, 30)},
            )
            # Touching ends are fine ('[)' ranges).
            await conn.execute(insert_slot, {**ids, "id": uuid.uuid4(), "start": _at(8, 30), "end": _at(9, 0)})
        with pytest.raises(sa.exc.IntegrityError, match=EXCLUSION):
            async with engine.begin() as conn:
                await conn.execute(
                    insert_slot,
                    {**ids, "id": uuid.uuid4(), "start": _at(8, 15), "end": _at(8, 45)},
                )

        insert_booking = sa.text(
            "INSERT INTO bookings (id, facility_id, slot_id, patient_pesel, source, status, created_at) "
            "VALUES (:id, 'f', :slot, '44051401359', 'desk', :status, now())"
        )
        async with engine.begin() as conn:
            await conn.execute(insert_booking, {"id": uuid.uuid4(), "slot": ids["slot"], "status": "cancelled"})
            await conn.execute(insert_booking, {"id": uuid.uuid4(), "slot": ids["slot"], "status": "booked"})
        with pytest.raises(sa.exc.IntegrityError, match="uq_bookings_active_slot"):
            async with engine.begin() as conn:
                await conn.execute(insert_booking, {"id": uuid.uuid4(), "slot": ids["slot"], "status": "booked"})
    finally:
        await engine.dispose()


@pytest.fixture
async def missing_database() -> AsyncIterator[str]:
    """The URL of a database that does not exist yet; dropped afterwards."""
    name = f"test_{SESSION_TAG}_fresh_{uuid.uuid4().hex[:6]}"
    try:
        yield f"{PG_BASE}/{name}"
    finally:
        await _drop_database(name)


async def test_processes_starting_together_create_and_migrate_a_missing_database_once(missing_database: str) -> None:
    """``uvicorn --workers N`` (or N replicas) start at once; none of them may fail on the race."""
    script = (
        "import asyncio, pathlib, sys; from shared.db import migrate; "
        "asyncio.run(migrate(pathlib.Path(sys.argv[1]), sys.argv[2]))"
    )
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", script, str(MIGRATIONS), missing_database, cwd=ROOT, stderr=asyncio.subprocess.PIPE
        )
        for _ in range(3)
    ]
    errors = [(await p.communicate())[1].decode()[-2000:] for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], "\n".join(errors)

    assert await scalar(missing_database, "SELECT count(*) FROM alembic_version") == 1
    assert await scalar(missing_database, "SELECT count(*) FROM pg_constraint WHERE conname = :n", n=EXCLUSION) == 1


@pytest.mark.parametrize("service", ["prescriptions", "integration", "pharmacy", "notifications"])
async def test_each_services_migrations_build_what_its_models_declare(service: str, pg_url: str) -> None:
    models = importlib.import_module(f"services.{service}.models")
    migrations = ROOT / "services" / service / "migrations"
    await migrate(migrations, pg_url)

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True, "compare_server_default": False})
        return list(compare_metadata(context, models.Base.metadata))

    engine = create_async_engine(pg_url)
    try:
        async with engine.connect() as conn:
            found = await conn.run_sync(differences)
    finally:
        await engine.dispose()
    assert found == []

"""The body of every service's Alembic ``env.py``: online migrations over the async engine."""

from __future__ import annotations

import asyncio
import zlib

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import Grants


def run(target_metadata: sa.MetaData) -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("sqlalchemy.url is not set; run migrations through shared.db.migrate")
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, target_metadata))


# Replicas (or uvicorn workers) of one service start together and all migrate: on PostgreSQL they
# take turns on this lock (held until the migration transaction ends) instead of racing on DDL.
MIGRATION_LOCK_ID = zlib.crc32(b"alembic-migrate")


def _configure_and_run(connection: Connection, target_metadata: sa.MetaData) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
        grants = context.config.attributes.get("grants")
        if isinstance(grants, Grants) and connection.dialect.name == "postgresql":
            grant(connection, target_metadata, grants)


async def _run_online(url: str, target_metadata: sa.MetaData) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure_and_run, target_metadata)
            await connection.commit()
    finally:
        await engine.dispose()


def grant(connection: Connection, target_metadata: sa.MetaData, grants: Grants) -> None:
    """What the runtime and maintenance roles may do on the service's tables (PostgreSQL only).

    Run after every migration, in its transaction, so a table added later is granted too. The runtime
    role gets SELECT, INSERT, UPDATE, DELETE, except on append-only tables (``metadata.info["append_only"]``)
    where it gets SELECT and INSERT only: rows there outlive any bug or compromise of the service. The
    maintenance role may read and DELETE append-only rows (the retention purge) and nothing else.
    """
    quote = connection.dialect.identifier_preparer.quote
    append_only: frozenset[str] = target_metadata.info.get("append_only", frozenset())
    tables = [quote(t.name) for t in target_metadata.sorted_tables]
    kept = [quote(name) for name in sorted(append_only)]
    changed = [t for t in tables if t not in kept]
    if grants.runtime_role:
        role = quote(grants.runtime_role)
        connection.execute(sa.text(f"GRANT USAGE ON SCHEMA public TO {role}"))
        if changed:
            connection.execute(sa.text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {', '.join(changed)} TO {role}"))
        if kept:
            connection.execute(sa.text(f"REVOKE UPDATE, DELETE, TRUNCATE ON {', '.join(kept)} FROM {role}"))
            connection.execute(sa.text(f"GRANT SELECT, INSERT ON {', '.join(kept)} TO {role}"))
        connection.execute(sa.text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}"))
    if grants.maintenance_role and kept:
        role = quote(grants.maintenance_role)
        connection.execute(sa.text(f"GRANT USAGE ON SCHEMA public TO {role}"))
        connection.execute(sa.text(f"GRANT SELECT, DELETE ON {', '.join(kept)} TO {role}"))

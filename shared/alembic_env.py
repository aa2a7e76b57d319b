"""The body of every service's Alembic ``env.py``: online migrations over the async engine."""

from __future__ import annotations

import asyncio
import zlib

import sqlalchemy as sa
from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


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


async def _run_online(url: str, target_metadata: sa.MetaData) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_configure_and_run, target_metadata)
            await connection.commit()
    finally:
        await engine.dispose()

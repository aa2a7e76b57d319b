"""Async SQLAlchemy 2 engine and sessions that behave the same on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import stat
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiosqlite
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only

# Stable constraint names, so migrations can refer to them and errors can be recognised.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> sa.MetaData:
    return sa.MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timezone-aware instant stored as UTC on every backend (SQLite keeps no offset)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTCDateTime column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class ExactDecimal(sa.types.TypeDecorator[Decimal]):
    """A decimal quantity stored as its text, so SQLite (whose NUMERIC passes through a float) keeps it exact."""

    impl = sa.String(40)
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Decimal) or not value.is_finite():
            raise ValueError("ExactDecimal takes a finite Decimal")
        return str(value)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Decimal | None:
        return None if value is None else Decimal(value)


# Each service declares its own DeclarativeBase (its own metadata, its own database) with these.
TYPE_ANNOTATION_MAP: dict[Any, Any] = {dt.datetime: UTCDateTime(), uuid.UUID: sa.Uuid(), Decimal: ExactDecimal()}


async def updated_rows(session: AsyncSession, statement: sa.Update) -> int:
    """How many rows a conditional UPDATE changed: how a race is decided without reading first
    (the winner changes the row, the loser changes nothing)."""
    result = await session.execute(statement.execution_options(synchronize_session=False))
    return int(result.rowcount)  # type: ignore[attr-defined]


def upsert_insert(session: AsyncSession) -> Any:
    """The dialect's ``insert`` (PostgreSQL or SQLite), which has ``on_conflict_do_*`` for upserts."""
    from sqlalchemy.dialects import postgresql, sqlite

    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


# The file holds patients' data (PESELs, prescriptions): readable by the service's own user only.
SQLITE_FILE_MODE = 0o600


def secure_sqlite_file(url: str) -> None:
    """Create the SQLite file of ``url`` with mode 0600 before SQLite does (with the umask, often
    0644), and narrow an existing one. SQLite gives its -wal and -shm files the database file's mode."""
    if not is_sqlite(url):
        return
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SQLITE_FILE_MODE))
    for each in (path, Path(f"{path}-wal"), Path(f"{path}-shm"), Path(f"{path}-journal")):
        with contextlib.suppress(FileNotFoundError):
            if stat.S_IMODE(each.stat().st_mode) & 0o077:
                each.chmod(SQLITE_FILE_MODE)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    if is_sqlite(url):
        secure_sqlite_file(url)
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)


def _configure_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # WAL lets readers run beside the one writer; foreign keys are off by default in SQLite.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()
        # pysqlite's own transaction handling defers BEGIN; take it over so that a write
        # transaction starts with BEGIN IMMEDIATE and never deadlocks on lock upgrade.
        dbapi_connection.isolation_level = None

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine.sync_engine, "handle_error")
    def _close_failed_cursor(context: Any) -> None:
        # The aiosqlite adapter leaves the cursor of a failed statement (a 409's IntegrityError) to
        # the garbage collector. Finalised later on the event-loop thread, it blocks on its
        # connection while that connection's thread waits for the write lock, so the whole loop
        # (and the lock holder, which needs the loop to commit) freezes until "database is
        # locked". Close it now, while its connection is idle.
        tb = context.original_exception.__traceback__
        while tb is not None:
            for value in list(tb.tb_frame.f_locals.values()):
                if isinstance(value, aiosqlite.Cursor):
                    with contextlib.suppress(Exception):  # the original error is what matters
                        await_only(value.close())
            tb = tb.tb_next


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def ensure_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` if it does not exist yet."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql" or not parsed.database:
        return
    admin = create_async_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        async with admin.connect() as conn:
            exists = await conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
            )
            if not exists:
                quoted = parsed.database.replace('"', '""')
                try:
                    await conn.execute(sa.text(f'CREATE DATABASE "{quoted}"'))
                except sa.exc.DBAPIError:
                    # Another process starting at the same moment created it first: that is fine.
                    if not await conn.scalar(
                        sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": parsed.database}
                    ):
                        raise
    finally:
        await admin.dispose()


@dataclass(frozen=True)
class Grants:
    """PostgreSQL roles a migration grants to (``shared.alembic_env``); None: that role gets nothing."""

    runtime_role: str | None = None
    maintenance_role: str | None = None

    @classmethod
    def of(cls, runtime_role: str | None, maintenance_role: str | None) -> Grants | None:
        return cls(runtime_role, maintenance_role) if runtime_role or maintenance_role else None


def alembic_config(migrations_dir: Path, url: str, grants: Grants | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["grants"] = grants
    return config


async def migrate(migrations_dir: Path, url: str, grants: Grants | None = None) -> None:
    """Bring the service's database to the newest Alembic revision (as the owner: ``url``), then
    grant the runtime and maintenance roles what they need (PostgreSQL, when ``grants`` names them)."""
    await ensure_database(url)
    secure_sqlite_file(url)
    # Alembic's env.py runs its own event loop for the async engine, so it gets a thread of its own.
    await asyncio.to_thread(command.upgrade, alembic_config(migrations_dir, url, grants), "head")

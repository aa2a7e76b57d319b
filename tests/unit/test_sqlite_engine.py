"""The embedded default's SQLite engine: a failed statement must not freeze the event loop later."""

from __future__ import annotations

import asyncio
import gc
import os
import sqlite3
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from shared.db import create_engine, secure_sqlite_file
from shared.settings import Settings


def hold_write_lock(path: Path, seconds: float, holding: threading.Event) -> None:
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        other.execute("BEGIN IMMEDIATE")
        holding.set()
        time.sleep(seconds)
        other.execute("COMMIT")
    finally:
        other.close()


async def test_a_constraint_violation_leaves_nothing_that_freezes_the_loop_later(tmp_path: Path) -> None:
    # The sequence seen in the API tests: a 409 (IntegrityError) leaves its cursor to the garbage
    # collector; later the same connection waits for the write lock, and the collector, running on
    # the event-loop thread, finalises that cursor and blocks on the connection until the wait ends.
    path = tmp_path / "t.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
            await conn.execute(sa.text("INSERT INTO t (id) VALUES (1)"))
        gc.collect()
        # Everything alive so far (a long test session's heap) is set aside, so the collection
        # timed below looks only at this test's objects and its time is the freeze alone.
        gc.freeze()
        gc.disable()
        async with engine.connect() as conn:
            with pytest.raises(IntegrityError):
                await conn.execute(sa.text("INSERT INTO t (id) VALUES (1)"))
            await conn.rollback()

            holding = threading.Event()
            holder = threading.Thread(target=hold_write_lock, args=(path, 3.0, holding))
            holder.start()
            await asyncio.to_thread(holding.wait, 5)
            waiting = asyncio.ensure_future(conn.execute(sa.text("INSERT INTO t (id) VALUES (2)")))
            await asyncio.sleep(0.3)  # the connection's thread now waits for the lock
            started = time.perf_counter()
            gc.collect()
            frozen = time.perf_counter() - started
            await waiting
            await conn.commit()
            await asyncio.to_thread(holder.join)
        # Frozen means blocked until the lock is released (~2.7 s); a wide margin keeps a loaded
        # 2-core machine from being mistaken for a freeze.
        assert frozen < 1.5, f"the event loop was frozen for {frozen:.2f} s"
    finally:
        gc.enable()
        gc.unfreeze()
        await engine.dispose()


@pytest.fixture
def usual_umask() -> Iterator[None]:
    """The umask most machines have (022): what SQLite alone would create is then world-readable."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("usual_umask")
async def test_a_new_database_file_and_its_wal_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "patients.db"
    engine = create_engine(f"sqlite+aiosqlite:///{path}")
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("CREATE TABLE t (pesel TEXT)"))
            await conn.execute(sa.text("INSERT INTO t VALUES ('44051401359')"))
        async with engine.connect() as conn:  # the WAL and its index exist while a connection is open
            await conn.execute(sa.text("SELECT * FROM t"))
            files = [path, Path(f"{path}-wal"), Path(f"{path}-shm")]
            assert all(f.exists() for f in files)
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    finally:
        await engine.dispose()


@pytest.mark.usefixtures("usual_umask")
def test_an_existing_world_readable_database_file_is_narrowed(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    sqlite3.connect(path).close()
    path.chmod(0o644)
    secure_sqlite_file(f"sqlite+aiosqlite:///{path}")
    assert mode(path) == 0o600


@pytest.mark.usefixtures("usual_umask")
def test_the_directory_made_for_the_database_files_is_the_owners_only(tmp_path: Path) -> None:
    settings = Settings(environment="test", database_url=f"sqlite+aiosqlite:///{tmp_path}/var/{{service}}.db")
    settings.for_service("scheduling").resolved_database_url  # noqa: B018 - creates the directory
    assert mode(tmp_path / "var") == 0o700

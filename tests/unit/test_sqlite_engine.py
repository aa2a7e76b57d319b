"""The embedded default's SQLite engine: a failed statement must not freeze the event loop later."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from shared.db import create_engine


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

"""A background pass run every few seconds, or at once when woken, that survives its own failures.

Used for the work a service does on its own (sealing IKP groups, polling P1, forwarding queued
changes): the pass reads its work from the database, so a crash or restart loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import structlog

log = structlog.get_logger("periodic")


class Periodic:
    def __init__(self, name: str, interval: float, run_pass: Callable[[], Awaitable[object]]) -> None:
        self.name = name
        self.interval = interval
        self.run_pass = run_pass
        self.wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        # Cancelled again until it ends: a cancel that lands just as an awaited call completes can be
        # swallowed by a library below the pass, and a single cancel would then wait for ever.
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)
        with contextlib.suppress(asyncio.CancelledError):
            task.result()

    async def _run(self) -> None:
        while True:
            # Not asyncio.wait_for: on Python 3.11 it swallows a cancel that arrives just as the wait ends.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self.wake.wait()
            self.wake.clear()
            try:
                await self.run_pass()
            except Exception:  # the next pass retries; the work is still in the database
                log.exception("periodic_pass_failed", task=self.name)

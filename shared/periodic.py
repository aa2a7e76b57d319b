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
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=self.interval)
            self.wake.clear()
            try:
                await self.run_pass()
            except Exception:  # the next pass retries; the work is still in the database
                log.exception("periodic_pass_failed", task=self.name)

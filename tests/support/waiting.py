"""Waiting for an effect without betting on the machine's speed.

A background pass (the outbox relay, a queue forwarder, a retry) finishes when it finishes: a test
polls until the effect shows and fails only after a deadline far beyond any normal run, so a slow
or busy machine makes a test slower, never red. ``TEST_WAIT_SECONDS`` moves the deadline.
"""

from __future__ import annotations

import asyncio
import inspect
import os
from collections.abc import Awaitable, Callable

import pytest

WAIT_SECONDS = float(os.environ.get("TEST_WAIT_SECONDS", "60"))


async def eventually(
    check: Callable[[], bool | Awaitable[bool]],
    *,
    what: str = "condition",
    timeout: float = WAIT_SECONDS,
    interval: float = 0.02,
) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)

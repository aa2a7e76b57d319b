"""The outage switch every simulator has: ``POST /down`` until ``POST /up``, read at ``GET /status``.

While a system is down its own endpoints answer 503 problem+json (the ``available`` dependency),
so a client sees exactly what an unreachable national system gives it; the controls and the
test-only endpoints stay open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from shared.problems import ProblemError


class Switchable(Protocol):
    up: bool


class StatusOut(BaseModel):
    up: bool


def available(state: Callable[..., Switchable], system: str, code: str) -> Callable[..., None]:
    """A dependency refusing every call with 503 while ``system`` is down."""

    def check(found: Switchable = Depends(state)) -> None:
        if not found.up:
            raise ProblemError(f"{system} is unavailable (simulated outage)", status=503, code=code)

    return check


def outage_controls(state: Callable[..., Switchable], down_means: str) -> APIRouter:
    router = APIRouter()

    @router.post("/down", response_model=StatusOut, summary=f"Simulate an outage: {down_means}")
    async def go_down(found: Any = Depends(state)) -> StatusOut:
        found.up = False
        return StatusOut(up=False)

    @router.post("/up", response_model=StatusOut, summary="End the simulated outage")
    async def go_up(found: Any = Depends(state)) -> StatusOut:
        found.up = True
        return StatusOut(up=True)

    @router.get("/status", response_model=StatusOut)
    async def status(found: Any = Depends(state)) -> StatusOut:
        return StatusOut(up=found.up)

    return router

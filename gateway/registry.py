"""The services behind the gateway and where their embedded factories live."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

# name -> "module:function" building the service's app; the order is the start order.
SERVICES: dict[str, str] = {
    "scheduling": "services.scheduling.app:create_app",
    "pharmacy": "services.pharmacy.app:create_app",
}

DISTRIBUTED_PORTS: dict[str, int] = {
    "gateway": 8000,
    "scheduling": 8101,
    "pharmacy": 8105,
}


def factory(name: str) -> Callable[..., FastAPI]:
    module, _, attr = SERVICES[name].partition(":")
    built: Any = getattr(importlib.import_module(module), attr)
    return built  # type: ignore[no-any-return]

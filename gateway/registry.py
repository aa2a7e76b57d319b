"""The services behind the gateway and where their embedded factories live."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from shared.settings import Settings

# name -> "module:function" building the service's app; the order is the start order.
SERVICES: dict[str, str] = {
    "scheduling": "services.scheduling.app:create_app",
    "pharmacy": "services.pharmacy.app:create_app",
    "reimbursement": "services.reimbursement.app:create_app",
}

DISTRIBUTED_PORTS: dict[str, int] = {
    "gateway": 8000,
    "scheduling": 8101,
    "pharmacy": 8105,
    "reimbursement": 8106,
}

# Variables only a production deployment sets: locally (make run, make run-distributed, compose) the
# service reaches the national system's sandbox inside its own process instead.
PRODUCTION_ONLY_ENVIRONMENT: dict[str, tuple[str, ...]] = {
    "reimbursement": ("EZWM_URL",),
}


def settings_class(name: str) -> type[Settings]:
    """The service's own Settings subclass (``services.<name>.settings``) or the shared one."""
    try:
        module = importlib.import_module(f"services.{name}.settings")
    except ModuleNotFoundError:
        return Settings
    found = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, Settings) and v is not Settings]
    return found[0] if len(found) == 1 else Settings


def factory(name: str) -> Callable[..., FastAPI]:
    module, _, attr = SERVICES[name].partition(":")
    built: Any = getattr(importlib.import_module(module), attr)
    return built  # type: ignore[no-any-return]

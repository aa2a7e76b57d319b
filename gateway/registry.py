"""The services behind the gateway and where their embedded factories live."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from shared.settings import Settings

# name -> "module:function" building the service's app; the order is the start order.
# A service may call only services started before it (prescriptions asks scheduling).
SERVICES: dict[str, str] = {
    "scheduling": "services.scheduling.app:create_app",
    "prescriptions": "services.prescriptions.app:create_app",
    "integration": "services.integration.app:create_app",
    "notifications": "services.notifications.app:create_app",
    "pharmacy": "services.pharmacy.app:create_app",
    "reimbursement": "services.reimbursement.app:create_app",
    # Calls nobody; every other service sends it audit.access.recorded events through the bus.
    "audit": "services.audit.app:create_app",
}

# The simulated national systems: started first, never in production, reached under /sandbox.
SANDBOX = "sandbox"
SANDBOX_FACTORY = "services.sandbox.app:create_app"

DISTRIBUTED_PORTS: dict[str, int] = {
    "gateway": 8000,
    "scheduling": 8101,
    "prescriptions": 8102,
    "integration": 8103,
    "notifications": 8104,
    "pharmacy": 8105,
    "reimbursement": 8106,
    "audit": 8107,
    SANDBOX: 8190,
}

# Variables only a production deployment sets: locally (make run, make run-distributed, compose) the
# service reaches the national system's sandbox inside its own process instead.
PRODUCTION_ONLY_ENVIRONMENT: dict[str, tuple[str, ...]] = {
    "reimbursement": ("EZWM_URL",),
    "integration": ("P1_URL", "CER_URL"),
    "pharmacy": ("P1_URL",),
    "notifications": ("SMTP_HOST", "SMS_URL"),
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
    module, _, attr = (SANDBOX_FACTORY if name == SANDBOX else SERVICES[name]).partition(":")
    built: Any = getattr(importlib.import_module(module), attr)
    return built  # type: ignore[no-any-return]

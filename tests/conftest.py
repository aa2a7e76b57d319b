"""Fixtures shared by every test tier.

Real PostgreSQL and RabbitMQ come from ``PG_URL`` / ``AMQP_URL`` (defaults: the machine's local
servers). Each test session gets fresh databases and a fresh RabbitMQ vhost. Under ``CI=true`` a
test that needs them FAILS when they are unreachable; elsewhere it is skipped with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from shared.auth import Claims, Role, issue_token
from shared.settings import TEST_ENVIRONMENT_MARKER, GatewaySettings, Settings
from tests.support import fast_startup

# ENVIRONMENT=test is refused outside the test suite (shared/settings.py): the services and sandboxes the
# tests start as processes of their own inherit this mark.
os.environ[TEST_ENVIRONMENT_MARKER] = "true"

PG_BASE = os.environ.get("PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432")
AMQP_BASE = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672")
IN_CI = os.environ.get("CI", "").lower() == "true"
SESSION_TAG = uuid.uuid4().hex[:8]

FACILITY = "clinic-a"
OTHER_FACILITY = "clinic-b"
PESEL = "44051401359"
OTHER_PESEL = "02070803628"


def pytest_configure(config: pytest.Config) -> None:
    fast_startup.install()


def infra_unavailable(what: str, error: BaseException) -> None:
    message = f"{what} is unreachable ({type(error).__name__}: {error})"
    if IN_CI:
        pytest.fail(f"{message}; under CI=true the real {what} is required")
    pytest.skip(message)


# ----------------------------------------------------------------------------- settings and tokens


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": f"sqlite+aiosqlite:///{tmp_path}/{{service}}.db",
        "log_json": True,
        "log_level": "WARNING",
        "outbox_poll_seconds": 0.05,
        "bus_retry_base_seconds": 0.05,
        # The in-process bus unless a test asks for the broker: an exported AMQP_URL must not switch it.
        "amqp_url": None,
        **overrides,
    }
    return Settings(**values)


def make_gateway_settings(tmp_path: Path, **overrides: Any) -> GatewaySettings:
    return GatewaySettings(**{**make_settings(tmp_path).model_dump(exclude={"service_name"}), **overrides})


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


def token_for(settings: Settings, role: Role | str, **claims: Any) -> str:
    role = Role(role)
    defaults: dict[str, Any] = {"sub": f"test-{role}"}
    if role in {Role.registrar, Role.practitioner, Role.facility_admin, Role.partner}:
        defaults["facility_id"] = FACILITY
    if role == Role.pharmacist:
        defaults["pharmacy_id"] = "pharmacy-1"
    if role == Role.patient:
        defaults["pesel"] = PESEL
        defaults["facility_id"] = FACILITY
    if role == Role.practitioner:
        defaults["npwz"] = "5425740"
    return issue_token(Claims(role=role, **{**defaults, **claims}), settings)


@pytest.fixture
def auth(settings: Settings) -> Callable[..., dict[str, str]]:
    """``auth("registrar", facility_id="x")`` -> an Authorization header."""

    def headers(role: Role | str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(settings, role, **claims)}"}

    return headers


# ----------------------------------------------------------------------------- apps


async def running_client(app: FastAPI, base_url: str = "http://test") -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield client


@pytest.fixture
async def scheduling_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from services.scheduling.app import create_app

    async for client in running_client(create_app(settings)):
        yield client


@pytest.fixture
async def gateway_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    from gateway.app import create_app

    async for client in running_client(create_app(make_gateway_settings(tmp_path))):
        yield client


# ----------------------------------------------------------------------------- real infrastructure


async def _create_database(name: str) -> None:
    engine = create_async_engine(f"{PG_BASE}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            await conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        await engine.dispose()


async def _drop_database(name: str) -> None:
    engine = create_async_engine(f"{PG_BASE}/postgres", isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        await engine.dispose()


@pytest.fixture(scope="session")
def pg_database() -> Iterator[Callable[[str], str]]:
    """``pg_database("scheduling")`` -> the URL of a fresh database for this test session."""
    created: list[str] = []

    def make(label: str) -> str:
        name = f"test_{SESSION_TAG}_{label}_{uuid.uuid4().hex[:6]}"
        try:
            asyncio.run(_create_database(name))
        except Exception as exc:  # the server is down or refuses us
            infra_unavailable("PostgreSQL", exc)
        created.append(name)
        return f"{PG_BASE}/{name}"

    yield make
    for name in created:
        try:
            asyncio.run(_drop_database(name))
        except Exception:
            continue


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A fresh RabbitMQ vhost for the test session (the default vhost when rabbitmqctl is absent)."""
    import aio_pika

    vhost = f"test-{SESSION_TAG}"
    have_ctl = shutil.which("rabbitmqctl") is not None
    url = f"{AMQP_BASE}/{vhost}" if have_ctl else f"{AMQP_BASE}/"
    try:
        if have_ctl:
            _rabbitmqctl("add_vhost", vhost)
            _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

        async def probe() -> None:
            connection = await aio_pika.connect(url, timeout=5)
            await connection.close()

        asyncio.run(probe())
    except Exception as exc:
        infra_unavailable("RabbitMQ", exc)
    yield url
    if have_ctl:
        with contextlib.suppress(Exception):
            _rabbitmqctl("delete_vhost", vhost)

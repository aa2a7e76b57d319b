"""Helpers for the tests against the real PostgreSQL and RabbitMQ.

Every test here is marked ``infra`` in its module; the session fixtures of ``tests/conftest.py``
give each test session fresh databases and a fresh vhost, and FAIL under ``CI=true`` when the
servers are down.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import create_async_engine

from shared.settings import Settings
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]


def new_npwz() -> str:
    """A fresh doctor's NPWZ with a valid check digit (unique per facility in scheduling)."""
    while True:
        body = f"{uuid.uuid4().int % 10**6:06d}"
        check = sum(int(d) * weight for weight, d in enumerate(body, start=1)) % 11
        if 0 < check < 10:
            return f"{check}{body}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def unique(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


async def scalar(url: str, sql: str, **params: Any) -> Any:
    """One value from a short-lived connection (the tests' view of the database)."""
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(sa.text(sql), params)
    finally:
        await engine.dispose()


def pg_settings(tmp_path: Path, database_url: str, amqp_url: str | None, **overrides: Any) -> Settings:
    """Settings of an in-process scheduling service on the real servers, with its own exchange."""
    values: dict[str, Any] = {
        "service_name": "scheduling",
        "database_url": database_url,
        "amqp_url": amqp_url,
        "events_exchange": unique("test.events"),
        **overrides,
    }
    return make_settings(tmp_path, **values)


def fresh_database(pg_database: Callable[[str], str], label: str) -> str:
    """``pg_database(label)`` on a thread of its own: its ``asyncio.run`` must not unset this thread's loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(pg_database, label).result()


@pytest.fixture
def pg_url(pg_database: Callable[[str], str], request: pytest.FixtureRequest) -> str:
    """A fresh PostgreSQL database for this test."""
    label = "".join(c for c in request.node.name.removeprefix("test_") if c.isalnum() or c == "_")[:24]
    return fresh_database(pg_database, label)


# ----------------------------------------------------------------------------- service processes


class ServiceProcess:
    """One uvicorn process of a service, its output kept in a file for the failure message."""

    def __init__(self, target: str, port: int, env: dict[str, str], log_path: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        command = [sys.executable, "-m", "uvicorn", "--factory", target, "--host", "127.0.0.1", "--port", str(port)]
        command += ["--no-access-log", "--log-level", "warning"]
        self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_healthy(self, timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"{self.url} exited with {self.process.returncode}:\n{self.output()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        pytest.fail(f"{self.url} did not become healthy in {timeout} s:\n{self.output()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self._log.close()


@pytest.fixture
def sandbox(tmp_path: Path) -> Iterator[ServiceProcess]:
    """The simulated national systems as their own process, reached over real HTTP."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update({"SERVICE_NAME": "sandbox", "ENVIRONMENT": "test", "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT)})
    env["SANDBOX_SMTP_PORT"] = "0"  # its mail catcher on a free port: nothing here sends mail to it
    process = ServiceProcess("services.sandbox.app:create_app", free_port(), env, tmp_path / "sandbox.log")
    try:
        process.wait_healthy()
        yield process
    finally:
        process.stop()


def service_env(settings: Settings, database_url: str, amqp_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update(
        {
            "SERVICE_NAME": "scheduling",
            "DATABASE_URL": database_url,
            "AMQP_URL": amqp_url,
            "EVENTS_EXCHANGE": settings.events_exchange,
            "ENVIRONMENT": "test",
            "LOG_LEVEL": "WARNING",
            "JWT_SECRET": settings.jwt_secret.get_secret_value(),
            "RUN_MIGRATIONS": "true",
            "OUTBOX_POLL_SECONDS": "0.2",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


@contextlib.asynccontextmanager
async def serving(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running (migrations, bus, relay) and a client talking to it."""
    transport = httpx.ASGITransport(app=app)
    client = httpx.AsyncClient(transport=transport, base_url="http://test")
    async with app.router.lifespan_context(app), client:
        yield client


# ----------------------------------------------------------------------------- scheduling data


async def seed_schedule(
    client: httpx.AsyncClient, admin: dict[str, str], desk: dict[str, str], *, date: str = "2030-03-04"
) -> dict[str, Any]:
    """A location, a practitioner, a work type and one schedule; returns their ids and the slots."""

    async def created(path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        answer = await client.post(f"/api/v1/scheduling/{path}", json=body, headers=headers)
        assert answer.status_code == 201, answer.text
        result: dict[str, Any] = answer.json()
        return result

    location = await created("locations", {"name": "Centrum"}, admin)
    doctor = await created(
        "practitioners", {"name": "Dr A", "npwz": new_npwz(), "profession": "doctor", "poz": True}, admin
    )
    work = await created("work-types", {"name": "Visit"}, admin)
    ids = {"practitioner_id": doctor["id"], "location_id": location["id"], "work_type_id": work["id"]}
    await created(
        "schedules",
        {**ids, "date": date, "start_time": "08:00", "end_time": "09:00", "visit_minutes": 20},
        desk,
    )
    slots = await client.get(
        "/api/v1/scheduling/slots", params={"status": "free", "practitioner_id": doctor["id"]}, headers=desk
    )
    assert slots.status_code == 200, slots.text
    return {**ids, "slots": slots.json()}

"""End to end through the distributed suite: the gateway and every service as uvicorn processes.

Real PostgreSQL (a database per service, created and migrated by the service on start) and the
session's RabbitMQ vhost, exactly as ``make run-distributed`` runs them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine

from gateway.distributed import start_all, start_gateway, start_services, stop_all, wait_ready
from gateway.registry import SANDBOX, SERVICES
from tests.conftest import OTHER_PESEL, PESEL, PG_BASE, SESSION_TAG, _drop_database

pytestmark = pytest.mark.infra
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on a thread of its own: it must not touch the test thread's event loop."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _drop_all(names: list[str]) -> None:
    for name in names:
        await _drop_database(name)


async def _scalar(url: str, sql: str) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.scalar(sa.text(sql))
    finally:
        await engine.dispose()


def _base_env(amqp_url: str, exchange: str) -> dict[str, str]:
    return {
        **os.environ,
        "AMQP_URL": amqp_url,
        "PG_BASE_URL": PG_BASE,
        "ENVIRONMENT": "test",
        "LOG_LEVEL": "WARNING",
        "DEV_AUTH": "true",
        "EVENTS_EXCHANGE": exchange,
        "OUTBOX_POLL_SECONDS": "0.2",
    }


@dataclass
class Suite:
    gateway: str
    processes: dict[str, subprocess.Popen[bytes]]
    databases: dict[str, str]
    exchange: str
    vhost: str


@pytest.fixture
def suite(pg_database: Callable[[str], str], amqp_url: str) -> Iterator[Suite]:
    # Fails (CI) or skips here, before anything starts, when PostgreSQL is down.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(pg_database, "e2e_probe").result()
    names = [SANDBOX, *SERVICES, "gateway"]  # the order start_all starts them in
    ports = {name: _free_port() for name in names}
    prefix = f"test_{SESSION_TAG}_e2e_{uuid.uuid4().hex[:6]}"
    exchange = f"test.e2e.{uuid.uuid4().hex[:8]}"
    base_env = _base_env(amqp_url, exchange)
    databases = {name: f"{prefix}_{name}" for name in SERVICES}
    processes = start_all(ports=ports, base_env=base_env, database_prefix=prefix)
    try:
        gateway = f"http://127.0.0.1:{ports['gateway']}"
        if not wait_ready(f"{gateway}/readyz", timeout=60):
            exited = {name: p.poll() for name, p in zip(names, processes, strict=True)}
            pytest.fail(f"the distributed suite did not become ready in 60 s (exit codes: {exited})")
        yield Suite(
            gateway, dict(zip(names, processes, strict=True)), databases, exchange, unquote(urlsplit(amqp_url).path[1:])
        )
    finally:
        stop_all(processes)
        _run(_drop_all(list(databases.values())))


def _is_problem(answer: httpx.Response) -> bool:
    return str(answer.headers.get("content-type", "")).startswith("application/problem+json")


def _created(client: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    answer = client.post(f"/api/v1/scheduling/{path}", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    result: dict[str, Any] = answer.json()
    return result


def _token(client: httpx.Client, **claims: str) -> dict[str, str]:
    answer = client.post("/api/v1/auth/dev-token", json=claims)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def test_the_distributed_suite_books_once_reports_ready_and_answers_502_without_its_service(suite: Suite) -> None:
    with httpx.Client(base_url=suite.gateway, timeout=15) as client:
        admin = _token(client, sub="admin", role="facility_admin", facility_id="clinic-dist")
        desk = _token(client, sub="desk", role="registrar", facility_id="clinic-dist")

        location = _created(client, "locations", {"name": "Centrum"}, admin)
        doctor = _created(
            client, "practitioners", {"name": "Dr A", "npwz": "5425740", "profession": "doctor", "poz": True}, admin
        )
        work = _created(client, "work-types", {"name": "Visit"}, admin)
        schedule = _created(
            client,
            "schedules",
            {
                "practitioner_id": doctor["id"],
                "location_id": location["id"],
                "work_type_id": work["id"],
                "date": "2030-03-04",
                "start_time": "08:00",
                "end_time": "09:00",
                "visit_minutes": 20,
            },
            desk,
        )
        assert schedule["slots_created"] == 3
        slots = client.get("/api/v1/scheduling/slots", params={"status": "free"}, headers=desk).json()
        assert [s["start"] for s in slots] == ["2030-03-04T07:00:00Z", "2030-03-04T07:20:00Z", "2030-03-04T07:40:00Z"]

        booked = client.post(
            "/api/v1/scheduling/bookings",
            json={"slot_id": slots[0]["id"], "patient_pesel": PESEL, "source": "desk"},
            headers={**desk, "X-Request-ID": "e2e-trace-1"},
        )
        assert booked.status_code == 201, booked.text
        assert booked.headers["x-request-id"] == "e2e-trace-1"
        twice = client.post(
            "/api/v1/scheduling/bookings",
            json={"slot_id": slots[0]["id"], "patient_pesel": OTHER_PESEL, "source": "desk"},
            headers=desk,
        )
        assert twice.status_code == 409, twice.text
        assert _is_problem(twice)
        assert twice.json()["status"] == 409

        # Ready, with the outbox drained to RabbitMQ by the service's relay.
        deadline = time.monotonic() + 15
        while True:
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            checks = ready.json()["services"]["scheduling"]["checks"]
            assert checks["database"] == "ok" and checks["broker"] == "ok"
            assert isinstance(checks["outbox_backlog"], int)
            if checks["outbox_backlog"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert checks["outbox_backlog"] == 0

        # The service used this test's database and this session's vhost, as the launcher was told.
        database = f"{PG_BASE}/{suite.databases['scheduling']}"
        assert _run(_scalar(database, "SELECT count(*) FROM bookings")) == 1
        exchanges = subprocess.run(
            ["rabbitmqctl", "-q", "list_exchanges", "-p", suite.vhost, "name"],
            capture_output=True,
            text=True,
            check=False,
        )
        if exchanges.returncode == 0:
            assert suite.exchange in exchanges.stdout.split()

        # A prescription request routed by prescriptions through scheduling (HTTP), issued, and the
        # package carried by RabbitMQ to integration, which registers it in the P1 sandbox process.
        tomorrow = (dt.datetime.now(ZoneInfo("Europe/Warsaw")).date() + dt.timedelta(days=1)).isoformat()
        rx = _created(client, "work-types", {"name": "Recepty", "prescription_only": True}, admin)
        ids = {"practitioner_id": doctor["id"], "location_id": location["id"], "work_type_id": rx["id"]}
        rx_day = {"date": tomorrow, "start_time": "08:00", "end_time": "09:00", "visit_minutes": 15}
        _created(client, "schedules", {**ids, **rx_day}, desk)
        today = dt.datetime.now(ZoneInfo("Europe/Warsaw")).date().isoformat()
        assert client.put(
            "/api/v1/prescriptions/settings", json={"mode": "demo", "activated_on": today}, headers=admin
        ).is_success
        assert client.put(
            "/api/v1/prescriptions/practitioners/5425740/ordering", json={"enabled": True}, headers=admin
        ).is_success
        order = {
            "patient_pesel": PESEL,
            "practitioner_npwz": "5425740",
            "location_id": location["id"],
            "items": [{"drug": "Metformax 500", "packages": 2}],
        }
        request = client.post("/api/v1/prescriptions/requests", json=order, headers=desk)
        assert request.status_code == 201, request.text
        assert (request.json()["status"], request.json()["routed_to"]) == ("booked", "own")
        doctor_token = _token(client, sub="dr", role="practitioner", facility_id="clinic-dist", npwz="5425740")
        issue = {
            "issuer_npwz": "5425740",
            "issuer_profession": "doctor",
            "prescriptions": [
                {"drug": "Metformax 500", "packages": 2, "units_per_package": "30", "daily_dose_units": "1"}
            ],
        }
        issued = client.post(
            f"/api/v1/prescriptions/requests/{request.json()['id']}/issue", json=issue, headers=doctor_token
        )
        assert issued.status_code == 201, issued.text
        package_key = issued.json()["package_key"]
        deadline = time.monotonic() + 30
        while package_key not in client.get("/sandbox/p1/received").json() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert package_key in client.get("/sandbox/p1/received").json()

        # The booking's audit row, carried by RabbitMQ to the audit process, with the desk's request id.
        def audited() -> list[dict[str, str]]:
            found = client.get("/api/v1/audit/events", params={"action": "scheduling.booking.create"}, headers=admin)
            assert found.status_code == 200, found.text
            rows: list[dict[str, str]] = found.json()
            return rows

        deadline = time.monotonic() + 30
        while not any(r["request_id"] == "e2e-trace-1" for r in audited()) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [(r["actor"], r["role"], r["patient"]) for r in audited() if r["request_id"] == "e2e-trace-1"] == [
            ("desk", "registrar", PESEL[:2] + "*" * 9)
        ]

        # The scheduling process dies: the gateway answers for it with a 502 problem.
        scheduling = suite.processes["scheduling"]
        scheduling.kill()
        scheduling.wait(timeout=10)
        gone = client.get("/api/v1/scheduling/slots", headers=desk)
        assert gone.status_code == 502, gone.text
        assert _is_problem(gone)
        assert gone.json()["type"].endswith("/upstream-unreachable")
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json()["services"]["scheduling"]["status"] == "unreachable"


def _wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {seconds} s")
        time.sleep(0.2)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _error_lines(log_dir: Path) -> list[str]:
    """What an operator would read as a failure in the processes' output: a log record at error level
    or above (JSON from structlog, ``ERROR:`` from uvicorn) or asyncio's complaints about futures."""
    found = []
    for log in sorted(log_dir.glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            level = str(record.get("level", "")).lower() if isinstance(record, dict) else ""
            if (
                level in {"error", "critical", "exception"}
                or line.startswith(("ERROR", "CRITICAL", "Traceback"))
                or "never retrieved" in line
                or "Task was destroyed" in line
            ):
                found.append(f"{log.stem}: {line[:500]}")
    return found


def test_a_gateway_started_before_its_services_documents_them_once_up_and_the_suite_stops_quietly(
    pg_database: Callable[[str], str], amqp_url: str, tmp_path: Path
) -> None:
    """Issue 22: a fresh gateway pod starts before its services. Its document names the services it
    cannot describe yet, and lists their operations once they answer, with no request to them through
    the gateway first; and stopping the suite after some traffic logs nothing at error level."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(pg_database, "e2e_probe").result()
    names = [SANDBOX, *SERVICES, "gateway"]
    ports = {name: _free_port() for name in names}
    prefix = f"test_{SESSION_TAG}_e2e_{uuid.uuid4().hex[:6]}"
    base_env = {**_base_env(amqp_url, f"test.e2e.{uuid.uuid4().hex[:8]}"), "OPENAPI_RETRY_MAX_SECONDS": "1"}
    gateway = f"http://127.0.0.1:{ports['gateway']}"
    processes = [start_gateway(ports=ports, base_env=base_env, log_dir=tmp_path)]
    try:
        _wait_for(lambda: _answers(f"{gateway}/healthz"), 30, "the gateway up")
        with httpx.Client(base_url=gateway, timeout=15) as client:
            early = client.get("/openapi.json").json()
            assert early["x-unavailable-services"] == list(SERVICES)
            assert "Incomplete document" in early["info"]["description"]
            tags = {t["name"]: t["description"] for t in early["tags"]}
            assert all(tags[name].startswith("UNAVAILABLE") for name in SERVICES)
            assert not [p for p in early["paths"] if p.startswith("/api/v1/") and "/auth/" not in p]
            not_ready = client.get("/readyz")
            assert not_ready.status_code == 503
            assert not_ready.json()["openapi"]["missing"] == sorted(SERVICES)

            processes += start_services(ports=ports, base_env=base_env, database_prefix=prefix, log_dir=tmp_path)
            # Each service's own readiness, asked directly: nothing goes to them through the gateway.
            for name in (SANDBOX, *SERVICES):
                _wait_for(lambda n=name: _answers(f"http://127.0.0.1:{ports[n]}/readyz"), 90, f"{name} ready")

            def documented() -> bool:
                return "x-unavailable-services" not in client.get("/openapi.json").json()

            _wait_for(documented, 15, "every service in the gateway's document")
            spec = client.get("/openapi.json").json()
            for name in SERVICES:
                assert any(p.startswith(f"/api/v1/{name}/") for p in spec["paths"]), name
                assert not next(t for t in spec["tags"] if t["name"] == name)["description"].startswith("UNAVAILABLE")
            assert "Incomplete document" not in spec["info"]["description"]
            ready = client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["openapi"]["missing"] == []

            # Some traffic, so that the outbox relays and the consumers have work when the stop comes.
            admin = _token(client, sub="admin", role="facility_admin", facility_id="clinic-stop")
            desk = _token(client, sub="desk", role="registrar", facility_id="clinic-stop")
            location = _created(client, "locations", {"name": "Centrum"}, admin)
            doctor = _created(
                client, "practitioners", {"name": "Dr B", "npwz": "5425740", "profession": "doctor"}, admin
            )
            work = _created(client, "work-types", {"name": "Visit"}, admin)
            ids = {"practitioner_id": doctor["id"], "location_id": location["id"], "work_type_id": work["id"]}
            day = {"date": "2030-03-05", "start_time": "08:00", "end_time": "10:00", "visit_minutes": 10}
            _created(client, "schedules", {**ids, **day}, desk)
            for slot in client.get("/api/v1/scheduling/slots", params={"status": "free"}, headers=desk).json():
                booking = {"slot_id": slot["id"], "patient_pesel": PESEL, "source": "desk"}
                assert client.post("/api/v1/scheduling/bookings", json=booking, headers=desk).status_code == 201
    finally:
        stop_all(processes)
        _run(_drop_all([f"{prefix}_{name}" for name in SERVICES]))
    # A clean stop: every process ended on the signal (none killed after the wait), nothing logged at error.
    assert [p.returncode for p in processes] == [-signal.SIGTERM] * len(processes)
    assert _error_lines(tmp_path) == []

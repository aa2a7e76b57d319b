"""Twenty pharmacists at once on one e-prescription, from two pharmacies, through two pharmacy
processes on the real PostgreSQL: never more than prescribed, and the rest stays with one pharmacy."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from shared.auth import Claims, issue_token
from shared.settings import Settings
from tests.conftest import make_settings
from tests.integration.conftest import ROOT, ServiceProcess, free_port, fresh_database, scalar

pytestmark = pytest.mark.infra

PESEL = "44051401359"
KEY = f"{uuid.uuid4().int % 10**44:044d}"


@pytest.fixture
def pharmacies(
    tmp_path: Path, pg_database: Callable[[str], str], sandbox: ServiceProcess
) -> Iterator[tuple[Settings, str, list[ServiceProcess]]]:
    database = fresh_database(pg_database, f"rx_{uuid.uuid4().hex[:6]}")
    settings = make_settings(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(
        {
            "SERVICE_NAME": "pharmacy",
            "DATABASE_URL": database,
            "AMQP_URL": "",
            "ENVIRONMENT": "test",
            "LOG_LEVEL": "WARNING",
            "JWT_SECRET": settings.jwt_secret.get_secret_value(),
            "P1_URL": f"{sandbox.url}/sandbox/p1",
            "PYTHONPATH": str(ROOT),
        }
    )
    processes = [
        ServiceProcess("services.pharmacy.app:create_app", free_port(), env, tmp_path / f"ph{i}.log") for i in range(2)
    ]
    try:
        for process in processes:
            process.wait_healthy()
        yield settings, database, processes
    finally:
        for process in processes:
            process.stop()


async def test_twenty_simultaneous_realisations_never_exceed_what_was_prescribed(
    pharmacies: tuple[Settings, str, list[ServiceProcess]], sandbox: ServiceProcess
) -> None:
    settings, database, processes = pharmacies
    today = dt.date.today()
    registration = {
        "package_key": f"{uuid.uuid4().int % 10**44:044d}",
        "access_code": "4711",
        "patient_pesel": PESEL,
        "facility_id": "clinic",
        "issuer_npwz": "1047514",
        "issued_on": today.isoformat(),
        "prescriptions": [
            {
                "key": KEY,
                "drug": "Metformax 500",
                "packages": 6,
                "units_per_package": "30",
                "daily_dose_units": "1",
                "kind": "standard",
                "valid_from": today.isoformat(),
                "valid_until": (today + dt.timedelta(days=30)).isoformat(),
            }
        ],
    }
    async with httpx.AsyncClient(timeout=30) as client:
        assert (await client.post(f"{sandbox.url}/sandbox/p1/prescriptions", json=registration)).status_code == 201
        headers = {}
        for pharmacy, process in zip(("apteka-a", "apteka-b"), processes, strict=True):
            token = issue_token(Claims(sub=f"mgr-{pharmacy}", role="pharmacist", pharmacy_id=pharmacy), settings)
            headers[pharmacy] = {"Authorization": f"Bearer {token}"}
            seen = await client.post(
                f"{process.url}/api/v1/pharmacy/prescriptions/lookup",
                json={"access_code": "4711", "pesel": PESEL},
                headers=headers[pharmacy],
            )
            assert seen.status_code == 200, seen.text

        async def realise(i: int) -> tuple[str, int]:
            pharmacy = "apteka-a" if i % 2 else "apteka-b"
            answer = await client.post(
                f"{processes[i % 2].url}/api/v1/pharmacy/realizations",
                json={"key": KEY, "packages": 1},
                headers=headers[pharmacy],
            )
            return pharmacy, answer.status_code

        results = await asyncio.gather(*(realise(i) for i in range(20)))

    won = [pharmacy for pharmacy, status in results if status == 201]
    assert len(won) == 6 and len(set(won)) == 1  # all six packages, from the pharmacy that started first
    assert {status for _, status in results} <= {201, 409, 422}
    assert await scalar(database, "SELECT packages_dispensed FROM prescription_holds WHERE key = :key", key=KEY) == 6
    assert await scalar(database, "SELECT sum(packages) FROM prescription_realisations WHERE key = :key", key=KEY) == 6

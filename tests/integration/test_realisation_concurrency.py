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


# ----------------------------------------------------------------------------- the access-code limit


def _register(code: str, pesel: str) -> dict[str, object]:
    today = dt.date.today()
    return {
        "package_key": f"{uuid.uuid4().int % 10**44:044d}",
        "access_code": code,
        "patient_pesel": pesel,
        "facility_id": "clinic",
        "issuer_npwz": "1047514",
        "issued_on": today.isoformat(),
        "prescriptions": [
            {
                "key": f"{uuid.uuid4().int % 10**44:044d}",
                "drug": "Metformax 500",
                "packages": 1,
                "units_per_package": "30",
                "daily_dose_units": "1",
                "kind": "standard",
                "valid_from": today.isoformat(),
                "valid_until": (today + dt.timedelta(days=30)).isoformat(),
            }
        ],
    }


def _pharmacist(settings: Settings, pharmacy: str) -> dict[str, str]:
    token = issue_token(Claims(sub=f"mgr-{pharmacy}", role="pharmacist", pharmacy_id=pharmacy), settings)
    return {"Authorization": f"Bearer {token}"}


async def test_two_hundred_parallel_wrong_codes_from_one_pharmacy_let_at_most_the_limit_reach_p1(
    pharmacies: tuple[Settings, str, list[ServiceProcess]], sandbox: ServiceProcess
) -> None:
    settings, database, processes = pharmacies
    pesel = "02070803628"
    guesser = _pharmacist(settings, "apteka-zgadywacz")
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as client:
        registered = await client.post(f"{sandbox.url}/sandbox/p1/prescriptions", json=_register("4711", pesel))
        assert registered.status_code == 201, registered.text

        async def guess(i: int) -> httpx.Response:
            return await client.post(
                f"{processes[i % 2].url}/api/v1/pharmacy/prescriptions/lookup",
                json={"access_code": f"{5000 + i:04d}", "pesel": pesel},
                headers=guesser,
            )

        answers = await asyncio.gather(*(guess(i) for i in range(200)))
        # Then one guess at a time until refused: together with the burst, exactly the limit reached P1.
        afterwards = [await guess(200 + i) for i in range(6)]
        right_code_now = await client.post(
            f"{processes[0].url}/api/v1/pharmacy/prescriptions/lookup",
            json={"access_code": "4711", "pesel": pesel},
            headers=guesser,
        )

    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {404, 429}, statuses
    assert statuses.count(404) <= 5  # the per-pharmacy limit: at most 5 of the burst reached P1
    refused = [a for a in answers + afterwards if a.status_code == 429]
    assert all(int(a.headers["Retry-After"]) >= 1 and a.json()["limit"] == "pharmacy" for a in refused)
    later = [a.status_code for a in afterwards]
    assert statuses.count(404) + later.count(404) == 5 and later[-1] == 429
    assert right_code_now.status_code == 429  # even the right code waits now: the pharmacy is paused
    counted = "SELECT count(*) FROM code_attempts WHERE pharmacy_id = :pharmacy"
    assert await scalar(database, counted, pharmacy="apteka-zgadywacz") == 5


async def test_twenty_pharmacies_guessing_one_patients_code_are_stopped_at_the_per_pesel_limit(
    pharmacies: tuple[Settings, str, list[ServiceProcess]], sandbox: ServiceProcess
) -> None:
    settings, _, processes = pharmacies
    pesel = PESEL
    tokens = [_pharmacist(settings, f"apteka-{n:02d}") for n in range(20)]
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as client:
        registered = await client.post(f"{sandbox.url}/sandbox/p1/prescriptions", json=_register("4712", pesel))
        assert registered.status_code == 201, registered.text

        async def guess(i: int) -> httpx.Response:
            return await client.post(
                f"{processes[i % 2].url}/api/v1/pharmacy/prescriptions/lookup",
                json={"access_code": f"{6000 + i:04d}", "pesel": pesel},
                headers=tokens[i % 20],
            )

        answers = await asyncio.gather(*(guess(i) for i in range(100)))  # 5 guesses from each pharmacy
        afterwards = [await guess(100 + i) for i in range(11)]  # one at a time, from pharmacy after pharmacy
        honest = await client.post(
            f"{processes[1].url}/api/v1/pharmacy/prescriptions/lookup",
            json={"access_code": "4712", "pesel": pesel},
            headers=_pharmacist(settings, "apteka-uczciwa"),
        )

    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {404, 429}, statuses
    assert statuses.count(404) <= 10  # the per-PESEL limit, whichever pharmacies guessed
    later = [a.status_code for a in afterwards]
    assert statuses.count(404) + later.count(404) == 10 and later[-1] == 429
    assert {a.json()["limit"] for a in answers + afterwards if a.status_code == 429} == {"patient"}
    assert honest.status_code == 429 and honest.json()["limit"] == "patient" and "Retry-After" in honest.headers

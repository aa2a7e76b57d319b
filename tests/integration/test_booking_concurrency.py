"""Races decided by PostgreSQL: two scheduling processes, one database, many simultaneous requests."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PESEL, make_settings, token_for
from tests.integration.conftest import (
    ServiceProcess,
    free_port,
    fresh_database,
    scalar,
    seed_schedule,
    service_env,
    unique,
)

pytestmark = pytest.mark.infra

PESELS = ("44051401359", "02070803628", PESEL)


class Cluster:
    """Two uvicorn processes of the scheduling service sharing one PostgreSQL database."""

    def __init__(self, database_url: str, processes: list[ServiceProcess], headers: dict[str, dict[str, str]]) -> None:
        self.database_url = database_url
        self.processes = processes
        self.headers = headers

    @property
    def urls(self) -> list[str]:
        return [p.url for p in self.processes]


@pytest.fixture(scope="module")
def cluster(
    pg_database: Callable[[str], str], amqp_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    tmp_path: Path = tmp_path_factory.mktemp("cluster")
    database_url = fresh_database(pg_database, "race")
    settings = make_settings(tmp_path, events_exchange=unique("test.race"))
    env = service_env(settings, database_url, amqp_url)
    # Both start at once on a fresh database: their migrations race as well.
    processes = [
        ServiceProcess("services.scheduling.app:create_app", free_port(), env, tmp_path / f"p{i}.log") for i in range(2)
    ]
    try:
        for process in processes:
            process.wait_healthy()
        headers = {
            role: {"Authorization": f"Bearer {token_for(settings, role)}"} for role in ("facility_admin", "registrar")
        }
        yield Cluster(database_url, processes, headers)
    finally:
        for process in processes:
            process.stop()


def _is_problem(answer: httpx.Response) -> bool:
    return str(answer.headers.get("content-type", "")).startswith("application/problem+json")


async def _fire(requests: list[tuple[str, str, dict[str, Any]]], headers: dict[str, str]) -> list[httpx.Response]:
    """Send every request at once (one connection each), after all of them are ready to go."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        gate = asyncio.Event()

        async def one(base: str, path: str, body: dict[str, Any]) -> httpx.Response:
            await gate.wait()
            return await client.post(f"{base}{path}", json=body, headers=headers)

        tasks = [asyncio.create_task(one(*r)) for r in requests]
        await asyncio.sleep(0.05)
        gate.set()
        return list(await asyncio.gather(*tasks))


async def test_a_hundred_concurrent_bookings_of_one_slot_from_two_processes_give_one_booking(
    cluster: Cluster,
) -> None:
    admin, desk = cluster.headers["facility_admin"], cluster.headers["registrar"]
    async with httpx.AsyncClient(base_url=cluster.urls[0], timeout=30) as client:
        seeded = await seed_schedule(client, admin, desk, date="2030-05-06")
    slot_id = seeded["slots"][0]["id"]

    requests = [
        (
            cluster.urls[i % 2],
            "/api/v1/scheduling/bookings",
            {"slot_id": slot_id, "patient_pesel": PESELS[i % 3], "source": "desk"},
        )
        for i in range(100)
    ]
    answers = await _fire(requests, desk)

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 1, 409: 99}, {s: n for s, n in statuses.items()} | {
        "bodies": [a.text for a in answers if a.status_code not in (201, 409)][:3]
    }
    conflicts = [a for a in answers if a.status_code == 409]
    assert all(_is_problem(a) for a in conflicts)
    assert {a.json()["type"].rsplit("/", 1)[-1] for a in conflicts} == {"slot-taken"}
    # Both processes took part in the race.
    assert {str(a.request.url.port) for a in answers} == {str(p.port) for p in cluster.processes}

    winner = next(a for a in answers if a.status_code == 201).json()
    active = await scalar(
        cluster.database_url,
        "SELECT count(*) FROM bookings WHERE slot_id = :slot AND status = 'booked'",
        slot=uuid.UUID(slot_id),
    )
    total = await scalar(
        cluster.database_url, "SELECT count(*) FROM bookings WHERE slot_id = :slot", slot=uuid.UUID(slot_id)
    )
    assert (active, total) == (1, 1)
    booked_id = await scalar(
        cluster.database_url, "SELECT id FROM bookings WHERE slot_id = :slot", slot=uuid.UUID(slot_id)
    )
    assert str(booked_id) == winner["id"]
    # Exactly one booking.created event was written: the losers' transactions left nothing behind.
    events = await scalar(
        cluster.database_url,
        "SELECT count(*) FROM outbox WHERE event_type = 'scheduling.booking.created' AND envelope LIKE :slot",
        slot=f"%{slot_id}%",
    )
    assert events == 1

    async with httpx.AsyncClient(base_url=cluster.urls[1], timeout=30) as client:
        booked = await client.get(
            "/api/v1/scheduling/slots",
            params={"status": "booked", "practitioner_id": seeded["practitioner_id"]},
            headers=desk,
        )
    assert [s["id"] for s in booked.json()] == [slot_id]


async def test_overlapping_schedules_created_concurrently_give_exactly_one(cluster: Cluster) -> None:
    admin, desk = cluster.headers["facility_admin"], cluster.headers["registrar"]
    async with httpx.AsyncClient(base_url=cluster.urls[0], timeout=30) as client:
        seeded = await seed_schedule(client, admin, desk, date="2030-06-03")
    ids = {k: seeded[k] for k in ("practitioner_id", "location_id", "work_type_id")}
    practitioner = uuid.UUID(ids["practitioner_id"])

    # Several rounds (a deadlock between two inserters is a matter of timing); in each, ten
    # different but mutually overlapping schedules of one practitioner for one day.
    for day in ("2030-06-10", "2030-06-11", "2030-06-12", "2030-06-13", "2030-06-14"):
        requests = [
            (
                cluster.urls[i % 2],
                "/api/v1/scheduling/schedules",
                {
                    **ids,
                    "date": day,
                    "start_time": f"{10 + i // 4:02d}:{(i % 4) * 15:02d}",
                    "end_time": f"{14 + i % 3:02d}:00",
                    "visit_minutes": 15 + 5 * (i % 3),
                },
            )
            for i in range(10)
        ]
        answers = await _fire(requests, desk)

        statuses = Counter(a.status_code for a in answers)
        assert statuses == {201: 1, 409: 9}, {s: n for s, n in statuses.items()} | {
            "bodies": [a.text for a in answers if a.status_code not in (201, 409)][:3]
        }
        conflicts = [a for a in answers if a.status_code == 409]
        assert all(_is_problem(a) for a in conflicts)
        assert {a.json()["type"].rsplit("/", 1)[-1] for a in conflicts} == {"schedule-overlap"}

        winner = next(a for a in answers if a.status_code == 201).json()
        schedules = await scalar(
            cluster.database_url,
            "SELECT count(*) FROM schedules WHERE practitioner_id = :p AND date = :day",
            p=practitioner,
            day=dt.date.fromisoformat(day),
        )
        slots = await scalar(
            cluster.database_url,
            "SELECT count(*) FROM slots s JOIN schedules c ON c.id = s.schedule_id "
            "WHERE s.practitioner_id = :p AND c.date = :day",
            p=practitioner,
            day=dt.date.fromisoformat(day),
        )
        assert (schedules, slots) == (1, winner["slots_created"])

    overlapping_pairs = await scalar(
        cluster.database_url,
        "SELECT count(*) FROM slots a JOIN slots b ON a.practitioner_id = b.practitioner_id AND a.id < b.id "
        "AND a.start_at < b.end_at AND b.start_at < a.end_at WHERE a.practitioner_id = :p",
        p=practitioner,
    )
    assert overlapping_pairs == 0


async def test_concurrent_earliest_bookings_from_two_processes_take_successive_slots_with_desk_bookings_racing(
    cluster: Cluster,
) -> None:
    """SKIP LOCKED hands each caller the next free slot; desk bookings of the same slots at the
    same moment lose or win cleanly: never two bookings on one slot, never a 500."""
    admin, desk = cluster.headers["facility_admin"], cluster.headers["registrar"]
    async with httpx.AsyncClient(base_url=cluster.urls[0], timeout=30) as client:
        seeded = await seed_schedule(client, admin, desk, date="2030-06-03")  # 3 slots
        more = {k: seeded[k] for k in ("practitioner_id", "location_id", "work_type_id")}
        extra = await client.post(
            "/api/v1/scheduling/schedules",
            json={**more, "date": "2030-06-04", "start_time": "08:00", "end_time": "10:00", "visit_minutes": 10},
            headers=desk,
        )
        assert extra.status_code == 201, extra.text
    earliest = {
        "practitioner_id": seeded["practitioner_id"],
        "start_after": "2030-06-01T00:00:00+00:00",
        "patient_pesel": PESEL,
        "source": "desk",
    }
    requests = [(cluster.urls[i % 2], "/api/v1/scheduling/bookings/earliest", earliest) for i in range(20)]
    requests += [
        (cluster.urls[i % 2], "/api/v1/scheduling/bookings", {"slot_id": s["id"], "patient_pesel": PESEL})
        for i, s in enumerate(seeded["slots"])
    ]

    answers = await _fire(requests, desk)

    statuses = Counter(a.status_code for a in answers)
    assert set(statuses) <= {201, 404, 409}, [a.text for a in answers if a.status_code >= 500][:3]
    assert statuses[201] == 15  # 3 + 12 slots, each booked exactly once by someone
    booked = [a.json()["slot_id"] for a in answers if a.status_code == 201]
    assert len(set(booked)) == 15
    assert (
        await scalar(
            cluster.database_url,
            "SELECT count(*) FROM bookings WHERE status = 'booked' AND slot_id IN "
            "(SELECT id FROM slots WHERE practitioner_id = :p)",
            p=seeded["practitioner_id"],
        )
        == 15
    )

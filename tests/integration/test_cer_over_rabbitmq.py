"""CeR on the real PostgreSQL and RabbitMQ, against the CeR sandbox process over real HTTP.

- CeR down in the middle of a day at the desk: every local booking succeeds, the changes wait in
  the queue (visible in /readyz) also across a restart of the integration service, and reach CeR
  when it is back: each once, each visit's booking before its cancellation, in the queue's order.
- A CeR booking and a desk booking of the same slot at the same moment, for many slots at once:
  exactly one patient per slot, the desk's loser is answered 409, CeR's loser is refused in CeR
  (which then holds the desk's patient), and reconciliation afterwards finds no difference.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.integration.app import create_app as create_integration
from services.integration.domain import sign
from services.integration.settings import IntegrationSettings
from services.scheduling.app import create_app as create_scheduling
from shared.settings import Settings
from tests.conftest import PESEL, make_settings, token_for
from tests.integration.conftest import ServiceProcess, fresh_database, new_npwz, scalar, serving, unique
from tests.support.waiting import eventually

pytestmark = pytest.mark.infra

SECRET = "cer-shared-secret-for-the-race-0123"
OTHER_PESEL = "02070803628"


@dataclass
class Suite:
    facility: str
    settings: Settings
    scheduling: httpx.AsyncClient
    scheduling_app: FastAPI
    integration_db: str
    sandbox: ServiceProcess
    cer: httpx.AsyncClient  # the sandbox's CeR, over the network

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(self.settings, role, facility_id=self.facility)}"}

    @contextlib.asynccontextmanager
    async def integration(self) -> AsyncIterator[httpx.AsyncClient]:
        """One run of the integration service: stopping it is a process going away."""
        settings = IntegrationSettings(
            **self.settings.model_dump(exclude={"service_name", "database_url"}),
            database_url=self.integration_db,
            p1_url=f"{self.sandbox.url}/sandbox/p1",
            cer_url=f"{self.sandbox.url}/sandbox/cer",
            cer_retry_seconds=0.1,
            cer_retry_max_seconds=0.5,
            ikp_poll_seconds=3600,
        )
        async with serving(create_integration(settings, peers={"scheduling": self.scheduling_app})) as client:
            yield client


@pytest.fixture
async def suite(
    tmp_path: Path, pg_database: Callable[[str], str], amqp_url: str, sandbox: ServiceProcess
) -> AsyncIterator[Suite]:
    base = make_settings(
        tmp_path,
        service_name="scheduling",
        database_url=fresh_database(pg_database, "cer_sched"),
        amqp_url=amqp_url,
        events_exchange=unique("test.events"),
        outbox_poll_seconds=0.1,
    )
    scheduling_app = create_scheduling(base)
    async with (
        serving(scheduling_app) as scheduling,
        httpx.AsyncClient(base_url=f"{sandbox.url}/sandbox/cer") as cer,
    ):
        integration_db = fresh_database(pg_database, "cer_integr")
        yield Suite(unique("clinic-cer"), base, scheduling, scheduling_app, integration_db, sandbox, cer)


async def _connect(suite: Suite, integration: httpx.AsyncClient) -> None:
    settings = await integration.put(
        "/api/v1/integration/cer/settings",
        json={
            "endpoint": f"https://clinic.example/webhooks/cer/{suite.facility}",
            "email": "cer@clinic.example",
            "secret": SECRET,
        },
        headers=suite.headers("facility_admin"),
    )
    assert settings.status_code == 200, settings.text


async def _cardiology_slots(suite: Suite, count: int) -> list[str]:
    admin = suite.headers("facility_admin")

    async def created(path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await suite.scheduling.post(f"/api/v1/scheduling/{path}", json=body, headers=admin)
        assert answer.status_code == 201, answer.text
        result: dict[str, Any] = answer.json()
        return result

    location = await created("locations", {"name": "Poradnia kardiologiczna"})
    doctor = await created("practitioners", {"name": "Dr K", "npwz": new_npwz(), "profession": "doctor"})
    work = await created("work-types", {"name": "Kardiologia", "cer_specialty": "cardiology"})
    minutes = 5 * count
    end = f"{8 + minutes // 60:02d}:{minutes % 60:02d}"
    await created(
        "schedules",
        {
            "practitioner_id": doctor["id"],
            "location_id": location["id"],
            "work_type_id": work["id"],
            "date": "2030-03-05",
            "start_time": "08:00",
            "end_time": end,
            "visit_minutes": 5,
        },
    )
    slots = await suite.scheduling.get(
        "/api/v1/scheduling/slots", params={"work_type_id": work["id"], "limit": 2000}, headers=admin
    )
    ids = [s["id"] for s in slots.json()]
    assert len(ids) == count

    async def in_cer() -> bool:
        answer = await suite.cer.get(f"/facilities/{suite.facility}/slots")
        return answer.status_code == 200 and len(answer.json()) == count

    await eventually(in_cer, what="the cardiology schedule published to CeR")
    return ids


async def _cer_checks(client: httpx.AsyncClient) -> dict[str, Any]:
    checks: dict[str, Any] = (await client.get("/readyz")).json()["checks"]
    return checks


async def _cer_changes(suite: Suite) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await suite.cer.get(f"/facilities/{suite.facility}/changes")).json()
    return found


async def test_a_cer_outage_loses_nothing_and_keeps_each_visits_order_across_a_restart(suite: Suite) -> None:
    desk = suite.headers("registrar")

    async def book(slot_id: str, pesel: str) -> str:
        answer = await suite.scheduling.post(
            "/api/v1/scheduling/bookings", json={"slot_id": slot_id, "patient_pesel": pesel}, headers=desk
        )
        assert answer.status_code == 201, answer.text  # CeR down never sends a patient away
        booking_id: str = answer.json()["id"]
        return booking_id

    async def cancel(booking_id: str) -> None:
        answer = await suite.scheduling.post(f"/api/v1/scheduling/bookings/{booking_id}/cancel", headers=desk)
        assert answer.status_code == 200, answer.text

    async with suite.integration() as integration:
        await _connect(suite, integration)
        slots = await _cardiology_slots(suite, 40)
        assert (await suite.cer.post("/down")).status_code == 200
        booked = list(
            await asyncio.gather(*(book(s, PESEL if i % 2 else OTHER_PESEL) for i, s in enumerate(slots[:15])))
        )
    # The integration service is gone as well: the desk goes on, the events wait in RabbitMQ.
    booked += await asyncio.gather(*(book(s, PESEL) for s in slots[15:30]))
    cancelled = booked[::3]
    for booking_id in cancelled:
        await cancel(booking_id)

    async with suite.integration() as integration:

        async def all_queued() -> bool:
            visits = await scalar(suite.integration_db, "SELECT count(*) FROM cer_visits")
            gone = await scalar(suite.integration_db, "SELECT count(*) FROM cer_visits WHERE cancelled")
            return bool(visits == len(booked) and gone == len(cancelled))

        await eventually(all_queued, what="every local change queued for CeR")
        queued = await scalar(suite.integration_db, "SELECT count(*) FROM cer_visits WHERE booked")
        checks = await _cer_checks(integration)
        # A cancellation that overtook its booking on the bus leaves only the cancellation to send.
        assert checks["cer_backlog"] == queued + len(cancelled)
        assert queued >= len(booked) - len(cancelled)
        assert checks["cer_oldest_pending_seconds"] > 0 and checks["cer_rejected"] == 0
        assert [c["kind"] for c in await _cer_changes(suite)].count("book") == 0  # nothing got through while down

        assert (await suite.cer.post("/up")).status_code == 200

        async def drained() -> bool:
            return (await _cer_checks(integration))["cer_backlog"] == 0

        await eventually(drained, what="the CeR queue sent")
        assert (await _cer_checks(integration))["cer_rejected"] == 0
        sent = (
            await integration.get(
                "/api/v1/integration/cer/outgoing", params={"limit": 500}, headers=suite.headers("facility_admin")
            )
        ).json()

    changes = [c for c in await _cer_changes(suite) if c["kind"] in ("book", "cancel")]
    first = [c for c in changes if not c["repeated"]]
    books = [c["reference"] for c in first if c["kind"] == "book"]
    assert len(books) == len(set(books))  # each once
    # Every visit still booked reached CeR; a cancelled one reached it booked, then cancelled - or,
    # when its cancellation overtook its booking on the bus, only cancelled.
    assert set(booked) - set(cancelled) <= set(books) <= set(booked)
    assert sorted(c["reference"] for c in first if c["kind"] == "cancel") == sorted(cancelled)
    position = {(c["kind"], c["reference"]): c["sequence"] for c in first}
    assert all(position[("book", b)] < position[("cancel", b)] for b in cancelled if ("book", b) in position)
    # CeR received them in the queue's own order (oldest first).
    queue_order = [q["kind"] for q in sorted(sent, key=lambda q: q["id"]) if q["kind"] in ("book", "cancel")]
    assert [c["kind"] for c in first] == queue_order
    active = (await suite.cer.get(f"/facilities/{suite.facility}/bookings")).json()
    assert sorted(b["local_booking_id"] for b in active) == sorted(set(booked) - set(cancelled))


async def _signed_notification(
    integration: httpx.AsyncClient, facility: str, slot_id: str, pesel: str
) -> httpx.Response:
    body = json.dumps(
        {
            "event_id": f"race-{uuid.uuid4()}",
            "event_type": "booking_created_ikp",
            "occurred_at": "2030-03-01T10:00:00+01:00",
            "slot_id": slot_id,
            "patient_pesel": pesel,
        }
    ).encode()
    now = int(time.time())
    headers = {
        "X-CeR-Timestamp": str(now),
        "X-CeR-Signature": sign(SECRET, now, body),
        "Content-Type": "application/json",
    }
    return await integration.post(f"/webhooks/cer/{facility}", content=body, headers=headers)


async def test_a_cer_booking_and_a_desk_booking_of_the_same_slot_at_once_leave_one_patient_and_tell_the_loser(
    suite: Suite,
) -> None:
    async with suite.integration() as integration:
        await _connect(suite, integration)
        await _race(suite, integration)


async def _race(suite: Suite, integration: httpx.AsyncClient) -> None:
    slots = await _cardiology_slots(suite, 20)
    # The CeR patient holds each slot in CeR (the notification is what races, so CeR does not send it).
    for slot_id in slots:
        played = await suite.cer.post(
            "/patients/bookings",
            json={"facility_id": suite.facility, "slot_id": slot_id, "patient_pesel": OTHER_PESEL, "notify": False},
        )
        assert played.status_code == 201, played.text
    desk = suite.headers("registrar")

    async def cer_holds(slot_id: str) -> bool:
        answer = await suite.scheduling.get(
            "/api/v1/scheduling/bookings", params={"status": "booked", "slot_id": slot_id}, headers=desk
        )
        return any(b["source"] == "cer_ikp" for b in answer.json())

    async def desk_books(slot_id: str, after_cer: bool) -> int:
        if after_cer:  # the desk comes a moment too late, however fast this machine carries the notification
            await eventually(lambda: cer_holds(slot_id), what="the CeR booking applied")
        answer = await suite.scheduling.post(
            "/api/v1/scheduling/bookings", json={"slot_id": slot_id, "patient_pesel": PESEL}, headers=desk
        )
        return answer.status_code

    outcomes = await asyncio.gather(
        # Half the desk bookings leave with the notifications, a true race either side may win; the
        # others once the CeR booking landed, so the CeR side wins some on any machine.
        *(desk_books(s, after_cer=i % 2 == 1) for i, s in enumerate(slots)),
        *(_signed_notification(integration, suite.facility, s, OTHER_PESEL) for s in slots),
    )
    desk_answers = outcomes[: len(slots)]
    assert all(isinstance(a, int) for a in desk_answers)
    assert all(getattr(a, "status_code", None) == 204 for a in outcomes[len(slots) :])
    assert set(desk_answers) <= {201, 409}

    async def applied() -> bool:
        answer = await suite.scheduling.get(
            "/api/v1/scheduling/bookings", params={"status": "booked", "cer_published": "true"}, headers=desk
        )
        return len(answer.json()) == len(slots)

    await eventually(applied, what="every slot booked by one side")
    bookings = (
        await suite.scheduling.get(
            "/api/v1/scheduling/bookings", params={"status": "booked", "cer_published": "true"}, headers=desk
        )
    ).json()
    holders = {b["slot_id"]: b for b in bookings}
    assert len(holders) == len(slots) == len(bookings)  # one patient per slot, every slot taken
    desk_won = {s for s, a in zip(slots, desk_answers, strict=True) if a == 201}
    assert {s for s, b in holders.items() if b["source"] == "desk"} == desk_won
    assert {s for s, b in holders.items() if b["source"] == "cer_ikp"} == set(slots) - desk_won
    assert set(slots) - desk_won, "the CeR side won no slot: the race was not exercised"

    async def cer_agrees() -> bool:
        active = (await suite.cer.get(f"/facilities/{suite.facility}/bookings")).json()
        in_cer = {b["slot_id"]: b["patient_pesel"] for b in active}
        return (
            in_cer == {s: b["patient_pesel"] for s, b in holders.items()}
            and (await _cer_checks(integration))["cer_backlog"] == 0
        )

    await eventually(cer_agrees, what="CeR holding the same patient on every slot")
    refused = (await suite.cer.get(f"/facilities/{suite.facility}/bookings", params={"status": "refused"})).json()
    assert {b["slot_id"] for b in refused} == desk_won  # CeR's losers were told

    report = await integration.post("/api/v1/integration/cer/reconcile", headers=suite.headers("facility_admin"))
    assert report.status_code == 200, report.text
    assert (report.json()["missing_locally"], report.json()["missing_in_cer"]) == ([], [])
    # A desk booking CeR refused while its patient still held the slot was settled by the refusal.
    assert (await _cer_checks(integration))["cer_rejected"] == 0

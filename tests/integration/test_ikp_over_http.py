"""The integration service against the P1 sandbox over real HTTP, on the real PostgreSQL.

IKP items become events exactly once: across a restart, across a crash between the poll and its
commit, and with two replicas polling at the same moment. Changes queued for P1 wait while it is
down and arrive in order when it is back.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from services.integration.app import create_app
from services.integration.models import IKP_ENABLED, REGISTER_PACKAGE, IkpIntegration, Outbox
from services.integration.service import queue
from services.integration.settings import IntegrationSettings
from shared.outbox import UnitOfWork
from tests.conftest import make_settings
from tests.integration.conftest import ServiceProcess, fresh_database, serving, unique

pytestmark = pytest.mark.infra

FACILITY = "clinic-ikp-http"
PESEL = "44051401359"


@pytest.fixture
def database(pg_database: Callable[[str], str]) -> str:
    return fresh_database(pg_database, f"ikp_{uuid.uuid4().hex[:6]}")


def integration_app(tmp_path: Path, database_url: str, sandbox: ServiceProcess) -> FastAPI:
    base = make_settings(tmp_path, service_name="integration", database_url=database_url)
    settings = IntegrationSettings(
        **base.model_dump(exclude={"service_name", "scheduling_url", "events_exchange"}),
        events_exchange=unique("test.events"),
        p1_url=f"{sandbox.url}/sandbox/p1",
        scheduling_url="http://127.0.0.1:9",  # not asked in these tests
        # The passes are run by the test, not by the background loops.
        ikp_poll_seconds=3600,
        p1_retry_seconds=3600,
    )
    return create_app(settings)


async def _enabled_facility(app: FastAPI, sandbox: ServiceProcess) -> None:
    async with httpx.AsyncClient(base_url=f"{sandbox.url}/sandbox/p1") as p1:
        assert (await p1.post("/ikp/enable", json={"facility_id": FACILITY})).status_code in (200, 202)
        assert (await p1.post(f"/ikp/{FACILITY}/confirm")).status_code == 200
    async with app.state.ctx.sessions() as session, session.begin():
        session.add(
            IkpIntegration(
                facility_id=FACILITY,
                status=IKP_ENABLED,
                poller_npwz="1047514",
                location_id=uuid.uuid4(),
                department_code="0010",
                last_sequence=0,
            )
        )


async def _play(sandbox: ServiceProcess, drugs: list[str]) -> None:
    at = dt.datetime.now(dt.UTC) - dt.timedelta(hours=1)
    items = [
        {"drug": d, "packages": 1, "submitted_at": (at + dt.timedelta(minutes=i)).isoformat()}
        for i, d in enumerate(drugs)
    ]
    async with httpx.AsyncClient(base_url=f"{sandbox.url}/sandbox/p1") as p1:
        answer = await p1.post(
            "/ikp/requests",
            json={"facility_id": FACILITY, "patient_pesel": PESEL, "doctor_npwz": "1047514", "items": items},
        )
        assert answer.status_code == 201, answer.text


async def _item_events(app: FastAPI) -> list[str]:
    """The drug of every item event in the outbox, in outbox order."""
    async with app.state.ctx.sessions() as session:
        rows = await session.scalars(
            sa.select(Outbox.envelope).where(Outbox.event_type == "integration.ikp.item_received").order_by(Outbox.seq)
        )
        return [json.loads(r)["payload"]["drug"] for r in rows]


async def test_ikp_items_become_events_once_across_restarts_crashes_and_replicas(
    tmp_path: Path, database: str, sandbox: ServiceProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = integration_app(tmp_path, database, sandbox)
    async with serving(first):
        await _enabled_facility(first, sandbox)
        await _play(sandbox, ["A1", "A2", "A3"])
        assert await first.state.ctx.extras["poller"].poll_facility(FACILITY) == 3

    restarted = integration_app(tmp_path, database, sandbox)
    async with serving(restarted):
        poller = restarted.state.ctx.extras["poller"]
        assert await poller.poll_facility(FACILITY) == 0  # nothing new after the restart
        await _play(sandbox, ["B1", "B2"])

        # A crash between the poll and its commit: neither the cursor nor the events are kept...
        real_commit = UnitOfWork.commit
        crashes = iter([True])

        async def crashing_commit(self: UnitOfWork) -> None:
            if next(crashes, False):
                raise ConnectionError("the database went away mid-commit")
            await real_commit(self)

        monkeypatch.setattr(UnitOfWork, "commit", crashing_commit)
        with pytest.raises(ConnectionError):
            await poller.poll_facility(FACILITY)
        assert await _item_events(restarted) == ["A1", "A2", "A3"]
        # ...so the next poll takes the same items, once.
        assert await poller.poll_facility(FACILITY) == 2

        # Two replicas polling the same facility at the same moment.
        await _play(sandbox, ["C1", "C2", "C3", "C4"])
        replica = integration_app(tmp_path, database, sandbox)
        async with serving(replica):
            counts = await asyncio.gather(
                poller.poll_facility(FACILITY), replica.state.ctx.extras["poller"].poll_facility(FACILITY)
            )
        assert sorted(counts) == [0, 4]

        assert await _item_events(restarted) == ["A1", "A2", "A3", "B1", "B2", "C1", "C2", "C3", "C4"]


def _registration(n: int) -> dict[str, Any]:
    key = f"{n:044d}"
    return {
        "package_key": key,
        "access_code": f"{1000 + n}",
        "patient_pesel": PESEL,
        "facility_id": FACILITY,
        "issuer_npwz": "1047514",
        "issued_on": dt.date.today().isoformat(),
        "prescriptions": [
            {
                "key": f"{n + 500:044d}",
                "drug": f"Lek {n}",
                "packages": 1,
                "units_per_package": "30",
                "daily_dose_units": "1",
                "kind": "standard",
                "valid_from": dt.date.today().isoformat(),
                "valid_until": (dt.date.today() + dt.timedelta(days=30)).isoformat(),
            }
        ],
    }


async def test_changes_for_p1_wait_while_it_is_down_and_arrive_in_order(
    tmp_path: Path, database: str, sandbox: ServiceProcess
) -> None:
    app = integration_app(tmp_path, database, sandbox)
    async with serving(app), httpx.AsyncClient(base_url=f"{sandbox.url}/sandbox/p1") as p1:
        forwarder = app.state.ctx.extras["forwarder"]
        assert (await p1.post("/down")).status_code == 200
        for n in range(1, 6):
            async with app.state.ctx.sessions() as session, session.begin():
                queue(session, FACILITY, REGISTER_PACKAGE, f"{n:044d}", _registration(n))

        assert await forwarder.forward_pending() == 0
        assert await forwarder.backlog() == 5

        assert (await p1.post("/up")).status_code == 200
        assert await forwarder.forward_pending() == 0  # still backing off: nothing is hammered
        assert await forwarder.forward_pending(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)) == 5

        assert (await p1.get("/received")).json() == [f"{n:044d}" for n in range(1, 6)]
        assert await forwarder.backlog() == 0

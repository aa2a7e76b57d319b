"""Races on the real PostgreSQL: the pharmacy lock, "each month once" and ending an order.

Two apps of the reimbursement service (two engines, two connection pools: two replicas) share one
database and one eZWM sandbox; requests go to both at the same moment.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from services.reimbursement.app import create_app
from services.reimbursement.models import Base
from services.reimbursement.settings import ReimbursementSettings
from services.sandbox.app import create_app as create_sandbox
from shared.clock import FixedClock
from tests.conftest import PESEL, make_settings, token_for
from tests.integration.conftest import scalar

pytestmark = pytest.mark.infra

API = "/api/v1/reimbursement"
TODAY = dt.date(2030, 3, 15)
ATTEMPTS_PER_PHARMACY = 20


@dataclass
class Replicas:
    clients: list[httpx.AsyncClient]
    settings: ReimbursementSettings
    apps: list[Any]
    today: dt.date

    def set_today(self, day: dt.date) -> None:
        self.today = day
        for app in self.apps:
            app.state.ctx.clock = FixedClock(dt.datetime.combine(day, dt.time(12), tzinfo=ZoneInfo("Europe/Warsaw")))

    def headers(self, role: str, **claims: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {token_for(self.settings, role, **claims)}"}

    async def order(self, **changes: Any) -> str:
        answer = await self.issue(0, **changes)
        assert answer.status_code == 201, answer.text
        number: str = answer.json()["number"]
        return number

    async def issue(self, replica: int, **changes: Any) -> httpx.Response:
        body = {
            "patient_pesel": PESEL,
            "code": "P.100",
            "group": "MCH1",
            "pieces_per_month": 90,
            "months": 6,
            "start_month": "2030-03",
            "channel": "visit",
            **changes,
        }
        return await self.clients[replica].post(f"{API}/orders", json=body, headers=self.headers("practitioner"))

    async def realise(
        self, replica: int, number: str, pharmacy_id: str, months: list[str], realized_on: str | None = None
    ) -> httpx.Response:
        realized_on = realized_on or self.today.isoformat()
        body: dict[str, Any] = {"months": months, "pieces": 10, "unit_price": "1.50", "realized_on": realized_on}
        if realized_on != self.today.isoformat():  # a paper date: only as an offline registration
            body |= {"offline": True, "patient_statement": True}
        headers = self.headers("pharmacist", pharmacy_id=pharmacy_id)
        return await self.clients[replica].post(f"{API}/orders/{number}/realizations", json=body, headers=headers)

    async def end(self, replica: int, number: str, end_month: str) -> httpx.Response:
        headers = self.headers("practitioner")
        return await self.clients[replica].post(
            f"{API}/orders/{number}/end", json={"end_month": end_month}, headers=headers
        )


@asynccontextmanager
async def two_replicas(pg_url: str, tmp_path: Path, *, today: dt.date = TODAY) -> AsyncIterator[Replicas]:
    settings = ReimbursementSettings(**make_settings(tmp_path, database_url=pg_url).model_dump())
    ezwm = httpx.ASGITransport(app=create_sandbox())  # one eZWM for both, as in production
    async with AsyncExitStack() as stack:
        clients, apps = [], []
        for _ in range(2):  # one after the other: the first migrates, the second finds it done
            app = create_app(settings, ezwm_transport=ezwm)
            apps.append(app)
            await stack.enter_async_context(app.router.lifespan_context(app))
            client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=60)
            clients.append(await stack.enter_async_context(client))
        replicas = Replicas(clients, settings, apps, today)
        replicas.set_today(today)
        yield replicas


async def test_two_pharmacies_racing_for_one_order_leave_one_lock_and_each_month_once(
    pg_url: str, tmp_path: Path
) -> None:
    async with two_replicas(pg_url, tmp_path, today=dt.date(2030, 3, 20)) as replicas:
        number = await replicas.order()
        replicas.set_today(dt.date(2030, 4, 2))
        # Pharmacy A supplies March on a back-dated (paper) realisation while pharmacy B supplies April
        # today: their months never collide, so only the lock keeps the second pharmacy out; each
        # pharmacy's own repeats collide on their month.
        attempts = [
            replicas.realise(replica, number, pharmacy, months, realized_on)
            for _ in range(ATTEMPTS_PER_PHARMACY)
            for replica, pharmacy, months, realized_on in (
                (0, "pharmacy-a", ["2030-03"], "2030-03-31"),
                (1, "pharmacy-b", ["2030-04"], "2030-04-02"),
            )
        ]
        answers = await asyncio.gather(*attempts)

    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 1, 409: len(answers) - 1}, [a.text for a in answers if a.status_code != 409]
    (won,) = [a.json() for a in answers if a.status_code == 201]
    winner = won["locked_by_pharmacy"]
    kinds = Counter(a.json()["type"].rsplit("/", 1)[1] for a in answers if a.status_code == 409)
    assert set(kinds) <= {"order-locked", "month-already-realised"}, kinds

    assert await scalar(pg_url, "SELECT locked_by FROM orders WHERE number = :n", n=number) == winner
    assert await scalar(pg_url, "SELECT count(DISTINCT pharmacy_id) FROM realisations") == 1
    assert await scalar(pg_url, "SELECT count(*) FROM realisations WHERE order_number = :n", n=number) == 1
    assert await scalar(pg_url, "SELECT count(*) FROM order_months WHERE order_number = :n", n=number) == 1


async def test_ending_an_order_and_realising_past_its_new_end_never_both_succeed(pg_url: str, tmp_path: Path) -> None:
    outcomes: Counter[tuple[int, int]] = Counter()
    async with two_replicas(pg_url, tmp_path) as replicas:
        for _ in range(8):
            number = await replicas.order()
            realised, ended = await asyncio.gather(
                replicas.realise(0, number, "pharmacy-a", ["2030-03", "2030-04"]),
                replicas.end(1, number, "2030-03"),
            )
            outcomes[(realised.status_code, ended.status_code)] += 1
            through = await scalar(pg_url, "SELECT realized_through FROM orders WHERE number = :n", n=number)
            end = await scalar(pg_url, "SELECT end_month FROM orders WHERE number = :n", n=number)
            assert end is None or through is None or through <= end, (number, through, end)
    # Exactly one of the two wins each time; the loser is told why (422), never a 500.
    assert set(outcomes) <= {(201, 422), (422, 200)}, outcomes


async def test_two_continuations_of_one_original_racing_leave_one(pg_url: str, tmp_path: Path) -> None:
    async with two_replicas(pg_url, tmp_path) as replicas:
        original = await replicas.order(months=1)
        short = {"short_form": True, "continues_order": original, "start_month": "2030-04"}
        answers = await asyncio.gather(*(replicas.issue(i % 2, **short) for i in range(6)))
    statuses = Counter(a.status_code for a in answers)
    assert statuses == {201: 1, 409: 5}, [a.text for a in answers]
    assert {a.json()["type"].rsplit("/", 1)[1] for a in answers if a.status_code == 409} == {"order-already-continued"}
    assert await scalar(pg_url, "SELECT count(*) FROM orders WHERE continues_order = :n", n=original) == 1


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_the_migrations_build_exactly_what_the_models_declare(pg_url: str, tmp_path: Path) -> None:
    async with two_replicas(pg_url, tmp_path):
        pass
    engine = create_async_engine(pg_url)
    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(_differences) == []
    finally:
        await engine.dispose()

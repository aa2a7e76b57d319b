"""End to end through the embedded gateway: an eZWM order from the clinic to the pharmacy's settlement."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from gateway.app import create_app
from shared.clock import FixedClock
from tests.conftest import make_gateway_settings, running_client

API = "/api/v1/reimbursement"
PESEL = "44051401359"


@dataclass
class Gateway:
    client: httpx.AsyncClient
    app: Any

    def set_today(self, day: dt.date) -> None:
        """Fix the reimbursement service's clock: its "today" decides every date rule."""
        service = self.app.state.gateway.upstreams["reimbursement"].app
        service.state.ctx.clock = FixedClock(dt.datetime.combine(day, dt.time(12), tzinfo=ZoneInfo("Europe/Warsaw")))

    async def token(self, **claims: str) -> dict[str, str]:
        return await _token(self.client, **claims)

    async def order(self, doctor: dict[str, str], **changes: Any) -> httpx.Response:
        body = {
            "patient_pesel": PESEL,
            "code": "P.100",
            "group": "MCH1",
            "pieces_per_month": 90,
            "months": 3,
            "start_month": "2030-03",
            "entitlements": [],
            "channel": "visit",
            **changes,
        }
        return await self.client.post(f"{API}/orders", json=body, headers=doctor)

    async def realise(self, number: str, pharmacist: dict[str, str], **changes: Any) -> httpx.Response:
        body = {"months": ["2030-03"], "pieces": 90, "unit_price": "1.50", **changes}
        return await self.client.post(f"{API}/orders/{number}/realizations", json=body, headers=pharmacist)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    app = create_app(make_gateway_settings(tmp_path))
    async for client in running_client(app):
        yield Gateway(client, app)


async def _token(client: httpx.AsyncClient, **claims: str) -> dict[str, str]:
    answer = await client.post("/api/v1/auth/dev-token", json=claims)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def problem(answer: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = answer.json()
    if field is not None:
        assert field in [e["field"] for e in body["errors"]], body
    return body


async def test_an_order_is_verified_realised_once_and_settled(gateway: Gateway) -> None:
    gateway_client = gateway.client
    today = dt.date(2030, 3, 15)
    gateway.set_today(today)
    doctor = await _token(gateway_client, sub="dr", role="practitioner", facility_id="clinic-r", npwz="5425740")
    apteka = await _token(gateway_client, sub="ph1", role="pharmacist", pharmacy_id="apteka-1")
    other = await _token(gateway_client, sub="ph2", role="pharmacist", pharmacy_id="apteka-2")
    month = today.strftime("%Y-%m")

    order = await gateway_client.post(
        "/api/v1/reimbursement/orders",
        json={
            "patient_pesel": "44051401359",
            "code": "P.100",
            "group": "MCH1",
            "pieces_per_month": 90,
            "months": 3,
            "start_month": month,
            "entitlements": [],
            "channel": "visit",
        },
        headers=doctor,
    )
    assert order.status_code == 201, order.text
    assert order.json()["verification"] == "positive"
    number = order.json()["number"]

    realised = await gateway_client.post(
        f"/api/v1/reimbursement/orders/{number}/realizations",
        json={
            "months": [month],
            "pieces": 90,
            "unit_price": "1.50",
            "realized_on": today.isoformat(),
            "pesel": "44051401359",
        },
        headers=apteka,
    )
    assert realised.status_code == 201, realised.text
    # 90 × min(1.50, 1.70) × 70 % = 94.50; the patient pays the rest of 135.00.
    assert (realised.json()["subsidy"], realised.json()["patient_share"]) == ("94.50", "40.50")

    elsewhere = await gateway_client.post(
        f"/api/v1/reimbursement/orders/{number}/realizations",
        json={"months": [month], "pieces": 10, "unit_price": "1.50", "realized_on": today.isoformat()},
        headers=other,
    )
    assert elsewhere.status_code == 409
    assert elsewhere.headers["content-type"] == "application/problem+json"

    settlement = await gateway_client.get(
        "/api/v1/reimbursement/settlements", params={"month": month, "format": "json"}, headers=apteka
    )
    assert settlement.status_code == 200, settlement.text
    assert settlement.json()["totals"]["subsidy"] == "94.50"
    csv = await gateway_client.get(
        "/api/v1/reimbursement/settlements", params={"month": month, "format": "csv"}, headers=apteka
    )
    assert csv.status_code == 200, csv.text
    assert csv.headers["content-type"].startswith("text/csv")
    lines = csv.text.strip().splitlines()
    assert number in lines[1] and "94.50" in lines[1]
    assert lines[-1].startswith("TOTAL") and "94.50" in lines[-1]


# ----------------------------------------------------------------------------- nothing in the past


async def test_no_back_dating_without_the_offline_path(gateway: Gateway) -> None:
    doctor = await gateway.token(sub="dr", role="practitioner", facility_id="clinic-r", npwz="5425740")
    apteka = await gateway.token(sub="ph1", role="pharmacist", pharmacy_id="apteka-1")
    gateway.set_today(dt.date(2030, 4, 2))
    past = problem(await gateway.order(doctor, start_month="2030-03"), 422, "body.start_month")
    assert "2030-03 has already passed" in past["detail"]

    gateway.set_today(dt.date(2030, 3, 20))
    number = (await gateway.order(doctor, start_month="2030-03")).json()["number"]
    gateway.set_today(dt.date(2030, 4, 2))
    months = ["2030-03", "2030-04"]
    problem(
        await gateway.realise(number, apteka, months=months, pieces=180, realized_on="2030-03-31"),
        422,
        "body.realized_on",
    )
    problem(
        await gateway.realise(number, apteka, months=months, pieces=180, realized_on="2030-03-31", offline=True),
        422,
        "body.patient_statement",
    )
    problem(
        await gateway.realise(
            number, apteka, months=months, pieces=180, realized_on="2030-04-01", offline=True, patient_statement=True
        ),
        422,
        "body.months",
    )
    paper = await gateway.realise(
        number, apteka, months=months, pieces=180, realized_on="2030-03-31", offline=True, patient_statement=True
    )
    assert paper.status_code == 201, paper.text
    assert (paper.json()["realized_on"], paper.json()["offline"]) == ("2030-03-31", True)
    today = await gateway.realise(number, apteka, months=["2030-05"], pieces=10)
    problem(today, 422, "body.months")  # today is April: May is not the realisation date's month


# ----------------------------------------------------------------------------- short form: only a continuation


async def test_a_short_form_order_is_only_the_continuation_of_an_ended_original(gateway: Gateway) -> None:
    doctor = await gateway.token(sub="dr", role="practitioner", facility_id="clinic-r", npwz="5425740")
    first = await gateway.token(sub="ph1", role="pharmacist", pharmacy_id="apteka-1")
    second = await gateway.token(sub="ph2", role="pharmacist", pharmacy_id="apteka-2")
    gateway.set_today(dt.date(2030, 3, 15))
    # A first order in short form would escape the lock: it must name an original.
    problem(await gateway.order(doctor, short_form=True), 422, "body.continues_order")

    original = (await gateway.order(doctor, months=2)).json()["number"]
    assert (await gateway.realise(original, first)).status_code == 201
    early = await gateway.order(doctor, short_form=True, continues_order=original, start_month="2030-04")
    problem(early, 422, "body.start_month")  # the original runs until April
    changed = await gateway.order(doctor, short_form=True, continues_order=original, start_month="2030-05", group="PW")
    problem(changed, 422, "body.group")

    short = await gateway.order(doctor, short_form=True, continues_order=original, start_month="2030-05")
    assert short.status_code == 201, short.text
    problem(await gateway.order(doctor, short_form=True, continues_order=original, start_month="2030-06"), 409)
    gateway.set_today(dt.date(2030, 5, 4))
    elsewhere = await gateway.realise(short.json()["number"], second, months=["2030-05"])
    assert elsewhere.status_code == 201, elsewhere.text
    assert elsewhere.json()["locked_by_pharmacy"] is None


# ----------------------------------------------------------------------------- an ended order stays ended


async def test_a_shortened_order_is_closed_past_its_end_everywhere_and_stays_with_its_pharmacy(
    gateway: Gateway,
) -> None:
    doctor = await gateway.token(sub="dr", role="practitioner", facility_id="clinic-r", npwz="5425740")
    first = await gateway.token(sub="ph1", role="pharmacist", pharmacy_id="apteka-1")
    second = await gateway.token(sub="ph2", role="pharmacist", pharmacy_id="apteka-2")
    gateway.set_today(dt.date(2030, 3, 15))
    number = (await gateway.order(doctor, months=6)).json()["number"]  # March to August
    assert (await gateway.realise(number, first)).status_code == 201
    ended = await gateway.client.post(f"{API}/orders/{number}/end", json={"end_month": "2030-04"}, headers=doctor)
    assert ended.status_code == 200, ended.text
    assert (ended.json()["valid_until"], ended.json()["locked_by_pharmacy"]) == ("2030-04", "apteka-1")

    gateway.set_today(dt.date(2030, 4, 2))
    locked = problem(await gateway.realise(number, second, months=["2030-04"]), 409)
    assert locked["type"].endswith("/order-locked")
    problem(await gateway.realise(number, first, months=["2030-04", "2030-05"], pieces=10), 422, "body.months")
    gateway.set_today(dt.date(2030, 6, 1))
    problem(await gateway.realise(number, first, months=["2030-06"], pieces=10), 422, "body.realized_on")
    problem(await gateway.realise(number, second, months=["2030-06"], pieces=10), 409)

    # The patient changes pharmacy with the doctor's new order: a short-form continuation from May.
    gateway.set_today(dt.date(2030, 4, 20))
    short = await gateway.order(doctor, short_form=True, continues_order=number, start_month="2030-05")
    assert short.status_code == 201, short.text
    gateway.set_today(dt.date(2030, 5, 3))
    moved = await gateway.realise(short.json()["number"], second, months=["2030-05"])
    assert moved.status_code == 201, moved.text


@pytest.mark.parametrize("month", ["1999-12", "2101-01", "9999-12", "0000-01"])
async def test_a_settlement_month_outside_2000_to_2100_is_a_422_naming_it(gateway: Gateway, month: str) -> None:
    apteka = await gateway.token(sub="ph1", role="pharmacist", pharmacy_id="apteka-1")
    answer = await gateway.client.get(f"{API}/settlements", params={"month": month}, headers=apteka)
    problem(answer, 422, "query.month")

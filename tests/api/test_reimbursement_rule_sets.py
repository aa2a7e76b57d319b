"""An operator loads the pre-2023 monthly amounts; a 2022 realisation is then computed by those rules."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from services.reimbursement.app import create_app
from shared.clock import FixedClock
from tests.conftest import make_settings, running_client, token_for

API = "/api/v1/reimbursement"
ORDER_2022 = {
    "patient_pesel": "44051401359",
    "code": "P.100",
    "group": "MCH1",
    "pieces_per_month": 90,
    "months": 12,
    "start_month": "2022-03",
    "entitlements": [],
    "channel": "visit",
}
REALISATION_2022 = {"months": ["2022-03"], "pieces": 60, "unit_price": "1.50", "realized_on": "2022-03-10"}


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_settings(tmp_path))
    # Nothing is back-dated: the 2022 order and its realisation are made on their own day.
    app.state.ctx.clock = FixedClock(dt.datetime(2022, 3, 10, 12, tzinfo=ZoneInfo("Europe/Warsaw")))
    async for c in running_client(app):
        yield c


def headers(tmp_path: Path, role: str, **claims: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_for(make_settings(tmp_path), role, **claims)}"}


async def test_old_amounts_loaded_by_an_operator_price_a_2022_realisation(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    operator = headers(tmp_path, "operator")
    doctor = headers(tmp_path, "practitioner")
    apteka = headers(tmp_path, "pharmacist", pharmacy_id="apteka-1")
    number = (await client.post(f"{API}/orders", json=ORDER_2022, headers=doctor)).json()["number"]

    refused = await client.post(f"{API}/orders/{number}/realizations", json=REALISATION_2022, headers=apteka)
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "body.realized_on"

    table = (await client.get(f"{API}/rule-sets", headers=operator)).json()
    assert [(r["valid_from"], r["loaded"]) for r in table] == [("2020-01-01", False), ("2023-01-01", True)]
    loaded = await client.put(
        f"{API}/rule-sets/2020-01-01/monthly-limits", json={"standard": "77.00", "higher": "120.00"}, headers=operator
    )
    assert loaded.status_code == 200, loaded.text
    assert (loaded.json()["loaded"], loaded.json()["standard_monthly_limit"]) == (True, "77.00")

    priced = await client.post(f"{API}/orders/{number}/realizations", json=REALISATION_2022, headers=apteka)
    assert priced.status_code == 201, priced.text
    body = priced.json()
    # Before 2023 a P.100 patient paid nothing up to the MONTHLY limit: 60 × 1.50 = 90.00 against 77.00.
    assert body["rules_valid_from"] == "2020-01-01"
    assert (body["subsidy"], body["patient_share"]) == ("77.00", "13.00")


async def test_only_an_operator_loads_amounts_and_bad_amounts_are_named(
    client: httpx.AsyncClient, tmp_path: Path
) -> None:
    path = f"{API}/rule-sets/2020-01-01/monthly-limits"
    pharmacist = headers(tmp_path, "pharmacist", pharmacy_id="apteka-1")
    forbidden = await client.put(path, json={"standard": "77.00", "higher": "120.00"}, headers=pharmacist)
    assert forbidden.status_code == 403
    operator = headers(tmp_path, "operator")
    inverted = await client.put(path, json={"standard": "120.00", "higher": "77.00"}, headers=operator)
    assert inverted.status_code == 422
    assert inverted.json()["errors"][0]["field"] == "body.higher"
    not_money = await client.put(path, json={"standard": "77.001", "higher": "120"}, headers=operator)
    assert not_money.status_code == 422
    assert not_money.json()["errors"][0]["field"] == "body.standard"
    per_piece = await client.put(
        f"{API}/rule-sets/2023-01-01/monthly-limits", json={"standard": "77.00", "higher": "120.00"}, headers=operator
    )
    assert per_piece.status_code == 422
    unknown = await client.put(
        f"{API}/rule-sets/2021-05-05/monthly-limits", json={"standard": "77.00", "higher": "120.00"}, headers=operator
    )
    assert unknown.status_code == 404

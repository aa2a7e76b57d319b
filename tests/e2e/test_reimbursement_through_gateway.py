"""End to end through the embedded gateway: an eZWM order from the clinic to the pharmacy's settlement."""

from __future__ import annotations

import datetime as dt

import httpx


async def _token(client: httpx.AsyncClient, **claims: str) -> dict[str, str]:
    answer = await client.post("/api/v1/auth/dev-token", json=claims)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def test_an_order_is_verified_realised_once_and_settled(gateway_client: httpx.AsyncClient) -> None:
    doctor = await _token(gateway_client, sub="dr", role="practitioner", facility_id="clinic-r", npwz="5425740")
    apteka = await _token(gateway_client, sub="ph1", role="pharmacist", pharmacy_id="apteka-1")
    other = await _token(gateway_client, sub="ph2", role="pharmacist", pharmacy_id="apteka-2")
    today = dt.date.today()
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

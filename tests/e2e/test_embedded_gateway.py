"""End to end through the gateway in the embedded default (one process, SQLite, in-process bus)."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from tests.conftest import make_gateway_settings, running_client


async def _token(client: httpx.AsyncClient, **claims: str) -> dict[str, str]:
    answer = await client.post("/api/v1/auth/dev-token", json=claims)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def test_a_desk_booking_through_the_gateway_takes_the_slot_once(gateway_client: httpx.AsyncClient) -> None:
    admin = await _token(gateway_client, sub="admin", role="facility_admin", facility_id="clinic-e2e")
    desk = await _token(gateway_client, sub="desk", role="registrar", facility_id="clinic-e2e")
    location = (
        await gateway_client.post("/api/v1/scheduling/locations", json={"name": "Centrum"}, headers=admin)
    ).json()
    doctor = (
        await gateway_client.post(
            "/api/v1/scheduling/practitioners",
            json={"name": "Dr A", "npwz": "5425740", "profession": "doctor", "poz": True},
            headers=admin,
        )
    ).json()
    work = (await gateway_client.post("/api/v1/scheduling/work-types", json={"name": "Visit"}, headers=admin)).json()
    schedule = await gateway_client.post(
        "/api/v1/scheduling/schedules",
        json={
            "practitioner_id": doctor["id"],
            "location_id": location["id"],
            "work_type_id": work["id"],
            "date": "2030-03-04",
            "start_time": "08:00",
            "end_time": "09:00",
            "visit_minutes": 20,
        },
        headers=desk,
    )
    assert schedule.status_code == 201, schedule.text
    assert schedule.json()["slots_created"] == 3
    slots = (await gateway_client.get("/api/v1/scheduling/slots", params={"status": "free"}, headers=desk)).json()
    assert [s["start"] for s in slots] == ["2030-03-04T07:00:00Z", "2030-03-04T07:20:00Z", "2030-03-04T07:40:00Z"]

    first = await gateway_client.post(
        "/api/v1/scheduling/bookings",
        json={"slot_id": slots[0]["id"], "patient_pesel": "44051401359", "source": "desk"},
        headers={**desk, "X-Request-ID": "trace-me-1"},
    )
    assert first.status_code == 201, first.text
    assert first.headers["x-request-id"] == "trace-me-1"
    second = await gateway_client.post(
        "/api/v1/scheduling/bookings",
        json={"slot_id": slots[0]["id"], "patient_pesel": "02070803628", "source": "desk"},
        headers=desk,
    )
    assert second.status_code == 409
    assert second.headers["content-type"] == "application/problem+json"

    booked = (await gateway_client.get("/api/v1/scheduling/slots", params={"status": "booked"}, headers=desk)).json()
    assert [s["id"] for s in booked] == [slots[0]["id"]]


async def test_the_gateway_refuses_a_wrong_role_before_the_service(gateway_client: httpx.AsyncClient) -> None:
    pharmacist = await _token(gateway_client, sub="ph", role="pharmacist", pharmacy_id="apteka-1")
    answer = await gateway_client.post("/api/v1/scheduling/locations", json={"name": "X"}, headers=pharmacist)
    assert answer.status_code == 403
    assert answer.json()["title"] == "Forbidden"
    missing = await gateway_client.post("/api/v1/scheduling/locations", json={"name": "X"})
    assert missing.status_code == 401


async def test_the_merged_openapi_lists_every_scheduling_operation(gateway_client: httpx.AsyncClient) -> None:
    spec = (await gateway_client.get("/openapi.json")).json()
    for path in (
        "/api/v1/scheduling/locations",
        "/api/v1/scheduling/practitioners",
        "/api/v1/scheduling/work-types",
        "/api/v1/scheduling/schedules",
        "/api/v1/scheduling/slots",
        "/api/v1/scheduling/bookings",
        "/api/v1/scheduling/bookings/{booking_id}/cancel",
        "/api/v1/scheduling/locations/{location_id}/duty-practitioner",
        "/api/v1/scheduling/practitioners/{practitioner_id}/absences",
        "/api/v1/auth/dev-token",
    ):
        assert path in spec["paths"], path
    assert (await gateway_client.get("/docs")).status_code == 200


async def test_make_run_seeds_a_clinic_that_takes_a_prescription_order_at_once(tmp_path: Path) -> None:
    from gateway import demo
    from gateway.run import embedded_app

    app = embedded_app(make_gateway_settings(tmp_path, seed_demo_data=True))
    async for client in running_client(app, "http://gateway"):
        desk = await _token(client, sub="desk", role="registrar", facility_id=demo.DEMO_FACILITY)
        settings = (await client.get("/api/v1/prescriptions/settings", headers=desk)).json()
        assert (settings["mode"], settings["active"]) == ("demo", True)
        location = (await client.get("/api/v1/scheduling/locations", headers=desk)).json()[0]
        order = await client.post(
            "/api/v1/prescriptions/requests",
            json={
                "patient_pesel": "44051401359",
                "practitioner_npwz": demo.PRACTITIONERS[0]["npwz"],
                "location_id": location["id"],
                "items": [{"drug": "Metformax 500", "packages": 2}],
            },
            headers=desk,
        )
        assert order.status_code == 201, order.text
        assert (order.json()["status"], order.json()["routed_to"]) == ("booked", "own")
        # The cardiology schedules are CeR's, and CeR's notifications come back to this gateway.
        admin = await _token(client, sub="admin", role="facility_admin", facility_id=demo.DEMO_FACILITY)
        cer = (await client.get("/api/v1/integration/cer/settings", headers=admin)).json()
        assert cer["endpoint"] == f"http://127.0.0.1:8000/webhooks/cer/{demo.DEMO_FACILITY}"
        report = (await client.get("/api/v1/integration/cer/compliance", headers=admin)).json()
        cardiology = next(s for s in report["specialties"] if s["specialty"] == "cardiology")
        assert cardiology["schedules"] == 5


async def test_docs_and_redoc_load_every_asset_from_the_gateway_itself(gateway_client: httpx.AsyncClient) -> None:
    """Issue 21.2: on a clinic's offline network a page that loads Swagger UI from a CDN is blank.
    Every script, style sheet and icon the pages name is served by the gateway, and no page names
    another host (the validator badge, which would send the document out, is off)."""
    for page in ("/docs", "/redoc"):
        answer = await gateway_client.get(page)
        assert answer.status_code == 200, page
        html = answer.text
        assert not re.findall(r"(?:https?:)?//[\w.-]+", html.replace("window.location.origin", "")), page
        assets = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert any(a.endswith(".js") for a in assets), page
        for asset in assets:
            served = await gateway_client.get(asset)
            assert served.status_code == 200, asset
            assert len(served.content) > 1000, asset
        assert "/openapi.json" in html
    assert '"validatorUrl": null' in (await gateway_client.get("/docs")).text

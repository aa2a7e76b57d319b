"""One request id from the front end to every consumer, in JSON logs that never hold a whole PESEL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.app import create_app
from tests.conftest import make_gateway_settings, running_client

PESEL = "44051401359"
REQUEST_ID = "desk-7f3a-trace-0001"


def _lines(text: str) -> list[dict[str, Any]]:
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                found.append(json.loads(line))
            except ValueError:
                continue
    return found


async def _created(client: httpx.AsyncClient, headers: dict[str, str], path: str, body: dict[str, Any]) -> str:
    answer = await client.post(f"/api/v1/scheduling/{path}", json=body, headers=headers)
    assert answer.status_code == 201, answer.text
    found: str = answer.json()["id"]
    return found


async def test_a_booking_is_traced_by_its_request_id_from_the_gateway_to_each_consumer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    app = create_app(make_gateway_settings(tmp_path, log_level="INFO", log_json=True))
    async for client in running_client(app, "http://gateway"):
        token = (
            await client.post(
                "/api/v1/auth/dev-token", json={"sub": "admin", "role": "facility_admin", "facility_id": "trace-clinic"}
            )
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}

        ids = {
            "practitioner_id": await _created(
                client, headers, "practitioners", {"name": "Dr T", "npwz": "5425740", "profession": "doctor"}
            ),
            "location_id": await _created(
                client, headers, "locations", {"name": "Kardiologia", "cer_specialty": "cardiology"}
            ),
            "work_type_id": await _created(client, headers, "work-types", {"name": "Konsultacja"}),
        }
        await _created(
            client,
            headers,
            "schedules",
            {**ids, "date": "2030-05-06", "start_time": "08:00", "end_time": "08:30", "visit_minutes": 15},
        )
        slot = (await client.get("/api/v1/scheduling/slots", headers=headers)).json()[0]["id"]
        capsys.readouterr()  # from here on: the one traced request and what it causes

        booked = await client.post(
            "/api/v1/scheduling/bookings",
            json={"slot_id": slot, "patient_pesel": PESEL},
            headers={**headers, "X-Request-ID": REQUEST_ID},
        )
        assert booked.status_code == 201 and booked.headers["x-request-id"] == REQUEST_ID
        gateway = app.state.gateway
        await gateway.upstreams["scheduling"].app.state.ctx.relay.publish_pending()
        await gateway.bus.drain()
        output = capsys.readouterr().out

    traced = [line for line in _lines(output) if line.get("request_id") == REQUEST_ID]
    requests = {line.get("service") for line in traced if line.get("event") == "request"}
    assert {"gateway", "scheduling"} <= requests, traced
    consumers = {line["subscription"] for line in traced if line.get("event") == "event handled"}
    # The booking's event reached the CeR queue and the patient's messages under the desk's request id.
    assert {"integration-cer", "notifications"} <= consumers, consumers
    assert PESEL not in output
    assert all(line.get("level") for line in _lines(output))  # every line is structured JSON

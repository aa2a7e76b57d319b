"""The scheduling API as front-ends see it: through the gateway (embedded default)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.test_scheduling_api import API, Clinic, assert_problem
from tests.conftest import OTHER_PESEL, PESEL

Headers = dict[str, str]


@pytest.fixture
def clinic(gateway_client: httpx.AsyncClient, auth: Callable[..., Headers]) -> Clinic:
    return Clinic(gateway_client, auth)


async def open_day(clinic: Clinic, *, visible_online: bool = True) -> list[dict[str, Any]]:
    doctor, place = await clinic.practitioner(), await clinic.location()
    work = await clinic.work_type(visible_online=visible_online)
    return await clinic.scheduled(doctor, place, work)


async def test_a_dev_token_works_and_incomplete_claims_are_refused(clinic: Clinic) -> None:
    issued = await clinic.client.post(
        "/api/v1/auth/dev-token", json={"sub": "desk", "role": "registrar", "facility_id": "clinic-a"}
    )
    assert issued.status_code == 200
    token = {"Authorization": f"Bearer {issued.json()['access_token']}"}
    assert (await clinic.client.get(f"{API}/slots", headers=token)).status_code == 200

    refused = await clinic.client.post("/api/v1/auth/dev-token", json={"sub": "desk", "role": "registrar"})
    body = assert_problem(refused, 422, "body")
    assert "facility_id" in body["detail"]
    bad_pesel = await clinic.client.post(
        "/api/v1/auth/dev-token", json={"sub": "p", "role": "patient", "pesel": "44051401358"}
    )
    assert_problem(bad_pesel, 422, "body.pesel")


async def test_a_booking_through_the_gateway_keeps_problems_and_request_ids(clinic: Clinic) -> None:
    slots = await open_day(clinic)
    bad = await clinic.client.post(
        f"{API}/bookings",
        json={"slot_id": slots[0]["id"], "patient_pesel": "4405140135", "source": "desk"},
        headers={**clinic.desk, "X-Request-ID": "gw-bad-1"},
    )
    assert_problem(bad, 422, "body.patient_pesel")
    assert bad.headers["x-request-id"] == "gw-bad-1"

    good = await clinic.client.post(
        f"{API}/bookings",
        json={"slot_id": slots[0]["id"], "patient_pesel": PESEL, "source": "desk"},
        headers={**clinic.desk, "X-Request-ID": "gw-good-1"},
    )
    assert good.status_code == 201
    assert good.headers["x-request-id"] == "gw-good-1"
    assert_problem(await clinic.book(slots[0]["id"], OTHER_PESEL), 409)


async def test_an_idempotent_retry_through_the_gateway_is_replayed(clinic: Clinic) -> None:
    slots = await open_day(clinic)
    body = {"slot_id": slots[0]["id"], "patient_pesel": PESEL, "source": "desk"}
    headers = {**clinic.desk, "Idempotency-Key": "gw-key-1"}
    first = await clinic.client.post(f"{API}/bookings", json=body, headers=headers)
    again = await clinic.client.post(f"{API}/bookings", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert len(await clinic.slots(status="booked")) == 1
    changed = await clinic.client.post(f"{API}/bookings", json={**body, "slot_id": slots[1]["id"]}, headers=headers)
    assert_problem(changed, 422)


async def test_the_gateway_refuses_bad_bodies_before_the_service(clinic: Clinic) -> None:
    malformed = await clinic.client.post(
        f"{API}/locations", content=b"{not json", headers={**clinic.admin, "content-type": "application/json"}
    )
    assert_problem(malformed, 400)
    huge = await clinic.client.post(
        f"{API}/locations",
        content=b'{"name": "' + b"x" * (1024 * 1024 + 1) + b'"}',
        headers={**clinic.admin, "content-type": "application/json"},
    )
    assert_problem(huge, 413)
    extra = await clinic.client.post(f"{API}/locations", json={"name": "X", "floor": 2}, headers=clinic.admin)
    assert_problem(extra, 422, "body.floor")


async def test_unknown_endpoints_and_methods_through_the_gateway(clinic: Clinic) -> None:
    assert_problem(await clinic.client.get(f"{API}/no-such-thing", headers=clinic.desk), 404)
    assert_problem(await clinic.client.delete(f"{API}/slots", headers=clinic.desk), 405)
    assert_problem(await clinic.client.get("/api/v1/no-such-service/x", headers=clinic.desk), 404)


async def test_a_patient_through_the_gateway_books_only_for_themself(clinic: Clinic) -> None:
    slots = await open_day(clinic)
    me = clinic.patient(PESEL)
    assert [s["id"] for s in await clinic.slots(headers=me)] == [s["id"] for s in slots]
    assert_problem(await clinic.book(slots[0]["id"], OTHER_PESEL, "portal", headers=me), 403)
    mine = await clinic.book(slots[0]["id"], PESEL, "portal", headers=me)
    assert mine.status_code == 201, mine.text
    assert [s["id"] for s in await clinic.slots(headers=me)] == [s["id"] for s in slots[1:]]
    cancelled = await clinic.client.post(f"{API}/bookings/{mine.json()['id']}/cancel", headers=me)
    assert cancelled.json()["status"] == "cancelled"


async def test_a_patient_through_the_gateway_sees_nothing_of_desk_only_work(clinic: Clinic) -> None:
    slots = await open_day(clinic, visible_online=False)
    me = clinic.patient(PESEL)
    assert await clinic.slots(headers=me) == []
    assert_problem(await clinic.book(slots[0]["id"], PESEL, "portal", headers=me), 422, "body.slot_id")

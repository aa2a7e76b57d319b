"""The scheduling client's wire: what each call carries, and that every failure ends as a typed error."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
import respx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from services.scheduling.client import (
    SchedulingBadAnswer,
    SchedulingClient,
    SchedulingClientError,
    SchedulingRefused,
    SchedulingUnavailable,
)
from services.scheduling.schemas import BookingSource
from shared.logging import bind_request_id
from shared.settings import Settings

BASE = "http://scheduling.test"
API = f"{BASE}/api/v1/scheduling"
FACILITY = "clinic-a"
PESEL = "44051401359"
SLOT = uuid.UUID("12345678-1234-5678-1234-567812345678")
PRACTITIONER = uuid.UUID("87654321-4321-8765-4321-876543218765")
BOOKING = {
    "id": "11111111-2222-3333-4444-555555555555",
    "slot_id": str(SLOT),
    "status": "booked",
    "source": "prescription_request",
    "patient_pesel": PESEL,
    "start": "2030-03-04T07:00:00Z",
}


def problem(status: int, code: str, detail: str) -> httpx.Response:
    body = {"type": f"https://ehealth.example/problems/{code}", "title": "x", "status": status, "detail": detail}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[SchedulingClient]:
    async with SchedulingClient(BASE, settings, timeout=0.5, caller="prescriptions") as scheduling:
        yield scheduling


def claims_of(request: httpx.Request, settings: Settings) -> dict[str, Any]:
    scheme, _, token = request.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    decoded: dict[str, Any] = jwt.decode(
        token,
        settings.jwt_secret.get_secret_value(),
        algorithms=[settings.jwt_algorithm],
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
    )
    return decoded


# ----------------------------------------------------------------------------- what a call carries


@respx.mock
async def test_each_call_carries_a_short_lived_registrar_token_of_the_calling_service_and_facility(
    client: SchedulingClient, settings: Settings
) -> None:
    route = respx.get(f"{API}/practitioners").mock(return_value=httpx.Response(200, json=[]))
    assert await client.practitioners(FACILITY) == []
    await client.practitioners("clinic-b")
    first, second = (claims_of(call.request, settings) for call in route.calls)
    assert (first["role"], first["sub"], first["facility_id"]) == ("registrar", "service:prescriptions", FACILITY)
    assert second["facility_id"] == "clinic-b"
    assert first["jti"] != second["jti"]  # minted per call, not reused
    assert 0 < first["exp"] - first["iat"] <= 300


@respx.mock
async def test_book_sends_the_idempotency_key_and_the_prescription_request_source(
    client: SchedulingClient, settings: Settings
) -> None:
    route = respx.post(f"{API}/bookings").mock(return_value=httpx.Response(201, json=BOOKING))
    booking = await client.book(FACILITY, SLOT, PESEL, idempotency_key="prescription-request:r1:s1")
    assert booking is not None
    assert booking.source == BookingSource.prescription_request
    request = route.calls.last.request
    assert request.headers["idempotency-key"] == "prescription-request:r1:s1"
    assert json.loads(request.content) == {
        "slot_id": str(SLOT),
        "patient_pesel": PESEL,
        "source": "prescription_request",
    }
    assert claims_of(request, settings)["facility_id"] == FACILITY


@respx.mock
async def test_the_request_id_is_passed_through_when_one_is_bound(client: SchedulingClient) -> None:
    route = respx.get(f"{API}/work-types").mock(return_value=httpx.Response(200, json=[]))
    with bind_request_id("req-42"):
        await client.work_types(FACILITY)
    await client.work_types(FACILITY)
    with_id, without = route.calls
    assert with_id.request.headers["x-request-id"] == "req-42"
    assert "x-request-id" not in without.request.headers


@respx.mock
async def test_free_prescription_slots_ask_for_free_prescription_work_after_the_instant(
    client: SchedulingClient,
) -> None:
    route = respx.get(f"{API}/slots").mock(return_value=httpx.Response(200, json=[]))
    after = dt.datetime(2030, 3, 4, 8, 0, tzinfo=dt.UTC)
    await client.free_prescription_slots(FACILITY, PRACTITIONER, start_after=after, limit=50)
    params = dict(route.calls.last.request.url.params)
    assert params == {
        "practitioner_id": str(PRACTITIONER),
        "status": "free",
        "prescription_only": "true",
        "start_after": "2030-03-04T08:00:00+00:00",
        "limit": "50",
    }
    with pytest.raises(ValueError, match="aware"):
        await client.free_prescription_slots(FACILITY, PRACTITIONER, start_after=dt.datetime(2030, 3, 4, 8, 0))


@respx.mock
async def test_an_npwz_is_looked_up_by_query_and_a_hopeless_one_is_not_asked_at_all(client: SchedulingClient) -> None:
    route = respx.get(f"{API}/practitioners").mock(return_value=httpx.Response(200, json=[]))
    assert await client.practitioner_by_npwz(FACILITY, " 5425740 ") is None
    assert route.calls.last.request.url.params["npwz"] == "5425740"
    assert await client.practitioner_by_npwz(FACILITY, "123456789") is None
    assert route.call_count == 1


# ----------------------------------------------------------------------------- answers that are not errors


@respx.mock
async def test_a_missing_location_is_none(client: SchedulingClient) -> None:
    respx.get(f"{API}/locations/{SLOT}").mock(return_value=problem(404, "not-found", f"location {SLOT} not found"))
    assert await client.location(FACILITY, SLOT) is None


@respx.mock
async def test_a_slot_taken_or_unavailable_is_none_from_book(client: SchedulingClient) -> None:
    respx.post(f"{API}/bookings").mock(
        side_effect=[
            problem(409, "slot-taken", "the slot is already booked"),
            problem(409, "slot-unavailable", "the slot is not available (the practitioner is absent)"),
        ]
    )
    assert await client.book(FACILITY, SLOT, PESEL, idempotency_key="k1") is None
    assert await client.book(FACILITY, SLOT, PESEL, idempotency_key="k2") is None


# ----------------------------------------------------------------------------- failures


@respx.mock
async def test_a_timeout_is_unavailable(client: SchedulingClient) -> None:
    respx.get(f"{API}/practitioners").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(SchedulingUnavailable, match="in time"):
        await client.practitioners(FACILITY)


@respx.mock
async def test_a_refused_connection_is_unavailable(client: SchedulingClient) -> None:
    respx.get(f"{API}/locations").mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(SchedulingUnavailable, match="unreachable"):
        await client.locations(FACILITY)


@respx.mock
@pytest.mark.parametrize("status", [500, 502, 503])
async def test_a_server_error_is_unavailable(client: SchedulingClient, status: int) -> None:
    respx.post(f"{API}/bookings").mock(return_value=problem(status, "x", "down"))
    with pytest.raises(SchedulingUnavailable) as failed:
        await client.book(FACILITY, SLOT, PESEL, idempotency_key="k")
    assert failed.value.status == status


@respx.mock
async def test_an_earlier_attempt_still_running_is_unavailable_not_a_taken_slot(client: SchedulingClient) -> None:
    respx.post(f"{API}/bookings").mock(
        return_value=problem(409, "idempotency-in-progress", "a request with this Idempotency-Key is still running")
    )
    with pytest.raises(SchedulingUnavailable) as failed:
        await client.book(FACILITY, SLOT, PESEL, idempotency_key="k")
    assert failed.value.code == "idempotency-in-progress"


@respx.mock
async def test_a_422_problem_is_refused_with_its_detail(client: SchedulingClient) -> None:
    respx.post(f"{API}/bookings").mock(
        return_value=problem(422, "validation-failed", f"slot {SLOT} not found"),
    )
    with pytest.raises(SchedulingRefused) as refused:
        await client.book(FACILITY, SLOT, PESEL, idempotency_key="k")
    assert (refused.value.message, refused.value.status, refused.value.code) == (
        f"slot {SLOT} not found",
        422,
        "validation-failed",
    )
    assert str(refused.value) == f"slot {SLOT} not found"


@respx.mock
async def test_a_404_where_none_is_not_an_answer_is_refused(client: SchedulingClient) -> None:
    booking = uuid.UUID(BOOKING["id"])
    respx.post(f"{API}/bookings/{booking}/cancel").mock(
        return_value=problem(404, "not-found", f"booking {booking} not found")
    )
    with pytest.raises(SchedulingRefused, match="not found"):
        await client.cancel_booking(FACILITY, booking)


@respx.mock
async def test_a_refusal_without_a_problem_body_still_says_what_was_refused(client: SchedulingClient) -> None:
    respx.get(f"{API}/work-types").mock(return_value=httpx.Response(403, text="nope"))
    with pytest.raises(SchedulingRefused, match="refused GET /api/v1/scheduling/work-types"):
        await client.work_types(FACILITY)


@respx.mock
async def test_a_200_that_is_not_json_is_a_bad_answer(client: SchedulingClient) -> None:
    respx.get(f"{API}/practitioners").mock(return_value=httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(SchedulingBadAnswer):
        await client.practitioners(FACILITY)


@respx.mock
async def test_a_200_of_the_wrong_shape_is_a_bad_answer(client: SchedulingClient) -> None:
    respx.get(f"{API}/slots").mock(return_value=httpx.Response(200, json=[{"id": "not-a-uuid"}]))
    with pytest.raises(SchedulingBadAnswer, match="not valid"):
        await client.slots(FACILITY)


@respx.mock
async def test_an_unexpected_status_is_a_bad_answer(client: SchedulingClient) -> None:
    respx.post(f"{API}/bookings/{SLOT}/cancel").mock(return_value=httpx.Response(304))
    with pytest.raises(SchedulingBadAnswer, match="304"):
        await client.cancel_booking(FACILITY, SLOT)


async def test_an_in_process_app_that_crashes_is_unavailable(settings: Settings) -> None:
    async def crash(request: Request) -> Response:
        raise RuntimeError("boom")

    app = Starlette(routes=[Route("/api/v1/scheduling/locations", crash)])
    async with SchedulingClient(
        "http://scheduling.embedded", settings, transport=httpx.ASGITransport(app=app), caller="integration"
    ) as scheduling:
        with pytest.raises(SchedulingUnavailable, match="RuntimeError"):
            await scheduling.locations(FACILITY)


def test_every_kind_of_failure_is_a_scheduling_client_error() -> None:
    for kind in (SchedulingUnavailable, SchedulingRefused, SchedulingBadAnswer):
        assert issubclass(kind, SchedulingClientError)

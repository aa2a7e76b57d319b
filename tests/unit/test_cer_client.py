"""The CeR adapter's client: what each call sends, and that every kind of failure ends as a typed error."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
import respx

from services.integration.cer import (
    CerBadAnswer,
    CerBooking,
    CerClient,
    CerError,
    CerNotFound,
    CerRefused,
    CerUnavailable,
    FacilityBooking,
    FacilityCancellation,
    NotificationSettings,
    PublishedSlot,
    Refusal,
    Schedule,
    SlotsWithdrawal,
)

BASE = "https://cer.example/sandbox/cer"
FACILITY = "clinic-a"
PESEL = "44051401359"
OTHER_PESEL = "02070803628"
SECRET = "a-facility-secret-of-enough-length"
SLOT = uuid.UUID("11111111-1111-4111-8111-111111111111")
OTHER_SLOT = uuid.UUID("22222222-2222-4222-8222-222222222222")
SCHEDULE_ID = uuid.UUID("33333333-3333-4333-8333-333333333333")
BOOKING_ID = uuid.UUID("44444444-4444-4444-8444-444444444444")
CER_BOOKING_ID = uuid.UUID("55555555-5555-4555-8555-555555555555")
NINE = dt.datetime(2026, 6, 3, 9, 0, tzinfo=dt.UTC)

SETTINGS = NotificationSettings(
    endpoint="https://clinic.example/cer/webhook", email="cer@clinic.example", secret=SECRET
)
SCHEDULE = Schedule(
    facility_id=FACILITY,
    schedule_id=SCHEDULE_ID,
    specialty="cardiology",
    slots=[
        PublishedSlot(slot_id=SLOT, start=NINE, end=NINE + dt.timedelta(minutes=20)),
        PublishedSlot(slot_id=OTHER_SLOT, start=NINE + dt.timedelta(minutes=20), end=NINE + dt.timedelta(minutes=40)),
    ],
)
BOOKING = FacilityBooking(facility_id=FACILITY, booking_id=BOOKING_ID, slot_id=SLOT, patient_pesel=PESEL)
REFUSAL = Refusal(
    facility_id=FACILITY,
    slot_id=SLOT,
    patient_pesel=PESEL,
    cer_event_id="cer-1",
    reason="the desk booked the slot first",
    held_by_booking_id=BOOKING_ID,
    held_by_pesel=OTHER_PESEL,
)


def a_booking(**changes: Any) -> dict[str, Any]:
    return {
        "cer_booking_id": str(CER_BOOKING_ID),
        "facility_id": FACILITY,
        "slot_id": str(SLOT),
        "patient_pesel": PESEL,
        "channel": "facility",
        "status": "active",
        "booked_at": "2026-05-20T10:00:00Z",
        "start": "2026-06-03T09:00:00Z",
        "local_booking_id": str(BOOKING_ID),
        **changes,
    }


def a_slot(slot_id: uuid.UUID) -> dict[str, Any]:
    return {"slot_id": str(slot_id), "schedule_id": str(SCHEDULE_ID), "withdrawn": False, "booked": False}


@pytest.fixture
async def client() -> AsyncIterator[CerClient]:
    async with CerClient(BASE, timeout=0.5) as cer:
        yield cer


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


# ----------------------------------------------------------------------------- what each method sends


@respx.mock
async def test_register_endpoint_puts_the_settings_under_the_facility(client: CerClient) -> None:
    route = respx.put(f"{BASE}/facilities/{FACILITY}/notifications").mock(
        return_value=httpx.Response(200, json={"up": True})
    )
    await client.register_endpoint(FACILITY, SETTINGS)
    assert route.call_count == 1
    assert sent_json(route) == {
        "endpoint": "https://clinic.example/cer/webhook",
        "email": "cer@clinic.example",
        "secret": SECRET,
    }
    assert route.calls.last.request.headers["content-type"] == "application/json"


@respx.mock
async def test_publish_schedule_posts_its_slots_with_the_schedule_id_as_idempotency_key(client: CerClient) -> None:
    route = respx.post(f"{BASE}/schedules").mock(
        return_value=httpx.Response(200, json=[a_slot(SLOT), a_slot(OTHER_SLOT)])
    )
    await client.publish_schedule(SCHEDULE)
    assert sent_json(route) == {
        "facility_id": FACILITY,
        "schedule_id": str(SCHEDULE_ID),
        "specialty": "cardiology",
        "slots": [
            {"slot_id": str(SLOT), "start": "2026-06-03T09:00:00Z", "end": "2026-06-03T09:20:00Z"},
            {"slot_id": str(OTHER_SLOT), "start": "2026-06-03T09:20:00Z", "end": "2026-06-03T09:40:00Z"},
        ],
    }
    assert route.calls.last.request.headers["idempotency-key"] == str(SCHEDULE_ID)


@respx.mock
async def test_a_schedule_without_a_specialty_is_sent_with_a_null_one(client: CerClient) -> None:
    route = respx.post(f"{BASE}/schedules").mock(return_value=httpx.Response(200, json=[]))
    await client.publish_schedule(SCHEDULE.model_copy(update={"specialty": None, "slots": []}))
    assert sent_json(route)["specialty"] is None
    assert sent_json(route)["slots"] == []


@respx.mock
async def test_withdraw_slots_posts_the_slot_ids(client: CerClient) -> None:
    route = respx.post(f"{BASE}/slots/withdraw").mock(return_value=httpx.Response(200, json={"up": True}))
    await client.withdraw_slots(SlotsWithdrawal(facility_id=FACILITY, slot_ids=[SLOT, OTHER_SLOT]))
    assert sent_json(route) == {"facility_id": FACILITY, "slot_ids": [str(SLOT), str(OTHER_SLOT)]}


@respx.mock
@pytest.mark.parametrize("status", [200, 201])
async def test_report_booking_posts_it_with_the_booking_id_as_idempotency_key(client: CerClient, status: int) -> None:
    # 201 is a new booking, 200 the one CeR already had: both mean CeR holds it.
    route = respx.post(f"{BASE}/bookings").mock(return_value=httpx.Response(status, json=a_booking()))
    booking = await client.report_booking(BOOKING)
    assert isinstance(booking, CerBooking)
    assert (booking.cer_booking_id, booking.local_booking_id, booking.status) == (CER_BOOKING_ID, BOOKING_ID, "active")
    assert booking.start == NINE
    assert sent_json(route) == {
        "facility_id": FACILITY,
        "booking_id": str(BOOKING_ID),
        "slot_id": str(SLOT),
        "patient_pesel": PESEL,
    }
    assert route.calls.last.request.headers["idempotency-key"] == str(BOOKING_ID)


@respx.mock
async def test_a_booking_answer_may_carry_fields_a_newer_cer_added(client: CerClient) -> None:
    respx.post(f"{BASE}/bookings").mock(
        return_value=httpx.Response(201, json=a_booking(local_booking_id=None, queue_position=3))
    )
    assert (await client.report_booking(BOOKING)).local_booking_id is None


@respx.mock
async def test_report_cancellation_posts_to_the_bookings_cancel_path(client: CerClient) -> None:
    route = respx.post(f"{BASE}/bookings/{BOOKING_ID}/cancel").mock(return_value=httpx.Response(200, json={"up": True}))
    await client.report_cancellation(
        BOOKING_ID, FacilityCancellation(facility_id=FACILITY, slot_id=SLOT, patient_pesel=PESEL)
    )
    assert sent_json(route) == {"facility_id": FACILITY, "slot_id": str(SLOT), "patient_pesel": PESEL}


@respx.mock
async def test_a_cancellation_by_booking_id_alone_sends_no_slot_or_patient(client: CerClient) -> None:
    route = respx.post(f"{BASE}/bookings/{BOOKING_ID}/cancel").mock(return_value=httpx.Response(200, json={"up": True}))
    await client.report_cancellation(BOOKING_ID, FacilityCancellation(facility_id=FACILITY))
    assert sent_json(route) == {"facility_id": FACILITY, "slot_id": None, "patient_pesel": None}


@respx.mock
async def test_refuse_booking_posts_the_refusal_and_who_holds_the_slot(client: CerClient) -> None:
    route = respx.post(f"{BASE}/bookings/refuse").mock(return_value=httpx.Response(200, json={"up": True}))
    await client.refuse_booking(REFUSAL)
    assert sent_json(route) == {
        "facility_id": FACILITY,
        "slot_id": str(SLOT),
        "patient_pesel": PESEL,
        "cer_event_id": "cer-1",
        "reason": "the desk booked the slot first",
        "held_by_booking_id": str(BOOKING_ID),
        "held_by_pesel": OTHER_PESEL,
    }


@respx.mock
async def test_bookings_asks_for_the_active_ones_of_the_facility(client: CerClient) -> None:
    other = a_booking(cer_booking_id=str(uuid.uuid4()), slot_id=str(OTHER_SLOT), channel="ikp", local_booking_id=None)
    route = respx.get(f"{BASE}/facilities/{FACILITY}/bookings").mock(
        return_value=httpx.Response(200, json=[a_booking(), other])
    )
    found = await client.bookings(FACILITY)
    assert [(b.slot_id, b.channel) for b in found] == [(SLOT, "facility"), (OTHER_SLOT, "ikp")]
    request = route.calls.last.request
    assert request.method == "GET"
    assert dict(request.url.params) == {"status": "active"}


@respx.mock
async def test_no_bookings_is_an_empty_list(client: CerClient) -> None:
    respx.get(f"{BASE}/facilities/{FACILITY}/bookings").mock(return_value=httpx.Response(200, json=[]))
    assert await client.bookings(FACILITY) == []


@respx.mock
async def test_a_facility_id_with_a_slash_stays_one_path_segment(client: CerClient) -> None:
    notifications = respx.put(f"{BASE}/facilities/clinic%2Fa/notifications").mock(
        return_value=httpx.Response(200, json={"up": True})
    )
    bookings = respx.get(f"{BASE}/facilities/..%2Fadmin/bookings").mock(return_value=httpx.Response(200, json=[]))
    await client.register_endpoint("clinic/a", SETTINGS)
    assert await client.bookings("../admin") == []
    assert notifications.called and bookings.called
    assert bookings.calls.last.request.url.raw_path.startswith(b"/sandbox/cer/facilities/..%2Fadmin/bookings")


@respx.mock
async def test_bookings_of_another_facility_are_a_bad_answer(client: CerClient) -> None:
    # Reconciliation would otherwise "repair" another facility's patients into this schedule.
    respx.get(f"{BASE}/facilities/{FACILITY}/bookings").mock(
        return_value=httpx.Response(200, json=[a_booking(), a_booking(facility_id="clinic-b")])
    )
    with pytest.raises(CerBadAnswer, match="another facility"):
        await client.bookings(FACILITY)


def test_the_secret_and_the_pesels_stay_out_of_reprs() -> None:
    # Reprs end up in logs and error reports; there the secret would let anyone forge CeR's webhooks.
    assert SECRET not in repr(SETTINGS)
    for value in (BOOKING, REFUSAL, FacilityCancellation(facility_id=FACILITY, slot_id=SLOT, patient_pesel=PESEL)):
        assert PESEL not in repr(value) and OTHER_PESEL not in repr(value), repr(value)
    assert PESEL not in repr(CerBooking.model_validate(a_booking()))


# ----------------------------------------------------------------------------- failures

Call = Callable[[CerClient], Awaitable[object]]
CALLS: dict[str, tuple[str, str, Call]] = {
    "register_endpoint": (
        "PUT",
        f"/facilities/{FACILITY}/notifications",
        lambda c: c.register_endpoint(FACILITY, SETTINGS),
    ),
    "publish_schedule": ("POST", "/schedules", lambda c: c.publish_schedule(SCHEDULE)),
    "withdraw_slots": (
        "POST",
        "/slots/withdraw",
        lambda c: c.withdraw_slots(SlotsWithdrawal(facility_id=FACILITY, slot_ids=[SLOT])),
    ),
    "report_booking": ("POST", "/bookings", lambda c: c.report_booking(BOOKING)),
    "report_cancellation": (
        "POST",
        f"/bookings/{BOOKING_ID}/cancel",
        lambda c: c.report_cancellation(BOOKING_ID, FacilityCancellation(facility_id=FACILITY)),
    ),
    "refuse_booking": ("POST", "/bookings/refuse", lambda c: c.refuse_booking(REFUSAL)),
    "bookings": ("GET", f"/facilities/{FACILITY}/bookings", lambda c: c.bookings(FACILITY)),
}


@respx.mock
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slow"), httpx.ConnectError("refused")],
    ids=["connect-timeout", "read-timeout", "connect-error"],
)
async def test_timeouts_and_unreachable_servers_are_unavailable(
    client: CerClient, call: tuple[str, str, Call], failure: Exception
) -> None:
    method, path, invoke = call
    respx.route(method=method, url=f"{BASE}{path}").mock(side_effect=failure)
    with pytest.raises(CerUnavailable):
        await invoke(client)


async def test_a_real_timeout_is_unavailable_and_says_so() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    async with CerClient(BASE, timeout=0.01, transport=httpx.MockTransport(slow)) as client:
        with pytest.raises(CerUnavailable, match="in time"):
            await client.report_booking(BOOKING)


async def test_an_in_process_app_that_crashes_is_unavailable() -> None:
    async def crash(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("the app's own bug")

    async with CerClient(BASE, transport=httpx.MockTransport(crash)) as client:
        with pytest.raises(CerUnavailable, match="RuntimeError"):
            await client.bookings(FACILITY)


@respx.mock
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_unavailable_with_the_status(
    client: CerClient, call: tuple[str, str, Call], status: int
) -> None:
    method, path, invoke = call
    respx.route(method=method, url=f"{BASE}{path}").mock(
        return_value=httpx.Response(status, json={"status": status, "detail": "CeR is unavailable"})
    )
    with pytest.raises(CerUnavailable) as caught:
        await invoke(client)
    assert caught.value.status == status


@respx.mock
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize("status", [400, 409, 422])
async def test_a_refusal_carries_cers_reason_status_and_code(
    client: CerClient, call: tuple[str, str, Call], status: int
) -> None:
    method, path, invoke = call
    respx.route(method=method, url=f"{BASE}{path}").mock(
        return_value=httpx.Response(
            status,
            json={
                "type": "https://ehealth.example/problems/slot-taken-in-cer",
                "title": "Conflict",
                "status": status,
                "detail": "CeR has given this slot to another patient",
            },
            headers={"content-type": "application/problem+json"},
        )
    )
    with pytest.raises(CerRefused) as caught:
        await invoke(client)
    assert not isinstance(caught.value, CerNotFound)
    assert (caught.value.status, caught.value.code) == (status, "slot-taken-in-cer")
    assert caught.value.message == "CeR has given this slot to another patient"


@respx.mock
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
async def test_404_is_not_found_which_is_a_refusal(client: CerClient, call: tuple[str, str, Call]) -> None:
    method, path, invoke = call
    respx.route(method=method, url=f"{BASE}{path}").mock(
        return_value=httpx.Response(404, json={"status": 404, "detail": "CeR knows no published slot"})
    )
    with pytest.raises(CerNotFound) as caught:
        await invoke(client)
    assert isinstance(caught.value, CerRefused)
    assert (caught.value.status, caught.value.message) == (404, "CeR knows no published slot")


@respx.mock
async def test_a_refusal_without_a_readable_reason_still_says_what_was_refused(client: CerClient) -> None:
    respx.post(f"{BASE}/bookings").mock(return_value=httpx.Response(409, text="<html>conflict</html>"))
    with pytest.raises(CerRefused, match="CeR refused POST /sandbox/cer/bookings") as caught:
        await client.report_booking(BOOKING)
    assert caught.value.status == 409


@respx.mock
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html><body>maintenance</body></html>"),
        httpx.Response(200, text=""),
        httpx.Response(200, json="a string"),
        httpx.Response(204),
        httpx.Response(302, headers={"location": "https://login.example"}),
    ],
    ids=["html", "empty", "a-string", "204", "redirect"],
)
async def test_non_json_answers_are_bad_answers(
    client: CerClient, call: tuple[str, str, Call], answer: httpx.Response
) -> None:
    method, path, invoke = call
    respx.route(method=method, url=f"{BASE}{path}").mock(return_value=answer)
    with pytest.raises(CerBadAnswer):
        await invoke(client)


@respx.mock
@pytest.mark.parametrize(
    "answer",
    [
        {k: v for k, v in a_booking().items() if k != "status"},
        a_booking(status="lost"),
        a_booking(slot_id="not-a-uuid"),
        a_booking(start="tomorrow"),
        [a_booking()],
    ],
    ids=["no-status", "unknown-status", "bad-slot", "bad-start", "a-list"],
)
async def test_a_booking_answer_of_the_wrong_shape_is_a_bad_answer(client: CerClient, answer: Any) -> None:
    respx.post(f"{BASE}/bookings").mock(return_value=httpx.Response(201, json=answer))
    with pytest.raises(CerBadAnswer, match="not valid"):
        await client.report_booking(BOOKING)


@respx.mock
@pytest.mark.parametrize(
    "answer",
    [{"slot_id": str(SLOT)}, [{"schedule_id": str(SCHEDULE_ID)}], [{"slot_id": "x"}]],
    ids=["an-object", "no-slot-id", "bad-slot-id"],
)
async def test_a_publish_answer_that_is_not_a_list_of_slots_is_a_bad_answer(client: CerClient, answer: Any) -> None:
    respx.post(f"{BASE}/schedules").mock(return_value=httpx.Response(200, json=answer))
    with pytest.raises(CerBadAnswer):
        await client.publish_schedule(SCHEDULE)


@respx.mock
async def test_publishing_answered_201_breaks_the_contract(client: CerClient) -> None:
    respx.post(f"{BASE}/schedules").mock(return_value=httpx.Response(201, json=[a_slot(SLOT)]))
    with pytest.raises(CerBadAnswer, match="unexpected 201"):
        await client.publish_schedule(SCHEDULE)


@respx.mock
@pytest.mark.parametrize(
    "answer",
    [{"bookings": []}, [a_booking(channel=None)], [{"cer_booking_id": str(CER_BOOKING_ID)}]],
    ids=["an-object", "null-channel", "half-a-booking"],
)
async def test_a_bookings_answer_of_the_wrong_shape_is_a_bad_answer(client: CerClient, answer: Any) -> None:
    respx.get(f"{BASE}/facilities/{FACILITY}/bookings").mock(return_value=httpx.Response(200, json=answer))
    with pytest.raises(CerBadAnswer):
        await client.bookings(FACILITY)


def test_every_failure_is_a_cer_error() -> None:
    assert all(issubclass(kind, CerError) for kind in (CerUnavailable, CerRefused, CerNotFound, CerBadAnswer))
    assert issubclass(CerNotFound, CerRefused)

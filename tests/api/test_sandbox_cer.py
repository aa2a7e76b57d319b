"""The sandbox's CeR simulator over HTTP: publishing, facility bookings, cancellations and refusals, the
outage, and patient play with its signed, retried notifications to the facility's endpoint."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.sandbox import cer as cer_module
from services.sandbox.app import create_app
from services.sandbox.settings import SandboxSettings
from tests.api.test_scheduling_api import assert_problem
from tests.conftest import FACILITY, OTHER_FACILITY, OTHER_PESEL, PESEL, make_settings, running_client

CER = "/sandbox/cer"
ENDPOINT = "https://clinic-a.example/cer/webhook"
SECRET = "a-facility-secret-of-enough-length"
NINE = dt.datetime(2026, 6, 3, 9, 0, tzinfo=dt.UTC)
EVENT_FIELDS = {"event_id", "event_type", "occurred_at", "slot_id", "patient_pesel"}
WAIT_SECONDS = 3.0


@dataclass
class Receiver:
    """The facility's notification endpoint: answers ``statuses`` in turn (then the last forever)."""

    statuses: list[int] = field(default_factory=lambda: [204])
    calls: list[httpx.Request] = field(default_factory=list)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        status = self.statuses[min(len(self.calls), len(self.statuses)) - 1]
        return httpx.Response(status)


@pytest.fixture
def receiver() -> Receiver:
    return Receiver()


@pytest.fixture
def app(tmp_path: Path, receiver: Receiver) -> FastAPI:
    # No SMTP catcher: these tests send no mail, and a bound port could clash with a parallel run.
    settings = SandboxSettings.from_settings(make_settings(tmp_path)).model_copy(update={"smtp_enabled": False})
    app = create_app(settings)
    app.state.cer.transport = httpx.MockTransport(receiver.handle)
    app.state.cer.retry_seconds = 0.01
    app.state.cer.max_attempts = 3
    return app


@pytest.fixture
async def sandbox(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_client(app, base_url="http://sandbox"):
        yield client


# ----------------------------------------------------------------------------- helpers


def a_schedule(
    *slot_ids: uuid.UUID, facility_id: str = FACILITY, schedule_id: uuid.UUID | None = None
) -> dict[str, Any]:
    return {
        "facility_id": facility_id,
        "schedule_id": str(schedule_id or uuid.uuid4()),
        "specialty": "cardiology",
        "slots": [
            {
                "slot_id": str(slot_id),
                "start": (NINE + dt.timedelta(minutes=20 * n)).isoformat(),
                "end": (NINE + dt.timedelta(minutes=20 * (n + 1))).isoformat(),
            }
            for n, slot_id in enumerate(slot_ids)
        ],
    }


async def published(sandbox: httpx.AsyncClient, count: int = 1, facility_id: str = FACILITY) -> list[uuid.UUID]:
    slot_ids = [uuid.uuid4() for _ in range(count)]
    answer = await sandbox.post(f"{CER}/schedules", json=a_schedule(*slot_ids, facility_id=facility_id))
    assert answer.status_code == 200, answer.text
    return slot_ids


async def registered(sandbox: httpx.AsyncClient, facility_id: str = FACILITY, endpoint: str = ENDPOINT) -> None:
    answer = await sandbox.put(
        f"{CER}/facilities/{facility_id}/notifications",
        json={"endpoint": endpoint, "email": "cer@clinic-a.example", "secret": SECRET},
    )
    assert answer.status_code == 200, answer.text


async def facility_books(
    sandbox: httpx.AsyncClient, slot_id: uuid.UUID, pesel: str = PESEL, booking_id: uuid.UUID | None = None
) -> httpx.Response:
    return await sandbox.post(
        f"{CER}/bookings",
        json={
            "facility_id": FACILITY,
            "booking_id": str(booking_id or uuid.uuid4()),
            "slot_id": str(slot_id),
            "patient_pesel": pesel,
        },
    )


async def patient_books(
    sandbox: httpx.AsyncClient, slot_id: uuid.UUID, pesel: str = PESEL, **changes: Any
) -> httpx.Response:
    body = {"facility_id": FACILITY, "slot_id": str(slot_id), "patient_pesel": pesel, **changes}
    return await sandbox.post(f"{CER}/patients/bookings", json=body)


async def bookings(sandbox: httpx.AsyncClient, status: str = "active") -> list[dict[str, Any]]:
    answer = await sandbox.get(f"{CER}/facilities/{FACILITY}/bookings", params={"status": status})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


async def slots(sandbox: httpx.AsyncClient, facility_id: str = FACILITY) -> dict[str, dict[str, Any]]:
    answer = await sandbox.get(f"{CER}/facilities/{facility_id}/slots")
    assert answer.status_code == 200, answer.text
    return {s["slot_id"]: s for s in answer.json()}


async def changes(sandbox: httpx.AsyncClient, facility_id: str = FACILITY) -> list[tuple[str, bool]]:
    answer = await sandbox.get(f"{CER}/facilities/{facility_id}/changes")
    assert answer.status_code == 200, answer.text
    return [(c["kind"], c["repeated"]) for c in answer.json()]


async def deliveries(sandbox: httpx.AsyncClient, **params: str) -> list[dict[str, Any]]:
    answer = await sandbox.get(f"{CER}/deliveries", params=params)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


async def settled(
    sandbox: httpx.AsyncClient, count: int = 1, done: Callable[[dict[str, Any]], bool] | None = None
) -> list[dict[str, Any]]:
    """The deliveries once ``count`` of them are no longer pending (or ``done``), polled, never slept on."""
    finished = done or (lambda d: d["status"] != "pending")
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        found = await deliveries(sandbox)
        if len(found) >= count and all(finished(d) for d in found):
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"the deliveries did not settle within {WAIT_SECONDS} s: {found}")
        await asyncio.sleep(0.01)


def assert_signed(request: httpx.Request) -> int:
    """The request is signed as API.md says, checked by hand; its timestamp."""
    timestamp = request.headers["x-cer-timestamp"]
    assert timestamp.isdigit(), timestamp
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request.content, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request.headers["x-cer-signature"], f"sha256={expected}")
    return int(timestamp)


# ----------------------------------------------------------------------------- publishing


async def test_a_published_schedule_is_listed_as_free_slots_in_time_order(sandbox: httpx.AsyncClient) -> None:
    first, second = uuid.uuid4(), uuid.uuid4()
    schedule_id = uuid.uuid4()
    answer = await sandbox.post(f"{CER}/schedules", json=a_schedule(second, first, schedule_id=schedule_id))
    assert answer.status_code == 200, answer.text
    assert [s["slot_id"] for s in answer.json()] == [str(second), str(first)]

    listed = (await sandbox.get(f"{CER}/facilities/{FACILITY}/slots")).json()
    assert [s["slot_id"] for s in listed] == [str(second), str(first)]  # second starts at 9:00
    assert listed[0] == {
        "slot_id": str(second),
        "schedule_id": str(schedule_id),
        "specialty": "cardiology",
        "start": "2026-06-03T09:00:00Z",
        "end": "2026-06-03T09:20:00Z",
        "withdrawn": False,
        "booked": False,
    }
    assert await slots(sandbox, OTHER_FACILITY) == {}


async def test_publishing_again_is_idempotent_and_logged_as_repeated(sandbox: httpx.AsyncClient) -> None:
    slot_id = uuid.uuid4()
    schedule = a_schedule(slot_id)
    for _ in range(2):
        answer = await sandbox.post(f"{CER}/schedules", json=schedule)
        assert answer.status_code == 200, answer.text
    assert list(await slots(sandbox)) == [str(slot_id)]
    assert await changes(sandbox) == [("publish_schedule", False), ("publish_schedule", True)]


async def test_a_schedule_with_one_new_slot_is_not_a_repeat(sandbox: httpx.AsyncClient) -> None:
    known = await published(sandbox)
    await sandbox.post(f"{CER}/schedules", json=a_schedule(*known, uuid.uuid4()))
    assert await changes(sandbox) == [("publish_schedule", False), ("publish_schedule", False)]
    assert len(await slots(sandbox)) == 2


async def test_publishing_again_does_not_offer_a_withdrawn_slot_again(sandbox: httpx.AsyncClient) -> None:
    slot_id = uuid.uuid4()
    schedule = a_schedule(slot_id)
    await sandbox.post(f"{CER}/schedules", json=schedule)
    await sandbox.post(f"{CER}/slots/withdraw", json={"facility_id": FACILITY, "slot_ids": [str(slot_id)]})
    await sandbox.post(f"{CER}/schedules", json=schedule)
    assert (await slots(sandbox))[str(slot_id)]["withdrawn"] is True


async def test_a_slot_published_by_another_facility_is_a_conflict_and_nothing_is_published(
    sandbox: httpx.AsyncClient,
) -> None:
    theirs = (await published(sandbox, facility_id=OTHER_FACILITY))[0]
    fresh = uuid.uuid4()
    body = assert_problem(await sandbox.post(f"{CER}/schedules", json=a_schedule(fresh, theirs)), 409)
    assert body["type"].endswith("/slot-of-another-facility")
    assert await slots(sandbox) == {}
    assert list(await slots(sandbox, OTHER_FACILITY)) == [str(theirs)]


async def test_withdrawn_slots_stay_listed_as_withdrawn(sandbox: httpx.AsyncClient) -> None:
    kept, withdrawn = await published(sandbox, 2)
    answer = await sandbox.post(f"{CER}/slots/withdraw", json={"facility_id": FACILITY, "slot_ids": [str(withdrawn)]})
    assert answer.status_code == 200, answer.text
    listed = await slots(sandbox)
    assert (listed[str(kept)]["withdrawn"], listed[str(withdrawn)]["withdrawn"]) == (False, True)
    assert (await changes(sandbox))[-1] == ("withdraw_slots", False)


@pytest.mark.parametrize("owner", [FACILITY, OTHER_FACILITY])
async def test_withdrawing_a_slot_the_facility_has_not_published_is_404(sandbox: httpx.AsyncClient, owner: str) -> None:
    slot_id = uuid.uuid4() if owner == FACILITY else (await published(sandbox, facility_id=OTHER_FACILITY))[0]
    answer = await sandbox.post(f"{CER}/slots/withdraw", json={"facility_id": FACILITY, "slot_ids": [str(slot_id)]})
    assert_problem(answer, 404)
    assert all(not s["withdrawn"] for s in (await slots(sandbox, OTHER_FACILITY)).values())


async def test_a_withdrawal_naming_an_unknown_slot_withdraws_nothing(sandbox: httpx.AsyncClient) -> None:
    # All or nothing, as publishing is: after a 404 the facility must not guess what CeR applied.
    (mine,) = await published(sandbox)
    withdrawal = {"facility_id": FACILITY, "slot_ids": [str(mine), str(uuid.uuid4())]}
    assert_problem(await sandbox.post(f"{CER}/slots/withdraw", json=withdrawal), 404)
    assert (await slots(sandbox))[str(mine)]["withdrawn"] is False


# ----------------------------------------------------------------------------- facility bookings


async def test_a_facility_booking_is_held_in_cer(sandbox: httpx.AsyncClient) -> None:
    (slot_id,) = await published(sandbox)
    booking_id = uuid.uuid4()
    answer = await facility_books(sandbox, slot_id, booking_id=booking_id)
    assert answer.status_code == 201, answer.text
    booking = answer.json()
    assert (booking["slot_id"], booking["patient_pesel"], booking["local_booking_id"]) == (
        str(slot_id),
        PESEL,
        str(booking_id),
    )
    assert (booking["channel"], booking["status"], booking["start"]) == ("facility", "active", "2026-06-03T09:00:00Z")
    assert await bookings(sandbox) == [booking]
    assert (await slots(sandbox))[str(slot_id)]["booked"] is True


async def test_the_same_booking_again_is_the_same_booking_not_a_second_one(sandbox: httpx.AsyncClient) -> None:
    (slot_id,) = await published(sandbox)
    booking_id = uuid.uuid4()
    first = await facility_books(sandbox, slot_id, booking_id=booking_id)
    again = await facility_books(sandbox, slot_id, booking_id=booking_id)
    assert again.status_code == 200, again.text  # known: nothing new in CeR
    assert again.json()["cer_booking_id"] == first.json()["cer_booking_id"]
    assert len(await bookings(sandbox)) == 1
    assert await changes(sandbox) == [("publish_schedule", False), ("book", False), ("book", True)]


async def test_the_desk_booking_the_patient_cer_already_booked_links_the_two(sandbox: httpx.AsyncClient) -> None:
    (slot_id,) = await published(sandbox)
    from_cer = (await patient_books(sandbox, slot_id, notify=False)).json()
    local_id = uuid.uuid4()
    answer = await facility_books(sandbox, slot_id, booking_id=local_id)
    assert answer.json()["cer_booking_id"] == from_cer["cer_booking_id"]
    assert [(b["channel"], b["local_booking_id"]) for b in await bookings(sandbox)] == [("ikp", str(local_id))]


async def test_another_patient_on_a_held_slot_is_refused_as_taken_in_cer(sandbox: httpx.AsyncClient) -> None:
    (slot_id,) = await published(sandbox)
    await facility_books(sandbox, slot_id)
    body = assert_problem(await facility_books(sandbox, slot_id, pesel=OTHER_PESEL), 409)
    assert body["type"].endswith("/slot-taken-in-cer")
    assert [b["patient_pesel"] for b in await bookings(sandbox)] == [PESEL]


@pytest.mark.parametrize("owner", [None, OTHER_FACILITY])
async def test_booking_a_slot_the_facility_has_not_published_is_404(
    sandbox: httpx.AsyncClient, owner: str | None
) -> None:
    slot_id = uuid.uuid4() if owner is None else (await published(sandbox, facility_id=owner))[0]
    assert_problem(await facility_books(sandbox, slot_id), 404)


async def test_a_cancellation_by_the_local_booking_id_frees_the_slot(sandbox: httpx.AsyncClient) -> None:
    (slot_id,) = await published(sandbox)
    booking_id = uuid.uuid4()
    await facility_books(sandbox, slot_id, booking_id=booking_id)
    answer = await sandbox.post(f"{CER}/bookings/{booking_id}/cancel", json={"facility_id": FACILITY})
    assert answer.status_code == 200, answer.text
    assert await bookings(sandbox) == []
    assert [b["local_booking_id"] for b in await bookings(sandbox, "cancelled")] == [str(booking_id)]
    assert (await slots(sandbox))[str(slot_id)]["booked"] is False
    assert (await facility_books(sandbox, slot_id, pesel=OTHER_PESEL)).status_code == 201


async def test_a_cer_booking_is_cancelled_by_slot_and_patient(sandbox: httpx.AsyncClient) -> None:
    # A booking made in CeR has no local id: the facility names it by what it does know.
    (slot_id,) = await published(sandbox)
    await patient_books(sandbox, slot_id, notify=False)
    answer = await sandbox.post(
        f"{CER}/bookings/{uuid.uuid4()}/cancel",
        json={"facility_id": FACILITY, "slot_id": str(slot_id), "patient_pesel": PESEL},
    )
    assert answer.status_code == 200, answer.text
    assert await bookings(sandbox) == []
    assert [b["channel"] for b in await bookings(sandbox, "cancelled")] == ["ikp"]


async def test_cancelling_again_is_logged_as_repeated_and_another_patient_is_not_cancelled(
    sandbox: httpx.AsyncClient,
) -> None:
    (slot_id,) = await published(sandbox)
    booking_id = uuid.uuid4()
    await facility_books(sandbox, slot_id, booking_id=booking_id)
    wrong_patient = {"facility_id": FACILITY, "slot_id": str(slot_id), "patient_pesel": OTHER_PESEL}
    answer = await sandbox.post(f"{CER}/bookings/{uuid.uuid4()}/cancel", json=wrong_patient)
    assert answer.status_code == 200, answer.text
    assert len(await bookings(sandbox)) == 1

    for _ in range(2):
        answer = await sandbox.post(f"{CER}/bookings/{booking_id}/cancel", json={"facility_id": FACILITY})
        assert answer.status_code == 200, answer.text
    assert (await changes(sandbox))[-2:] == [("cancel", False), ("cancel", True)]
    assert len(await bookings(sandbox, "cancelled")) == 1


async def test_a_facility_cannot_cancel_another_facilitys_booking(sandbox: httpx.AsyncClient) -> None:
    (slot_id,) = await published(sandbox)
    booking_id = uuid.uuid4()
    await facility_books(sandbox, slot_id, booking_id=booking_id)
    await sandbox.post(f"{CER}/bookings/{booking_id}/cancel", json={"facility_id": OTHER_FACILITY})
    assert [b["local_booking_id"] for b in await bookings(sandbox)] == [str(booking_id)]


async def test_a_refused_cer_booking_gives_the_slot_to_the_desks_patient(sandbox: httpx.AsyncClient) -> None:
    (slot_id,) = await published(sandbox)
    from_cer = (await patient_books(sandbox, slot_id, notify=False)).json()
    held_by = uuid.uuid4()
    refusal = {
        "facility_id": FACILITY,
        "slot_id": str(slot_id),
        "patient_pesel": PESEL,
        "cer_event_id": "cer-event-1",
        "reason": "the desk booked the slot first",
        "held_by_booking_id": str(held_by),
        "held_by_pesel": OTHER_PESEL,
    }
    answer = await sandbox.post(f"{CER}/bookings/refuse", json=refusal)
    assert answer.status_code == 200, answer.text

    refused = await bookings(sandbox, "refused")
    assert [(b["cer_booking_id"], b["patient_pesel"]) for b in refused] == [(from_cer["cer_booking_id"], PESEL)]
    active = await bookings(sandbox)
    assert [(b["patient_pesel"], b["local_booking_id"], b["channel"]) for b in active] == [
        (OTHER_PESEL, str(held_by), "facility")
    ]

    # The desk's retry of the same refusal must not hand out the slot twice.
    assert (await sandbox.post(f"{CER}/bookings/refuse", json=refusal)).status_code == 200
    assert len(await bookings(sandbox)) == 1
    assert (await changes(sandbox))[-2:] == [("refuse", False), ("refuse", True)]


async def test_a_refusal_without_a_holder_frees_the_slot(sandbox: httpx.AsyncClient) -> None:
    (slot_id,) = await published(sandbox)
    await patient_books(sandbox, slot_id, notify=False)
    refusal = {
        "facility_id": FACILITY,
        "slot_id": str(slot_id),
        "patient_pesel": PESEL,
        "cer_event_id": "cer-event-1",
        "reason": "closed that day",
    }
    assert (await sandbox.post(f"{CER}/bookings/refuse", json=refusal)).status_code == 200
    assert await bookings(sandbox) == []
    assert (await slots(sandbox))[str(slot_id)]["booked"] is False


# ----------------------------------------------------------------------------- the outage


async def test_while_down_every_facility_call_is_503_but_patient_play_goes_on(sandbox: httpx.AsyncClient) -> None:
    await registered(sandbox)
    slot_id, other_slot = await published(sandbox, 2)
    assert (await sandbox.post(f"{CER}/down")).json() == {"up": False}
    assert (await sandbox.get(f"{CER}/status")).json() == {"up": False}

    facility_calls = [
        (
            "PUT",
            f"/facilities/{FACILITY}/notifications",
            {"endpoint": ENDPOINT, "email": "cer@clinic-a.example", "secret": SECRET},
        ),
        ("POST", "/schedules", a_schedule(uuid.uuid4())),
        ("POST", "/slots/withdraw", {"facility_id": FACILITY, "slot_ids": [str(slot_id)]}),
        (
            "POST",
            "/bookings",
            {"facility_id": FACILITY, "booking_id": str(uuid.uuid4()), "slot_id": str(slot_id), "patient_pesel": PESEL},
        ),
        ("POST", f"/bookings/{uuid.uuid4()}/cancel", {"facility_id": FACILITY}),
        (
            "POST",
            "/bookings/refuse",
            {
                "facility_id": FACILITY,
                "slot_id": str(slot_id),
                "patient_pesel": PESEL,
                "cer_event_id": "e",
                "reason": "r",
            },
        ),
        ("GET", f"/facilities/{FACILITY}/bookings", None),
        ("GET", f"/facilities/{FACILITY}/slots", None),
    ]
    for method, path, body in facility_calls:
        answer = await sandbox.request(method, f"{CER}{path}", json=body)
        problem = assert_problem(answer, 503)
        assert problem["type"].endswith("/cer-unavailable"), (method, path, problem)

    booked = await patient_books(sandbox, other_slot)
    assert booked.status_code == 201, booked.text
    (delivery,) = await settled(sandbox)
    assert delivery["status"] == "delivered"
    assert (await sandbox.get(f"{CER}/facilities/{FACILITY}/changes")).status_code == 200

    assert (await sandbox.post(f"{CER}/up")).json() == {"up": True}
    assert (await sandbox.get(f"{CER}/status")).json() == {"up": True}
    assert [b["slot_id"] for b in await bookings(sandbox)] == [str(other_slot)]
    assert (await slots(sandbox))[str(slot_id)]["withdrawn"] is False  # nothing done while down


# ----------------------------------------------------------------------------- notifications


@pytest.mark.parametrize(
    ("channel", "event_type"),
    [
        ("ikp", "booking_created_ikp"),
        ("other_entity", "booking_created_other_entity"),
        ("waiting_list", "booking_created_waiting_list"),
    ],
)
async def test_a_patients_booking_is_posted_signed_to_the_facilitys_endpoint(
    sandbox: httpx.AsyncClient, receiver: Receiver, channel: str, event_type: str
) -> None:
    await registered(sandbox)
    (slot_id,) = await published(sandbox)
    before = int(time.time())
    answer = await patient_books(sandbox, slot_id, channel=channel)
    assert answer.status_code == 201, answer.text
    booked = answer.json()

    (delivery,) = await settled(sandbox)
    assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("delivered", 1, 204)
    assert (delivery["event_id"], delivery["event_type"], delivery["facility_id"]) == (
        booked["event_id"],
        event_type,
        FACILITY,
    )

    (request,) = receiver.calls
    assert (request.method, str(request.url)) == ("POST", ENDPOINT)
    assert request.headers["content-type"] == "application/json"
    assert before - 1 <= assert_signed(request) <= int(time.time()) + 1
    event = json.loads(request.content)
    assert set(event) == EVENT_FIELDS
    assert (event["event_id"], event["event_type"], event["slot_id"], event["patient_pesel"]) == (
        booked["event_id"],
        event_type,
        str(slot_id),
        PESEL,
    )
    assert dt.datetime.fromisoformat(event["occurred_at"]).tzinfo is not None

    (booking,) = await bookings(sandbox)
    assert (booking["cer_booking_id"], booking["channel"], booking["local_booking_id"]) == (
        booked["cer_booking_id"],
        channel,
        None,
    )


async def test_a_signature_with_another_secret_does_not_verify(sandbox: httpx.AsyncClient, receiver: Receiver) -> None:
    # Guards assert_signed itself: a check that accepts any signature would prove nothing above.
    await registered(sandbox)
    (slot_id,) = await published(sandbox)
    await patient_books(sandbox, slot_id)
    await settled(sandbox)
    (request,) = receiver.calls
    forged = hmac.new(b"another-secret", request.headers["x-cer-timestamp"].encode() + b"." + request.content, "sha256")
    assert request.headers["x-cer-signature"] != f"sha256={forged.hexdigest()}"


async def test_a_failing_endpoint_is_retried_each_time_freshly_signed_until_it_takes_the_call(
    sandbox: httpx.AsyncClient, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    class TickingClock:
        """A second passes between attempts, so a reused signature would show."""

        def __init__(self) -> None:
            self.now = float(int(time.time()))

        def time(self) -> float:
            self.now += 1
            return self.now

    monkeypatch.setattr(cer_module, "time", TickingClock())
    receiver.statuses = [500, 500, 204]
    await registered(sandbox)
    (slot_id,) = await published(sandbox)
    await patient_books(sandbox, slot_id)

    (delivery,) = await settled(sandbox)
    assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("delivered", 3, 204)
    assert len(receiver.calls) == 3
    timestamps = [assert_signed(request) for request in receiver.calls]
    assert len(set(timestamps)) == 3, timestamps
    assert len({r.headers["x-cer-signature"] for r in receiver.calls}) == 3
    assert len({r.content for r in receiver.calls}) == 1  # the same event, not three


async def test_an_endpoint_that_always_fails_ends_failed_after_max_attempts(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    receiver.statuses = [500]
    await registered(sandbox)
    (slot_id,) = await published(sandbox)
    await patient_books(sandbox, slot_id)
    (delivery,) = await settled(sandbox)
    assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("failed", 3, 500)
    assert len(receiver.calls) == 3
    # The patient's booking stands in CeR even though the facility never heard of it.
    assert len(await bookings(sandbox)) == 1


async def test_a_delivery_is_failed_as_soon_as_its_last_attempt_fails(
    app: FastAPI, sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    # A backoff longer than the wait: were it slept after the last attempt, the status would stay pending.
    app.state.cer.max_attempts = 1
    app.state.cer.retry_seconds = 60
    receiver.statuses = [503]
    await registered(sandbox)
    (slot_id,) = await published(sandbox)
    await patient_books(sandbox, slot_id)
    (delivery,) = await settled(sandbox)
    assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("failed", 1, 503)


async def test_an_unreachable_endpoint_ends_failed_naming_the_error(app: FastAPI, sandbox: httpx.AsyncClient) -> None:
    async def unreachable(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    app.state.cer.transport = httpx.MockTransport(unreachable)
    await registered(sandbox)
    (slot_id,) = await published(sandbox)
    await patient_books(sandbox, slot_id)
    (delivery,) = await settled(sandbox)
    assert (delivery["status"], delivery["attempts"], delivery["last_status"]) == ("failed", 3, None)
    assert "ConnectError" in delivery["last_error"]


async def test_a_facility_without_an_endpoint_gets_nothing_and_the_delivery_fails(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    (slot_id,) = await published(sandbox)
    await patient_books(sandbox, slot_id)
    (delivery,) = await settled(sandbox)
    assert (delivery["status"], delivery["attempts"]) == ("failed", 3)
    assert "no notification endpoint" in delivery["last_error"]
    assert receiver.calls == []


async def test_notify_false_loses_the_notification_but_the_booking_is_in_cer(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    await registered(sandbox)
    (slot_id,) = await published(sandbox)
    answer = await patient_books(sandbox, slot_id, notify=False)
    assert answer.status_code == 201, answer.text
    assert answer.json()["event_id"] is None
    assert [(b["slot_id"], b["patient_pesel"]) for b in await bookings(sandbox)] == [(str(slot_id), PESEL)]
    # A later notified booking is delivered: had the lost one been queued, it would show by then.
    (later,) = await published(sandbox)
    await patient_books(sandbox, later, OTHER_PESEL)
    (delivery,) = await settled(sandbox)
    assert delivery["slot_id"] == str(later)
    assert [json.loads(r.content)["slot_id"] for r in receiver.calls] == [str(later)]


async def test_deliveries_are_listed_per_facility(sandbox: httpx.AsyncClient) -> None:
    (ours,) = await published(sandbox)
    (theirs,) = await published(sandbox, facility_id=OTHER_FACILITY)
    await patient_books(sandbox, ours)
    other = {"facility_id": OTHER_FACILITY, "slot_id": str(theirs), "patient_pesel": OTHER_PESEL}
    assert (await sandbox.post(f"{CER}/patients/bookings", json=other)).status_code == 201
    await settled(sandbox, 2)
    assert [d["slot_id"] for d in await deliveries(sandbox, facility_id=FACILITY)] == [str(ours)]
    assert [d["slot_id"] for d in await deliveries(sandbox, facility_id=OTHER_FACILITY)] == [str(theirs)]


async def test_a_patient_cannot_book_a_taken_or_withdrawn_slot(sandbox: httpx.AsyncClient) -> None:
    taken, withdrawn = await published(sandbox, 2)
    await facility_books(sandbox, taken)
    await sandbox.post(f"{CER}/slots/withdraw", json={"facility_id": FACILITY, "slot_ids": [str(withdrawn)]})

    body = assert_problem(await patient_books(sandbox, taken, OTHER_PESEL), 409)
    assert body["type"].endswith("/slot-taken-in-cer")
    body = assert_problem(await patient_books(sandbox, withdrawn, OTHER_PESEL), 409)
    assert body["type"].endswith("/slot-withdrawn")
    assert_problem(await patient_books(sandbox, uuid.uuid4()), 404)
    assert await deliveries(sandbox) == []


async def test_a_patients_cancellation_is_delivered_and_frees_the_slot(
    sandbox: httpx.AsyncClient, receiver: Receiver
) -> None:
    await registered(sandbox)
    (slot_id,) = await published(sandbox)
    booked = (await patient_books(sandbox, slot_id)).json()
    await settled(sandbox)
    cancel = {"facility_id": FACILITY, "slot_id": str(slot_id), "patient_pesel": PESEL}
    answer = await sandbox.post(f"{CER}/patients/cancellations", json=cancel)
    assert answer.status_code == 200, answer.text
    cancelled = answer.json()
    assert cancelled["cer_booking_id"] == booked["cer_booking_id"]

    found = await settled(sandbox, 2)
    assert [(d["event_type"], d["status"]) for d in found] == [
        ("booking_created_ikp", "delivered"),
        ("booking_cancelled_ikp", "delivered"),
    ]
    event = json.loads(receiver.calls[-1].content)
    assert set(event) == EVENT_FIELDS
    assert (event["event_id"], event["event_type"], event["slot_id"], event["patient_pesel"]) == (
        cancelled["event_id"],
        "booking_cancelled_ikp",
        str(slot_id),
        PESEL,
    )
    assert_signed(receiver.calls[-1])
    assert await bookings(sandbox) == []
    assert (await slots(sandbox))[str(slot_id)]["booked"] is False


@pytest.mark.parametrize(
    "who",
    [
        {"patient_pesel": PESEL},  # nothing booked on the slot
        {"patient_pesel": OTHER_PESEL, "booked": True},  # booked, by someone else
        {"facility_id": OTHER_FACILITY, "booked": True},  # booked, at another facility
    ],
    ids=["not-booked", "another-patient", "another-facility"],
)
async def test_cancelling_what_the_patient_has_not_booked_is_404(
    sandbox: httpx.AsyncClient, who: dict[str, Any]
) -> None:
    (slot_id,) = await published(sandbox)
    if who.pop("booked", False):
        await patient_books(sandbox, slot_id, notify=False)
    cancel = {"facility_id": FACILITY, "slot_id": str(slot_id), "patient_pesel": PESEL, **who}
    assert_problem(await sandbox.post(f"{CER}/patients/cancellations", json=cancel), 404)
    assert await deliveries(sandbox) == []


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("path", "body", "field_name"),
    [
        ("/patients/bookings", {"patient_pesel": "44051401358"}, "body.patient_pesel"),
        ("/patients/bookings", {"patient_pesel": "4405140135"}, "body.patient_pesel"),
        ("/patients/bookings", {"slot_id": None}, "body.slot_id"),
        ("/patients/bookings", {"channel": "phone"}, "body.channel"),
        ("/bookings", {"patient_pesel": "12345678901"}, "body.patient_pesel"),
        ("/bookings", {"booking_id": "not-a-uuid"}, "body.booking_id"),
        ("/bookings", {"facility_id": ""}, "body.facility_id"),
        ("/patients/cancellations", {"patient_pesel": "abc"}, "body.patient_pesel"),
    ],
)
async def test_a_bad_or_missing_field_is_422_naming_it(
    sandbox: httpx.AsyncClient, path: str, body: dict[str, Any], field_name: str
) -> None:
    (slot_id,) = await published(sandbox)
    base = {"facility_id": FACILITY, "slot_id": str(slot_id), "patient_pesel": OTHER_PESEL}
    if path == "/bookings":
        base["booking_id"] = str(uuid.uuid4())
    sent = {k: v for k, v in {**base, **body}.items() if v is not None}
    assert_problem(await sandbox.post(f"{CER}{path}", json=sent), 422, field=field_name)
    assert await bookings(sandbox) == []


@pytest.mark.parametrize(
    ("body", "field_name"),
    [
        ({"endpoint": "not a url"}, "body.endpoint"),
        ({"secret": "too-short"}, "body.secret"),
        ({"email": None}, "body.email"),
    ],
)
async def test_bad_notification_settings_are_422_naming_the_field(
    sandbox: httpx.AsyncClient, body: dict[str, Any], field_name: str
) -> None:
    base = {"endpoint": ENDPOINT, "email": "cer@clinic-a.example", "secret": SECRET}
    sent = {k: v for k, v in {**base, **body}.items() if v is not None}
    answer = await sandbox.put(f"{CER}/facilities/{FACILITY}/notifications", json=sent)
    problem = assert_problem(answer, 422, field=field_name)
    assert SECRET not in json.dumps(problem)


async def test_an_unknown_field_is_refused_rather_than_ignored(sandbox: httpx.AsyncClient) -> None:
    (slot_id,) = await published(sandbox)
    answer = await patient_books(sandbox, slot_id, notfy=False)
    assert_problem(answer, 422, field="body.notfy")
    assert await bookings(sandbox) == []

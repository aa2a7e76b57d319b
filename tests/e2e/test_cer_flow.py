"""CeR end to end through the gateway (embedded): a CeR-covered schedule reaches the CeR sandbox, a
patient books it there, CeR calls the gateway's signed webhook, the slot is booked here; the desk's
cancellation goes back to CeR. CeR down: local bookings go on and reach CeR in order afterwards."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from tests.e2e import test_prescriptions_flow as flow
from tests.e2e.test_prescriptions_flow import FACILITY, PATIENT, PATIENT_2, Clinic
from tests.support import waiting

clinic = flow.clinic  # the e2e flow's facility fixture, used here by name

SECRET = "cer-shared-secret-0123456789abcdef"
CER = "/sandbox/cer"


async def eventually(check: Callable[[], Awaitable[bool]], what: str, clinic: Clinic) -> None:
    """Keep every queue moving (outboxes, bus, the CeR forwarder) until ``check`` holds."""

    async def settled_and_checked() -> bool:
        if await check():
            return True
        await _settle(clinic)
        return False

    await waiting.eventually(settled_and_checked, what=what)


async def _settle(clinic: Clinic) -> None:
    for name in ("scheduling", "integration"):
        await clinic.service(name).state.ctx.relay.publish_pending()
    assert clinic.app.state.gateway.bus is not None
    await clinic.app.state.gateway.bus.drain()
    await (
        clinic.service("integration")
        .state.ctx.extras["cer_forwarder"]
        .forward_pending(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    )


async def _cer_connected(clinic: Clinic) -> Any:
    """The facility's CeR settings point at the gateway; the CeR sandbox delivers to this gateway app."""
    sandbox = clinic.app.state.gateway.sandbox.app
    cer = sandbox.state.cer
    cer.transport = httpx.ASGITransport(app=clinic.app)
    cer.retry_seconds = 0.05
    saved = await clinic.client.put(
        "/api/v1/integration/cer/settings",
        json={"endpoint": f"http://gateway/webhooks/cer/{FACILITY}", "email": "cer@clinic.example", "secret": SECRET},
        headers=clinic.admin,
    )
    assert saved.status_code == 200, saved.text
    return cer


async def _cardiology_slots(clinic: Clinic, count: int = 3) -> list[str]:
    work = await clinic.created(
        "/api/v1/scheduling/work-types", {"name": "Kardiologia", "visible_online": True, "cer_specialty": "cardiology"}
    )
    end = (dt.datetime(2000, 1, 1, 8, 0) + dt.timedelta(minutes=15 * count)).strftime("%H:%M")
    day = (dt.date.today() + dt.timedelta(days=3)).isoformat()
    schedule = await clinic.created(
        "/api/v1/scheduling/schedules",
        {
            "practitioner_id": clinic.ids[flow.DUTY],
            "location_id": clinic.ids["A"],
            "work_type_id": work["id"],
            "date": day,
            "start_time": "08:00",
            "end_time": end,
            "visit_minutes": 15,
        },
    )
    assert (schedule["cer_published"], schedule["cer_specialty"]) == (True, "cardiology")
    slots = (
        await clinic.client.get("/api/v1/scheduling/slots", params={"work_type_id": work["id"]}, headers=clinic.desk)
    ).json()
    return [s["id"] for s in slots]


async def _slot_status(clinic: Clinic, slot_id: str) -> str:
    slots = (await clinic.client.get("/api/v1/scheduling/slots", headers=clinic.desk)).json()
    status: str = next(s["status"] for s in slots if s["id"] == slot_id)
    return status


async def _cer_bookings(clinic: Clinic, status: str = "active") -> list[dict[str, Any]]:
    answer = await clinic.client.get(f"{CER}/facilities/{FACILITY}/bookings", params={"status": status})
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


async def test_a_patient_booking_in_cer_reaches_the_local_slot_and_the_desks_cancellation_goes_back(
    clinic: Clinic,
) -> None:
    await _cer_connected(clinic)
    slots = await _cardiology_slots(clinic)

    async def published() -> bool:
        answer = await clinic.client.get(f"{CER}/facilities/{FACILITY}/slots")
        return answer.status_code == 200 and {s["slot_id"] for s in answer.json()} == set(slots)

    await eventually(published, "the cardiology schedule in CeR", clinic)

    played = await clinic.client.post(
        f"{CER}/patients/bookings",
        json={"facility_id": FACILITY, "slot_id": slots[0], "patient_pesel": PATIENT, "channel": "ikp"},
    )
    assert played.status_code == 201, played.text

    async def booked_here() -> bool:
        return await _slot_status(clinic, slots[0]) == "booked"

    await eventually(booked_here, "the CeR booking on the local slot", clinic)
    deliveries = (await clinic.client.get(f"{CER}/deliveries", params={"facility_id": FACILITY})).json()
    assert [(d["status"], d["last_status"]) for d in deliveries] == [("delivered", 204)]
    local = (
        await clinic.client.get("/api/v1/scheduling/bookings", params={"status": "booked"}, headers=clinic.desk)
    ).json()
    booking = next(b for b in local if b["slot_id"] == slots[0])
    assert (booking["patient_pesel"], booking["source"]) == (PATIENT, "cer_ikp")

    cancelled = await clinic.client.post(f"/api/v1/scheduling/bookings/{booking['id']}/cancel", headers=clinic.desk)
    assert cancelled.status_code == 200, cancelled.text

    async def cancelled_in_cer() -> bool:
        return [b["slot_id"] for b in await _cer_bookings(clinic, "cancelled")] == [slots[0]]

    await eventually(cancelled_in_cer, "the desk's cancellation in CeR", clinic)
    assert await _cer_bookings(clinic) == []


async def test_cer_down_never_stops_the_desk_and_every_change_reaches_cer_in_order_afterwards(clinic: Clinic) -> None:
    await _cer_connected(clinic)
    slots = await _cardiology_slots(clinic, count=4)
    await eventually(lambda: _cer_slots_count(clinic, len(slots)), "the schedule in CeR before the outage", clinic)
    assert (await clinic.client.post(f"{CER}/down")).status_code == 200

    booked = []
    for slot_id, pesel in zip(slots, (PATIENT, PATIENT_2, PATIENT), strict=False):
        answer = await clinic.client.post(
            "/api/v1/scheduling/bookings", json={"slot_id": slot_id, "patient_pesel": pesel}, headers=clinic.desk
        )
        assert answer.status_code == 201, answer.text  # never send a patient away
        booked.append(answer.json()["id"])
    cancelled = await clinic.client.post(f"/api/v1/scheduling/bookings/{booked[1]}/cancel", headers=clinic.desk)
    assert cancelled.status_code == 200
    await _settle(clinic)

    ready = (await clinic.client.get("/readyz")).json()
    assert ready["services"]["integration"]["checks"]["cer_backlog"] == 4, ready
    queued = (await clinic.client.get("/api/v1/integration/cer/outgoing", headers=clinic.admin)).json()
    assert [q["kind"] for q in reversed(queued) if q["status"] == "pending"] == ["book", "book", "book", "cancel"]

    assert (await clinic.client.post(f"{CER}/up")).status_code == 200

    async def all_sent() -> bool:
        state = (await clinic.client.get("/api/v1/integration/cer/outgoing", headers=clinic.admin)).json()
        return all(q["status"] == "sent" for q in state)

    await eventually(all_sent, "the queued changes sent", clinic)
    changes = (await clinic.client.get(f"{CER}/facilities/{FACILITY}/changes")).json()
    order = [(c["kind"], c["reference"]) for c in changes if c["kind"] in ("book", "cancel")]
    assert order == [("book", booked[0]), ("book", booked[1]), ("book", booked[2]), ("cancel", booked[1])]
    active = await _cer_bookings(clinic)
    assert sorted(b["slot_id"] for b in active) == sorted([slots[0], slots[2]])


async def _cer_slots_count(clinic: Clinic, count: int) -> bool:
    answer = await clinic.client.get(f"{CER}/facilities/{FACILITY}/slots")
    return answer.status_code == 200 and len(answer.json()) == count

"""What the scheduling service tells the rest of the suite: outbox rows and events on the bus."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from services.scheduling.app import create_app
from services.scheduling.models import Outbox
from shared.bus import InProcessBus
from shared.events import Envelope
from shared.settings import Settings
from tests.api.test_scheduling_api import API, DAY, Clinic
from tests.conftest import FACILITY, OTHER_PESEL, PESEL
from tests.support.waiting import eventually

Headers = dict[str, str]


@dataclass
class Service:
    app: FastAPI
    clinic: Clinic
    received: list[Envelope]

    async def outbox(self, event_type: str | None = None) -> list[Outbox]:
        async with self.app.state.ctx.sessions() as session:
            query = sa.select(Outbox).order_by(Outbox.seq)
            if event_type is not None:
                query = query.where(Outbox.event_type == event_type)
            return list((await session.scalars(query)).all())

    async def delivered(self, event_type: str, count: int = 1) -> list[Envelope]:
        def found() -> list[Envelope]:
            return [e for e in self.received if e.type == event_type]

        await eventually(lambda: len(found()) >= count, what=f"{count} × {event_type} delivered")
        return found()


@pytest.fixture
async def service(settings: Settings, auth: Callable[..., Headers]) -> AsyncIterator[Service]:
    bus = InProcessBus(max_attempts=2, retry_base_seconds=0.01)
    received: list[Envelope] = []

    async def record(envelope: Envelope) -> None:
        received.append(envelope)

    bus.subscribe("test.scheduling-events", ["scheduling.#"], record)
    app = create_app(settings, bus=bus)
    await bus.start()  # a bus handed in belongs to the caller, who starts it
    transport = httpx.ASGITransport(app=app)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        ):
            yield Service(app, Clinic(client, auth), received)
    finally:
        await bus.close()


async def one_slot_day(clinic: Clinic) -> list[dict[str, Any]]:
    doctor, place, work = await clinic.practitioner(), await clinic.location(), await clinic.work_type()
    return await clinic.scheduled(doctor, place, work)


async def test_a_booking_writes_its_event_to_the_outbox_and_a_subscriber_receives_it(service: Service) -> None:
    clinic = service.clinic
    slots = await one_slot_day(clinic)
    answer = await clinic.client.post(
        f"{API}/bookings",
        json={"slot_id": slots[0]["id"], "patient_pesel": PESEL, "source": "portal"},
        headers={**clinic.desk, "X-Request-ID": "trace-booking-1"},
    )
    assert answer.status_code == 201, answer.text
    booking = answer.json()

    rows = await service.outbox("scheduling.booking.created")
    assert len(rows) == 1
    stored = Envelope.model_validate_json(rows[0].envelope)
    assert stored.id == rows[0].event_id
    assert stored.facility_id == FACILITY
    assert stored.correlation_id == "trace-booking-1"
    assert stored.payload["booking_id"] == booking["id"]
    assert stored.payload["slot_id"] == slots[0]["id"]
    assert stored.payload["practitioner_id"] == slots[0]["practitioner_id"]
    assert stored.payload["patient_pesel"] == PESEL
    assert stored.payload["source"] == "portal"
    assert stored.payload["start"].startswith("2030-03-04T07:00:00")

    (delivered,) = await service.delivered("scheduling.booking.created")
    assert delivered.id == stored.id
    assert delivered.payload == stored.payload

    async def marked() -> bool:  # the relay marks the row once the bus has taken it
        return (await service.outbox("scheduling.booking.created"))[0].published_at is not None

    await eventually(marked, what="the outbox row marked published")


async def test_a_schedule_announces_its_slots(service: Service) -> None:
    slots = await one_slot_day(service.clinic)
    (row,) = await service.outbox("scheduling.schedule.published")
    payload = json.loads(row.envelope)["payload"]
    assert sorted(payload["slot_ids"]) == sorted(s["id"] for s in slots)
    assert payload["date"] == DAY
    assert payload["cer_published"] is False


async def test_refused_requests_write_no_event(service: Service) -> None:
    clinic = service.clinic
    slots = await one_slot_day(clinic)
    await clinic.booked(slots[0]["id"], PESEL)
    assert (await clinic.book(slots[0]["id"], OTHER_PESEL)).status_code == 409
    assert (await clinic.book(slots[1]["id"], "44051401358")).status_code == 422
    assert len(await service.outbox("scheduling.booking.created")) == 1
    overlap = await clinic.schedule(
        {"id": slots[0]["practitioner_id"]}, {"id": slots[0]["location_id"]}, {"id": slots[0]["work_type_id"]}
    )
    assert overlap.status_code == 409
    assert len(await service.outbox("scheduling.schedule.published")) == 1


async def test_an_idempotent_retry_writes_no_second_event(service: Service) -> None:
    clinic = service.clinic
    slots = await one_slot_day(clinic)
    body = {"slot_id": slots[0]["id"], "patient_pesel": PESEL, "source": "desk"}
    headers = {**clinic.desk, "Idempotency-Key": "once"}
    for _ in range(3):
        assert (await clinic.client.post(f"{API}/bookings", json=body, headers=headers)).status_code == 201
    assert len(await service.outbox("scheduling.booking.created")) == 1


async def test_a_cancellation_is_announced_once(service: Service) -> None:
    clinic = service.clinic
    slots = await one_slot_day(clinic)
    booking = await clinic.booked(slots[0]["id"])
    for _ in range(2):
        await clinic.client.post(f"{API}/bookings/{booking['id']}/cancel", headers=clinic.desk)
    (row,) = await service.outbox("scheduling.booking.cancelled")
    payload = json.loads(row.envelope)["payload"]
    assert payload["booking_id"] == booking["id"]
    assert payload["slot_id"] == slots[0]["id"]
    (delivered,) = await service.delivered("scheduling.booking.cancelled")
    assert delivered.payload["booking_id"] == booking["id"]


async def test_an_absence_announces_moves_and_visits_to_reschedule(service: Service) -> None:
    clinic = service.clinic
    place, work = await clinic.location(), await clinic.work_type()
    absent, colleague = await clinic.practitioner("Dr A"), await clinic.practitioner("Dr B")
    absent_slots = await clinic.scheduled(absent, place, work)
    colleague_slots = await clinic.scheduled(colleague, place, work, end="08:20")
    moved = await clinic.booked(absent_slots[0]["id"], PESEL)
    stuck = await clinic.booked(absent_slots[1]["id"], OTHER_PESEL)
    answer = await clinic.client.post(
        f"{API}/practitioners/{absent['id']}/absences", json={"date_from": DAY, "date_to": DAY}, headers=clinic.desk
    )
    assert answer.status_code == 200, answer.text

    (move,) = await service.outbox("scheduling.booking.moved")
    move_payload = json.loads(move.envelope)["payload"]
    assert move_payload["booking_id"] == moved["id"]
    assert move_payload["old_slot_id"] == absent_slots[0]["id"]
    assert move_payload["new_slot_id"] == colleague_slots[0]["id"]
    assert move_payload["new_practitioner_id"] == colleague["id"]
    (flag,) = await service.outbox("scheduling.booking.needs_rescheduling")
    flag_payload = json.loads(flag.envelope)["payload"]
    assert flag_payload["booking_id"] == stuck["id"]
    assert flag_payload["patient_pesel"] == OTHER_PESEL
    await service.delivered("scheduling.booking.needs_rescheduling")


async def test_events_keep_their_order_on_the_bus(service: Service) -> None:
    clinic = service.clinic
    slots = await one_slot_day(clinic)
    booking = await clinic.booked(slots[0]["id"])
    await clinic.client.post(f"{API}/bookings/{booking['id']}/cancel", headers=clinic.desk)
    await clinic.booked(slots[0]["id"], OTHER_PESEL)
    await service.delivered("scheduling.booking.created", count=2)
    assert [e.type for e in service.received] == [
        "scheduling.schedule.published",
        "scheduling.booking.created",
        "scheduling.booking.cancelled",
        "scheduling.booking.created",
    ]

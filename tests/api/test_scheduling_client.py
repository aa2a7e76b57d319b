"""The scheduling client against the real scheduling app in this process (httpx's ASGI transport).

Reference data is built through the API with staff tokens (``Clinic``); the client then asks as the
prescriptions service would, with its own service tokens.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.scheduling.app import create_app
from services.scheduling.client import SchedulingClient, SchedulingRefused
from services.scheduling.schemas import BookingOut, BookingSource, LocationOut, SlotStatus
from shared.settings import Settings
from tests.api.test_scheduling_api import API, DAY, NEXT_DAY, Clinic, Headers, assert_problem, ids
from tests.conftest import FACILITY, OTHER_FACILITY, OTHER_PESEL, PESEL, running_client


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_client(app):
        yield client


@pytest.fixture
async def scheduling(app: FastAPI, settings: Settings, http: httpx.AsyncClient) -> AsyncIterator[SchedulingClient]:
    # ``http`` first: its lifespan has to be running before the client asks anything.
    async with SchedulingClient(
        "http://scheduling.embedded", settings, transport=httpx.ASGITransport(app=app), caller="prescriptions"
    ) as client:
        yield client


@pytest.fixture
def clinic(http: httpx.AsyncClient, auth: Callable[..., Headers]) -> Clinic:
    return Clinic(http, auth)


@pytest.fixture
def other_clinic(http: httpx.AsyncClient, auth: Callable[..., Headers]) -> Clinic:
    return Clinic(http, auth, facility=OTHER_FACILITY, _npwz_seed=500_000)


@dataclass
class Setup:
    """Dr A and Dr B at Centrum; prescription-only work and ordinary visits, over two days."""

    dr_a: dict[str, Any]
    dr_b: dict[str, Any]
    centre: dict[str, Any]
    prescriptions: dict[str, Any]
    visits: dict[str, Any]
    a_prescriptions: list[dict[str, Any]]  # DAY 08:00-09:00, then NEXT_DAY 08:00-08:40
    a_visits: list[dict[str, Any]]  # DAY 10:00-11:00
    b_prescriptions: list[dict[str, Any]]  # DAY 08:00-09:00


@pytest.fixture
async def setup(clinic: Clinic) -> Setup:
    dr_a, dr_b = await clinic.practitioner("Dr A"), await clinic.practitioner("Dr B")
    centre = await clinic.location("Centrum", department_code="0001")
    prescriptions = await clinic.work_type("Prescriptions", visible_online=False, prescription_only=True)
    visits = await clinic.work_type("Visit")
    a_prescriptions = await clinic.scheduled(dr_a, centre, prescriptions, date=DAY)
    a_visits = await clinic.scheduled(dr_a, centre, visits, date=DAY, start="10:00", end="11:00")
    a_prescriptions += await clinic.scheduled(dr_a, centre, prescriptions, date=NEXT_DAY, end="08:40")
    b_prescriptions = await clinic.scheduled(dr_b, centre, prescriptions, date=DAY)
    return Setup(dr_a, dr_b, centre, prescriptions, visits, a_prescriptions, a_visits, b_prescriptions)


def instant(value: str) -> dt.datetime:
    return dt.datetime.fromisoformat(value)


# ----------------------------------------------------------------------------- reference data


async def test_a_practitioner_is_found_by_npwz_in_the_callers_facility_only(
    scheduling: SchedulingClient, clinic: Clinic, other_clinic: Clinic, setup: Setup
) -> None:
    found = await scheduling.practitioner_by_npwz(FACILITY, setup.dr_a["npwz"])
    assert found is not None
    assert (str(found.id), found.npwz, found.name) == (setup.dr_a["id"], setup.dr_a["npwz"], "Dr A")
    elsewhere = await other_clinic.practitioner("Dr Z")
    assert await scheduling.practitioner_by_npwz(FACILITY, elsewhere["npwz"]) is None
    assert await scheduling.practitioner_by_npwz(OTHER_FACILITY, setup.dr_a["npwz"]) is None
    assert await scheduling.practitioner_by_npwz(FACILITY, "not-an-npwz-at-all") is None


async def test_reference_data_is_listed_as_typed_models(scheduling: SchedulingClient, setup: Setup) -> None:
    assert [str(p.id) for p in await scheduling.practitioners(FACILITY)] == [setup.dr_a["id"], setup.dr_b["id"]]
    assert [loc.department_code for loc in await scheduling.locations(FACILITY)] == ["0001"]
    kinds = {w.name: w.prescription_only for w in await scheduling.work_types(FACILITY)}
    assert kinds == {"Prescriptions": True, "Visit": False}
    assert await scheduling.practitioners(OTHER_FACILITY) == []


async def test_a_location_of_another_facility_is_none(
    scheduling: SchedulingClient, other_clinic: Clinic, setup: Setup
) -> None:
    own = await scheduling.location(FACILITY, uuid.UUID(setup.centre["id"]))
    assert isinstance(own, LocationOut)
    assert own.name == "Centrum"
    assert await scheduling.location(OTHER_FACILITY, uuid.UUID(setup.centre["id"])) is None
    theirs = await other_clinic.location("Elsewhere")
    assert await scheduling.location(FACILITY, uuid.UUID(theirs["id"])) is None
    assert await scheduling.location(FACILITY, uuid.uuid4()) is None


# ----------------------------------------------------------------------------- slots


async def test_free_prescription_slots_are_the_doctors_free_prescription_work_after_the_instant(
    scheduling: SchedulingClient, clinic: Clinic, setup: Setup
) -> None:
    first, second, third, *next_day = setup.a_prescriptions
    await clinic.booked(second["id"], OTHER_PESEL)
    # Strictly after: the slot starting at the instant itself is not offered.
    slots = await scheduling.free_prescription_slots(
        FACILITY, uuid.UUID(setup.dr_a["id"]), start_after=instant(first["start"])
    )
    assert [str(s.id) for s in slots] == [third["id"], *ids(next_day)]
    assert {s.status for s in slots} == {SlotStatus.free}
    assert {str(s.work_type_id) for s in slots} == {setup.prescriptions["id"]}
    assert {str(s.practitioner_id) for s in slots} == {setup.dr_a["id"]}
    assert [s.start for s in slots] == sorted(s.start for s in slots)
    # The instant may carry any offset: 08:00 in Warsaw is 07:00 UTC.
    warsaw = dt.datetime.fromisoformat(f"{DAY}T08:00:00+01:00")
    assert [
        str(s.id)
        for s in await scheduling.free_prescription_slots(FACILITY, uuid.UUID(setup.dr_a["id"]), start_after=warsaw)
    ] == [
        third["id"],
        *ids(next_day),
    ]
    later = await scheduling.free_prescription_slots(
        FACILITY, uuid.UUID(setup.dr_a["id"]), start_after=instant(next_day[-1]["start"])
    )
    assert later == []
    limited = await scheduling.free_prescription_slots(
        FACILITY, uuid.UUID(setup.dr_a["id"]), start_after=instant(first["start"]), limit=1
    )
    assert [str(s.id) for s in limited] == [third["id"]]


async def test_the_general_slot_search_filters_by_practitioner_location_and_status(
    scheduling: SchedulingClient, clinic: Clinic, setup: Setup
) -> None:
    await clinic.booked(setup.a_visits[0]["id"])
    mine = await scheduling.slots(FACILITY, practitioner_id=uuid.UUID(setup.dr_a["id"]))
    assert len(mine) == len(setup.a_prescriptions) + len(setup.a_visits)
    booked = await scheduling.slots(FACILITY, location_id=uuid.UUID(setup.centre["id"]), status=SlotStatus.booked)
    assert [str(s.id) for s in booked] == [setup.a_visits[0]["id"]]
    assert len(await scheduling.slots(FACILITY, limit=2)) == 2
    assert await scheduling.slots(OTHER_FACILITY) == []


# ----------------------------------------------------------------------------- bookings


async def test_a_booking_takes_the_slot_for_a_prescription_request(
    scheduling: SchedulingClient, clinic: Clinic, setup: Setup
) -> None:
    slot = setup.a_prescriptions[0]
    booking = await scheduling.book(FACILITY, uuid.UUID(slot["id"]), PESEL, idempotency_key="request-1:slot-1")
    assert isinstance(booking, BookingOut)
    assert (str(booking.slot_id), booking.status, booking.patient_pesel) == (slot["id"], "booked", PESEL)
    assert booking.source == BookingSource.prescription_request
    assert booking.start == instant(slot["start"])
    assert (await clinic.booking(str(booking.id)))["source"] == "prescription_request"
    booked = await scheduling.slots(FACILITY, status=SlotStatus.booked)
    assert [str(s.id) for s in booked] == [slot["id"]]


async def test_a_slot_taken_meanwhile_answers_none(scheduling: SchedulingClient, clinic: Clinic, setup: Setup) -> None:
    slot = uuid.UUID(setup.a_prescriptions[0]["id"])
    first = await scheduling.book(FACILITY, slot, PESEL, idempotency_key="request-1:slot-1")
    assert first is not None
    assert await scheduling.book(FACILITY, slot, OTHER_PESEL, idempotency_key="request-2:slot-1") is None
    assert (await clinic.booking(str(first.id)))["patient_pesel"] == PESEL


async def test_repeating_a_booking_with_the_same_key_answers_the_first_booking(
    scheduling: SchedulingClient, clinic: Clinic, setup: Setup
) -> None:
    slot = uuid.UUID(setup.a_prescriptions[0]["id"])
    first = await scheduling.book(FACILITY, slot, PESEL, idempotency_key="request-1:slot-1")
    again = await scheduling.book(FACILITY, slot, PESEL, idempotency_key="request-1:slot-1")
    assert first is not None
    assert again == first
    booked = await scheduling.slots(FACILITY, status=SlotStatus.booked)
    assert [str(s.id) for s in booked] == [str(slot)]


async def test_a_slot_of_another_facility_is_refused_with_schedulings_reason(
    scheduling: SchedulingClient, setup: Setup
) -> None:
    slot = uuid.UUID(setup.a_prescriptions[0]["id"])
    with pytest.raises(SchedulingRefused) as refused:
        await scheduling.book(OTHER_FACILITY, slot, PESEL, idempotency_key="request-9:slot-1")
    assert refused.value.status == 422
    assert refused.value.message == f"slot {slot} not found"


async def test_a_cancelled_booking_frees_the_slot_again(scheduling: SchedulingClient, setup: Setup) -> None:
    slot = uuid.UUID(setup.a_prescriptions[0]["id"])
    booking = await scheduling.book(FACILITY, slot, PESEL, idempotency_key="request-1:slot-1")
    assert booking is not None
    cancelled = await scheduling.cancel_booking(FACILITY, booking.id)
    assert (cancelled.id, cancelled.status) == (booking.id, "cancelled")
    free = await scheduling.free_prescription_slots(
        FACILITY, uuid.UUID(setup.dr_a["id"]), start_after=instant(f"{DAY}T00:00:00+00:00")
    )
    assert str(slot) in [str(s.id) for s in free]
    assert (await scheduling.cancel_booking(FACILITY, booking.id)).status == "cancelled"


# ----------------------------------------------------------------------------- the new slot filters, over HTTP


async def test_slots_are_filtered_by_prescription_only_work(clinic: Clinic, setup: Setup) -> None:
    prescription_ids = ids(setup.a_prescriptions) + ids(setup.b_prescriptions)
    only = await clinic.slots(prescription_only="true")
    assert sorted(ids(only)) == sorted(prescription_ids)
    others = await clinic.slots(prescription_only="false")
    assert ids(others) == ids(setup.a_visits)
    assert len(await clinic.slots()) == len(prescription_ids) + len(setup.a_visits)


async def test_slots_are_filtered_to_those_starting_strictly_after_an_instant(clinic: Clinic, setup: Setup) -> None:
    cut = setup.a_visits[0]["start"]  # DAY 10:00 Warsaw
    after = await clinic.slots(start_after=cut)
    assert ids(after) == ids(setup.a_visits[1:]) + ids(setup.a_prescriptions[3:])
    assert all(s["start"] > cut for s in after)
    # The same instant written with another offset is the same instant.
    assert ids(await clinic.slots(start_after=f"{DAY}T10:00:00+01:00")) == ids(after)


async def test_slots_starting_at_the_same_time_are_ordered_by_id(clinic: Clinic, setup: Setup) -> None:
    answer = await clinic.slots(prescription_only="true", date_from=DAY, date_to=DAY)
    assert len(answer) == len(setup.a_prescriptions[:3]) + len(setup.b_prescriptions)
    assert answer == sorted(answer, key=lambda s: (s["start"], uuid.UUID(s["id"]).hex))


async def test_a_start_after_without_an_offset_is_refused(clinic: Clinic, setup: Setup) -> None:
    answer = await clinic.client.get(f"{API}/slots", params={"start_after": f"{DAY}T10:00:00"}, headers=clinic.desk)
    assert_problem(answer, 422, "query.start_after")


async def test_a_patient_asking_for_prescription_work_still_sees_only_work_offered_online(
    clinic: Clinic, setup: Setup
) -> None:
    assert await clinic.slots(headers=clinic.patient(), prescription_only="true") == []
    offered = await clinic.slots(headers=clinic.patient(), prescription_only="false")
    assert ids(offered) == ids(setup.a_visits)


# ----------------------------------------------------------------------------- the earliest free slot in one step


async def test_booking_the_earliest_gives_concurrent_callers_successive_slots(
    scheduling: SchedulingClient, setup: Setup
) -> None:
    dr_a = uuid.UUID(setup.dr_a["id"])
    before_all = instant(setup.a_prescriptions[0]["start"]) - dt.timedelta(minutes=1)

    async def earliest(n: int) -> BookingOut | None:
        return await scheduling.book_earliest(
            FACILITY, dr_a, PESEL, start_after=before_all, idempotency_key=f"earliest-{n}"
        )

    booked = await asyncio.gather(*(earliest(n) for n in range(len(setup.a_prescriptions) + 2)))

    won = [b for b in booked if b is not None]
    assert sorted(str(b.slot_id) for b in won) == sorted(s["id"] for s in setup.a_prescriptions)
    assert booked.count(None) == 2  # every prescription slot once, then nothing fits
    assert all(b.practitioner_id == dr_a and b.location_id == uuid.UUID(setup.centre["id"]) for b in won)
    n, first = next((n, b) for n, b in enumerate(booked) if b is not None)
    again = await earliest(n)  # the same idempotency key: the first answer, not a new booking
    assert again is not None and again.id == first.id


async def test_booking_the_earliest_respects_the_location_and_the_start(
    scheduling: SchedulingClient, clinic: Clinic, setup: Setup
) -> None:
    dr_b = uuid.UUID(setup.dr_b["id"])
    north = await clinic.location("Północ")
    later = await clinic.scheduled(setup.dr_b, north, setup.prescriptions, date=NEXT_DAY)
    centre = uuid.UUID(setup.centre["id"])
    start = instant(setup.b_prescriptions[0]["start"]) - dt.timedelta(minutes=1)

    here = await scheduling.book_earliest(
        FACILITY, dr_b, PESEL, start_after=start, idempotency_key="h", location_id=centre
    )
    elsewhere = await scheduling.book_earliest(
        FACILITY, dr_b, PESEL, start_after=start, idempotency_key="e", exclude_location_id=centre
    )
    after_everything = await scheduling.book_earliest(
        FACILITY, dr_b, PESEL, start_after=instant(later[-1]["start"]), idempotency_key="x"
    )
    visits_only = await scheduling.book_earliest(
        FACILITY, dr_b, PESEL, start_after=start, idempotency_key="v", prescription_only=False
    )

    assert here is not None and str(here.slot_id) == setup.b_prescriptions[0]["id"]
    assert elsewhere is not None and str(elsewhere.slot_id) == later[0]["id"]
    assert after_everything is None and visits_only is None

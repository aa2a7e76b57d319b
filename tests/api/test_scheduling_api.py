"""The scheduling service over HTTP (ASGI): every endpoint of API.md, as a clinic would use it.

``Clinic`` builds reference data through the API itself; the other API test files import it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from shared.clock import FixedClock
from tests.conftest import FACILITY, OTHER_FACILITY, OTHER_PESEL, PESEL

API = "/api/v1/scheduling"
DAY = "2030-03-04"  # a Monday in winter time: Warsaw is UTC+1
NEXT_DAY = "2030-03-05"
PROBLEM = "application/problem+json"
Headers = dict[str, str]


def valid_npwz(seed: int) -> str:
    """A doctor's NPWZ with a correct check digit, different for every seed."""
    body = seed
    while True:
        digits = f"{body % 1_000_000:06d}"
        check = sum(int(d) * weight for weight, d in enumerate(digits, start=1)) % 11
        if check not in (0, 10):
            return f"{check}{digits}"
        body += 1


def assert_problem(answer: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    """The answer is problem+json with ``status``; with ``field``, its ``errors`` name that field."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    assert body["type"].startswith("https://")
    assert body["title"]
    if field is not None:
        fields = [e["field"] for e in body.get("errors", [])]
        assert field in fields, f"{field} not in {fields}: {body}"
    return body


@dataclass
class Clinic:
    """One facility's staff talking to the scheduling API."""

    client: httpx.AsyncClient
    auth: Callable[..., Headers]
    facility: str = FACILITY
    _npwz_seed: int = field(default=100_000)

    @property
    def admin(self) -> Headers:
        return self.auth("facility_admin", facility_id=self.facility)

    @property
    def desk(self) -> Headers:
        return self.auth("registrar", facility_id=self.facility)

    def patient(self, pesel: str = PESEL) -> Headers:
        return self.auth("patient", pesel=pesel, facility_id=self.facility)

    async def created(self, path: str, body: dict[str, Any], headers: Headers | None = None) -> dict[str, Any]:
        answer = await self.client.post(API + path, json=body, headers=headers or self.admin)
        assert answer.status_code == 201, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def location(self, name: str = "Centrum", **extra: Any) -> dict[str, Any]:
        return await self.created("/locations", {"name": name, **extra})

    async def practitioner(self, name: str = "Dr A", *, npwz: str | None = None, **extra: Any) -> dict[str, Any]:
        if npwz is None:
            self._npwz_seed += 7
            npwz = valid_npwz(self._npwz_seed)
        body = {"name": name, "npwz": npwz, "profession": "doctor", "poz": True, **extra}
        return await self.created("/practitioners", body)

    async def work_type(self, name: str = "Visit", *, visible_online: bool = True, **extra: Any) -> dict[str, Any]:
        return await self.created("/work-types", {"name": name, "visible_online": visible_online, **extra})

    async def schedule(
        self,
        practitioner: dict[str, Any],
        location: dict[str, Any],
        work_type: dict[str, Any],
        *,
        date: str = DAY,
        start: str = "08:00",
        end: str = "09:00",
        visit: int = 20,
    ) -> httpx.Response:
        body = {
            "practitioner_id": practitioner["id"],
            "location_id": location["id"],
            "work_type_id": work_type["id"],
            "date": date,
            "start_time": start,
            "end_time": end,
            "visit_minutes": visit,
        }
        return await self.client.post(f"{API}/schedules", json=body, headers=self.desk)

    async def scheduled(self, practitioner: dict[str, Any], *args: Any, **kwargs: Any) -> list[dict[str, Any]]:
        """Create a schedule and return its new slots, earliest first."""
        before = set(ids(await self.slots(practitioner_id=practitioner["id"])))
        answer = await self.schedule(practitioner, *args, **kwargs)
        assert answer.status_code == 201, answer.text
        new = [s for s in await self.slots(practitioner_id=practitioner["id"]) if s["id"] not in before]
        assert len(new) == answer.json()["slots_created"]
        return new

    async def slots(self, headers: Headers | None = None, **params: Any) -> list[dict[str, Any]]:
        answer = await self.client.get(f"{API}/slots", params=params, headers=headers or self.desk)
        assert answer.status_code == 200, answer.text
        result: list[dict[str, Any]] = answer.json()
        return result

    async def book(
        self, slot_id: str, pesel: str = PESEL, source: str = "desk", headers: Headers | None = None
    ) -> httpx.Response:
        body = {"slot_id": slot_id, "patient_pesel": pesel, "source": source}
        return await self.client.post(f"{API}/bookings", json=body, headers=headers or self.desk)

    async def booked(self, slot_id: str, pesel: str = PESEL) -> dict[str, Any]:
        answer = await self.book(slot_id, pesel)
        assert answer.status_code == 201, answer.text
        result: dict[str, Any] = answer.json()
        return result

    async def booking(self, booking_id: str) -> dict[str, Any]:
        answer = await self.client.get(f"{API}/bookings/{booking_id}", headers=self.desk)
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result


@pytest.fixture
def clinic(scheduling_client: httpx.AsyncClient, auth: Callable[..., Headers]) -> Clinic:
    return Clinic(scheduling_client, auth)


@pytest.fixture
def other_clinic(scheduling_client: httpx.AsyncClient, auth: Callable[..., Headers]) -> Clinic:
    return Clinic(scheduling_client, auth, facility=OTHER_FACILITY, _npwz_seed=500_000)


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in rows]


# ----------------------------------------------------------------------------- reference data


async def test_a_location_is_created_and_listed(clinic: Clinic) -> None:
    centre = await clinic.location("Centrum", department_code="0012")
    branch = await clinic.location("Filia")
    assert centre["name"] == "Centrum"
    assert centre["department_code"] == "0012"
    assert centre["duty_practitioner_id"] is None
    assert branch["department_code"] is None

    listed = (await clinic.client.get(f"{API}/locations", headers=clinic.desk)).json()
    assert ids(listed) == [centre["id"], branch["id"]]
    one = await clinic.client.get(f"{API}/locations/{centre['id']}", headers=clinic.desk)
    assert one.json() == centre


async def test_a_practitioner_is_created_with_every_profession_and_found_by_npwz(clinic: Clinic) -> None:
    doctor = await clinic.practitioner("Dr Nowak", npwz="5425740", profession="doctor", poz=True)
    nurse = await clinic.practitioner("Anna Kowalska", npwz="1234567P", profession="nurse", poz=False)
    for profession in ("dentist", "midwife", "feldsher"):
        await clinic.practitioner(f"A {profession}", profession=profession)
    assert doctor["npwz"] == "5425740"
    assert doctor["profession"] == "doctor"
    assert doctor["poz"] is True
    assert nurse["npwz"] == "1234567P"

    everyone = (await clinic.client.get(f"{API}/practitioners", headers=clinic.desk)).json()
    assert len(everyone) == 5
    found = await clinic.client.get(f"{API}/practitioners", params={"npwz": "5425740"}, headers=clinic.desk)
    assert ids(found.json()) == [doctor["id"]]
    none = await clinic.client.get(f"{API}/practitioners", params={"npwz": "2234567"}, headers=clinic.desk)
    assert none.json() == []


async def test_the_same_npwz_twice_in_one_facility_is_a_conflict(clinic: Clinic, other_clinic: Clinic) -> None:
    await clinic.practitioner("Dr Nowak", npwz="5425740")
    again = await clinic.client.post(
        f"{API}/practitioners",
        json={"name": "Dr Nowak bis", "npwz": "5425740", "profession": "doctor"},
        headers=clinic.admin,
    )
    assert_problem(again, 409, "body.npwz")
    # Another facility may employ the same person.
    assert (await other_clinic.practitioner("Dr Nowak", npwz="5425740"))["npwz"] == "5425740"


async def test_work_types_are_created_and_a_patient_sees_only_those_offered_online(clinic: Clinic) -> None:
    online = await clinic.work_type("Visit", visible_online=True)
    prescriptions = await clinic.work_type("Prescriptions", visible_online=False, prescription_only=True)
    assert prescriptions["prescription_only"] is True
    assert prescriptions["visible_online"] is False
    assert online["prescription_only"] is False

    staff_view = (await clinic.client.get(f"{API}/work-types", headers=clinic.desk)).json()
    assert ids(staff_view) == [online["id"], prescriptions["id"]]
    patient_view = (await clinic.client.get(f"{API}/work-types", headers=clinic.patient())).json()
    assert ids(patient_view) == [online["id"]]


async def test_each_facility_lists_only_its_own_reference_data(clinic: Clinic, other_clinic: Clinic) -> None:
    await clinic.location()
    await clinic.practitioner()
    await clinic.work_type()
    for path in ("/locations", "/practitioners", "/work-types"):
        answer = await other_clinic.client.get(API + path, headers=other_clinic.desk)
        assert answer.status_code == 200
        assert answer.json() == [], path


# ----------------------------------------------------------------------------- schedules


async def test_a_schedule_is_cut_into_slots_and_an_uneven_end_is_dropped(clinic: Clinic) -> None:
    doctor, place, work = await clinic.practitioner(), await clinic.location(), await clinic.work_type()
    answer = await clinic.schedule(doctor, place, work, start="08:00", end="09:10", visit=20)
    assert answer.status_code == 201, answer.text
    assert set(answer.json()) == {"id", "slots_created", "cer_published", "cer_specialty", "cer_covered"}
    assert answer.json()["cer_published"] is False  # an ordinary work type is not CeR-covered
    assert answer.json()["cer_covered"] is False
    assert answer.json()["slots_created"] == 3

    slots = await clinic.slots()
    assert [(s["start"], s["end"]) for s in slots] == [
        ("2030-03-04T07:00:00Z", "2030-03-04T07:20:00Z"),
        ("2030-03-04T07:20:00Z", "2030-03-04T07:40:00Z"),
        ("2030-03-04T07:40:00Z", "2030-03-04T08:00:00Z"),
    ]
    for slot in slots:
        assert slot["practitioner_id"] == doctor["id"]
        assert slot["location_id"] == place["id"]
        assert slot["work_type_id"] == work["id"]
        assert slot["status"] == "free"


async def test_a_summer_schedule_is_two_hours_ahead_of_utc(clinic: Clinic) -> None:
    doctor, place, work = await clinic.practitioner(), await clinic.location(), await clinic.work_type()
    assert (await clinic.schedule(doctor, place, work, date="2030-07-01", end="08:30", visit=30)).status_code == 201
    assert [s["start"] for s in await clinic.slots()] == ["2030-07-01T06:00:00Z"]


async def test_a_schedule_on_the_spring_forward_day_neither_fails_nor_overlaps(clinic: Clinic) -> None:
    doctor, place, work = await clinic.practitioner(), await clinic.location(), await clinic.work_type()
    answer = await clinic.schedule(doctor, place, work, date="2030-03-31", start="01:00", end="04:00", visit=30)
    assert answer.status_code == 201, answer.text
    assert answer.json()["slots_created"] == 4  # 02:00-03:00 does not exist on that night
    starts = [s["start"] for s in await clinic.slots()]
    assert starts == ["2030-03-31T00:00:00Z", "2030-03-31T00:30:00Z", "2030-03-31T01:00:00Z", "2030-03-31T01:30:00Z"]


# ----------------------------------------------------------------------------- nothing in the past

# 2030-03-04 10:30 in Warsaw (UTC+1): the DAY's 08:00-09:00 slots have started, its afternoon has not.
DURING_DAY = dt.datetime(2030, 3, 4, 9, 30, tzinfo=dt.UTC)


def stop_the_clock(client: httpx.AsyncClient, at: dt.datetime) -> None:
    transport = client._transport
    assert isinstance(transport, httpx.ASGITransport)
    transport.app.state.ctx.clock = FixedClock(at)  # type: ignore[attr-defined]


async def test_a_schedule_for_a_day_gone_by_is_refused_and_today_is_still_planned(clinic: Clinic) -> None:
    doctor, place, work = await clinic.practitioner(), await clinic.location(), await clinic.work_type()
    stop_the_clock(clinic.client, DURING_DAY)
    yesterday = await clinic.schedule(doctor, place, work, date="2030-03-03")
    body = assert_problem(yesterday, 422, "body.date")
    assert "2030-03-03 has passed" in body["detail"] and "today is 2030-03-04" in body["detail"]
    assert await clinic.slots() == []
    assert (await clinic.schedule(doctor, place, work, date=DAY, start="14:00", end="15:00")).status_code == 201


async def test_a_slot_that_has_started_cannot_be_booked(clinic: Clinic) -> None:
    doctor, place, work = await clinic.practitioner(), await clinic.location(), await clinic.work_type()
    morning = await clinic.scheduled(doctor, place, work, start="10:00", end="11:00", visit=30)
    stop_the_clock(clinic.client, DURING_DAY)  # 10:30 local: the 10:00 visit has begun, 10:30 begins now
    for slot in morning:
        assert_problem(await clinic.book(slot["id"]), 422, "body.slot_id")
    later = await clinic.scheduled(doctor, place, work, start="11:00", end="11:30", visit=30)
    assert (await clinic.book(later[0]["id"])).status_code == 201
    earliest = await clinic.client.post(
        f"{API}/bookings/earliest",
        json={"practitioner_id": doctor["id"], "start_after": "2030-03-01T00:00:00Z", "patient_pesel": OTHER_PESEL},
        headers=clinic.desk,
    )
    assert_problem(earliest, 404)  # only started visits are left: none is offered


async def test_a_schedule_overlapping_the_practitioners_slots_elsewhere_is_refused_whole(clinic: Clinic) -> None:
    doctor, work = await clinic.practitioner(), await clinic.work_type()
    centre, branch = await clinic.location("Centrum"), await clinic.location("Filia")
    assert (await clinic.schedule(doctor, centre, work, start="08:00", end="09:00")).status_code == 201

    clash = await clinic.schedule(doctor, branch, work, start="08:40", end="10:00")
    body = assert_problem(clash, 409)
    assert "overlap" in body["detail"]
    # Nothing of the refused schedule was kept, not even its slots after 09:00.
    assert len(await clinic.slots(practitioner_id=doctor["id"])) == 3


async def test_adjacent_schedules_and_colleagues_at_the_same_hour_are_fine(clinic: Clinic) -> None:
    doctor, colleague = await clinic.practitioner("Dr A"), await clinic.practitioner("Dr B")
    place, work = await clinic.location(), await clinic.work_type()
    assert (await clinic.schedule(doctor, place, work, start="08:00", end="09:00")).status_code == 201
    after = await clinic.schedule(doctor, place, work, start="09:00", end="10:00")
    assert after.status_code == 201, after.text
    before = await clinic.schedule(doctor, place, work, start="07:00", end="08:00")
    assert before.status_code == 201, before.text
    same_hour = await clinic.schedule(colleague, place, work, start="08:00", end="09:00")
    assert same_hour.status_code == 201, same_hour.text
    assert len(await clinic.slots(practitioner_id=doctor["id"])) == 9


# ----------------------------------------------------------------------------- slot search


@dataclass
class Grid:
    """Two doctors, two locations, two work types, two days of slots."""

    dr_a: dict[str, Any]
    dr_b: dict[str, Any]
    centre: dict[str, Any]
    branch: dict[str, Any]
    visit: dict[str, Any]
    control: dict[str, Any]


@pytest.fixture
async def grid(clinic: Clinic) -> Grid:
    g = Grid(
        dr_a=await clinic.practitioner("Dr A"),
        dr_b=await clinic.practitioner("Dr B"),
        centre=await clinic.location("Centrum"),
        branch=await clinic.location("Filia"),
        visit=await clinic.work_type("Visit"),
        control=await clinic.work_type("Control", visible_online=False),
    )
    # Dr A: Centrum visits on DAY 08:00-09:00, Filia controls on NEXT_DAY 08:00-09:00.
    await clinic.scheduled(g.dr_a, g.centre, g.visit, date=DAY)
    await clinic.scheduled(g.dr_a, g.branch, g.control, date=NEXT_DAY)
    # Dr B: Centrum controls on DAY 10:00-11:00.
    await clinic.scheduled(g.dr_b, g.centre, g.control, date=DAY, start="10:00", end="11:00")
    return g


async def test_slots_are_filtered_by_practitioner_location_and_work_type(clinic: Clinic, grid: Grid) -> None:
    assert len(await clinic.slots()) == 9
    by_a = await clinic.slots(practitioner_id=grid.dr_a["id"])
    assert len(by_a) == 6
    assert {s["practitioner_id"] for s in by_a} == {grid.dr_a["id"]}
    at_centre = await clinic.slots(location_id=grid.centre["id"])
    assert len(at_centre) == 6
    assert {s["location_id"] for s in at_centre} == {grid.centre["id"]}
    controls = await clinic.slots(work_type_id=grid.control["id"])
    assert len(controls) == 6
    assert {s["work_type_id"] for s in controls} == {grid.control["id"]}
    combined = await clinic.slots(
        practitioner_id=grid.dr_a["id"], location_id=grid.branch["id"], work_type_id=grid.control["id"]
    )
    assert [s["start"] for s in combined] == [
        "2030-03-05T07:00:00Z",
        "2030-03-05T07:20:00Z",
        "2030-03-05T07:40:00Z",
    ]
    assert await clinic.slots(practitioner_id=grid.dr_b["id"], location_id=grid.branch["id"]) == []


async def test_slots_are_filtered_by_inclusive_local_dates(clinic: Clinic, grid: Grid) -> None:
    first_day = await clinic.slots(date_from=DAY, date_to=DAY)
    assert len(first_day) == 6
    assert all(s["start"].startswith("2030-03-04") for s in first_day)
    assert len(await clinic.slots(date_from=NEXT_DAY)) == 3
    assert len(await clinic.slots(date_to=DAY)) == 6
    assert len(await clinic.slots(date_from=DAY, date_to=NEXT_DAY)) == 9
    assert await clinic.slots(date_from="2030-03-06") == []
    assert await clinic.slots(date_to="2030-03-03") == []
    # The answer is ordered by start time.
    starts = [s["start"] for s in await clinic.slots()]
    assert starts == sorted(starts)


async def test_a_day_filter_means_the_local_day_not_the_utc_day(clinic: Clinic) -> None:
    doctor, place, work = await clinic.practitioner(), await clinic.location(), await clinic.work_type()
    # 00:00-00:30 in Warsaw on 5 March is still 4 March in UTC.
    await clinic.scheduled(doctor, place, work, date=NEXT_DAY, start="00:00", end="00:30", visit=30)
    slots = await clinic.slots(date_from=NEXT_DAY, date_to=NEXT_DAY)
    assert [s["start"] for s in slots] == ["2030-03-04T23:00:00Z"]
    assert await clinic.slots(date_from=DAY, date_to=DAY) == []


async def test_slots_are_filtered_by_status(clinic: Clinic, grid: Grid) -> None:
    slots = await clinic.slots(practitioner_id=grid.dr_a["id"], date_from=DAY, date_to=DAY)
    await clinic.booked(slots[1]["id"])
    booked = await clinic.slots(status="booked")
    assert ids(booked) == [slots[1]["id"]]
    assert booked[0]["status"] == "booked"
    free = await clinic.slots(status="free")
    assert len(free) == 8
    assert slots[1]["id"] not in ids(free)
    assert {s["status"] for s in free} == {"free"}
    everything = {s["id"]: s["status"] for s in await clinic.slots()}
    assert everything[slots[1]["id"]] == "booked"


async def test_the_number_of_slots_answered_can_be_limited(clinic: Clinic, grid: Grid) -> None:
    first_two = await clinic.slots(limit=2)
    assert ids(first_two) == ids(await clinic.slots())[:2]


# ----------------------------------------------------------------------------- bookings


@pytest.fixture
async def day_slots(clinic: Clinic) -> list[dict[str, Any]]:
    doctor, place, work = await clinic.practitioner(), await clinic.location(), await clinic.work_type()
    return await clinic.scheduled(doctor, place, work)


async def test_a_booking_takes_a_free_slot(clinic: Clinic, day_slots: list[dict[str, Any]]) -> None:
    answer = await clinic.book(day_slots[0]["id"], PESEL, "desk")
    assert answer.status_code == 201, answer.text
    booking = answer.json()
    assert booking["slot_id"] == day_slots[0]["id"]
    assert booking["status"] == "booked"
    assert booking["source"] == "desk"
    assert booking["patient_pesel"] == PESEL
    assert booking["start"] == "2030-03-04T07:00:00Z"
    assert await clinic.booking(booking["id"]) == booking


@pytest.mark.parametrize("source", ["desk", "portal", "cer_ikp", "cer_other_entity", "cer_waiting_list"])
async def test_every_booking_source_is_accepted(clinic: Clinic, day_slots: list[dict[str, Any]], source: str) -> None:
    answer = await clinic.book(day_slots[0]["id"], PESEL, source)
    assert answer.status_code == 201, answer.text
    assert answer.json()["source"] == source


async def test_a_taken_slot_cannot_be_booked_by_another_patient(
    clinic: Clinic, day_slots: list[dict[str, Any]]
) -> None:
    first = await clinic.booked(day_slots[0]["id"], PESEL)
    second = await clinic.book(day_slots[0]["id"], OTHER_PESEL)
    body = assert_problem(second, 409)
    assert "already booked" in body["detail"]
    assert ids(await clinic.slots(status="booked")) == [day_slots[0]["id"]]
    assert (await clinic.booking(first["id"]))["patient_pesel"] == PESEL


async def test_a_cancelled_booking_frees_the_slot_for_the_next_patient(
    clinic: Clinic, day_slots: list[dict[str, Any]]
) -> None:
    slot_id = day_slots[0]["id"]
    first = await clinic.booked(slot_id, PESEL)
    cancel = await clinic.client.post(f"{API}/bookings/{first['id']}/cancel", headers=clinic.desk)
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["id"] == first["id"]
    assert cancel.json()["status"] == "cancelled"
    assert slot_id in ids(await clinic.slots(status="free"))
    assert (await clinic.booking(first["id"]))["status"] == "cancelled"

    second = await clinic.booked(slot_id, OTHER_PESEL)
    assert second["id"] != first["id"]
    assert ids(await clinic.slots(status="booked")) == [slot_id]


async def test_cancelling_twice_changes_nothing_the_second_time(
    clinic: Clinic, day_slots: list[dict[str, Any]]
) -> None:
    booking = await clinic.booked(day_slots[0]["id"])
    url = f"{API}/bookings/{booking['id']}/cancel"
    assert (await clinic.client.post(url, headers=clinic.desk)).json()["status"] == "cancelled"
    # The slot is rebooked by someone else; a late second cancel must not free it.
    rebooked = await clinic.booked(day_slots[0]["id"], OTHER_PESEL)
    again = await clinic.client.post(url, headers=clinic.desk)
    assert again.status_code == 200
    assert again.json()["status"] == "cancelled"
    assert (await clinic.booking(rebooked["id"]))["status"] == "booked"
    assert ids(await clinic.slots(status="booked")) == [day_slots[0]["id"]]


# ----------------------------------------------------------------------------- duty practitioner


async def test_each_location_has_exactly_one_duty_practitioner(clinic: Clinic) -> None:
    place = await clinic.location()
    first, second = await clinic.practitioner("Dr A"), await clinic.practitioner("Dr B")
    url = f"{API}/locations/{place['id']}/duty-practitioner"
    answer = await clinic.client.put(url, json={"practitioner_id": first["id"]}, headers=clinic.desk)
    assert answer.status_code == 200, answer.text
    assert answer.json()["duty_practitioner_id"] == first["id"]
    replaced = await clinic.client.put(url, json={"practitioner_id": second["id"]}, headers=clinic.admin)
    assert replaced.status_code == 200
    shown = await clinic.client.get(f"{API}/locations/{place['id']}", headers=clinic.desk)
    assert shown.json()["duty_practitioner_id"] == second["id"]


async def test_a_duty_practitioner_must_exist_in_the_facility(clinic: Clinic, other_clinic: Clinic) -> None:
    place = await clinic.location()
    stranger = await other_clinic.practitioner()
    url = f"{API}/locations/{place['id']}/duty-practitioner"
    answer = await clinic.client.put(url, json={"practitioner_id": stranger["id"]}, headers=clinic.desk)
    assert_problem(answer, 422, "body.practitioner_id")
    unknown = await clinic.client.put(
        f"{API}/locations/{stranger['id']}/duty-practitioner",
        json={"practitioner_id": stranger["id"]},
        headers=clinic.desk,
    )
    assert_problem(unknown, 404)
    shown = await clinic.client.get(f"{API}/locations/{place['id']}", headers=clinic.desk)
    assert shown.json()["duty_practitioner_id"] is None


# ----------------------------------------------------------------------------- absences


@dataclass
class AbsenceSetup:
    absent: dict[str, Any]
    colleague: dict[str, Any]
    elsewhere: dict[str, Any]
    absent_slots: list[dict[str, Any]]
    colleague_slots: list[dict[str, Any]]
    elsewhere_slots: list[dict[str, Any]]
    bookings: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
async def absence(clinic: Clinic) -> AbsenceSetup:
    centre, branch, work = await clinic.location("Centrum"), await clinic.location("Filia"), await clinic.work_type()
    absent, colleague, elsewhere = [await clinic.practitioner(n) for n in ("Dr A", "Dr B", "Dr C")]
    setup = AbsenceSetup(
        absent=absent,
        colleague=colleague,
        elsewhere=elsewhere,
        absent_slots=await clinic.scheduled(absent, centre, work),
        colleague_slots=await clinic.scheduled(colleague, centre, work),
        # Dr C works at the same hours, but at another location: never a candidate.
        elsewhere_slots=await clinic.scheduled(elsewhere, branch, work),
    )
    return setup


async def test_an_absence_moves_bookings_to_a_free_colleague_or_flags_them(
    clinic: Clinic, absence: AbsenceSetup
) -> None:
    movable = await clinic.booked(absence.absent_slots[0]["id"], PESEL)
    stuck = await clinic.booked(absence.absent_slots[1]["id"], OTHER_PESEL)
    # The colleague's 08:20 slot is taken, so the 08:20 booking has nowhere to go.
    await clinic.booked(absence.colleague_slots[1]["id"], PESEL)

    answer = await clinic.client.post(
        f"{API}/practitioners/{absence.absent['id']}/absences",
        json={"date_from": DAY, "date_to": DAY},
        headers=clinic.desk,
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["reassigned"] == [{"booking_id": movable["id"], "new_slot_id": absence.colleague_slots[0]["id"]}]
    assert result["needs_rescheduling"] == [stuck["id"]]

    moved = await clinic.booking(movable["id"])
    assert moved["slot_id"] == absence.colleague_slots[0]["id"]
    assert moved["status"] == "booked"
    assert moved["start"] == "2030-03-04T07:00:00Z"
    assert (await clinic.booking(stuck["id"]))["status"] == "needs_rescheduling"

    # The absent practitioner's slots are offered to nobody any more, not even the freed one.
    absent_now = await clinic.slots(practitioner_id=absence.absent["id"])
    assert {s["status"] for s in absent_now} == {"unavailable"}
    free_now = ids(await clinic.slots(status="free"))
    assert not set(ids(absence.absent_slots)) & set(free_now)
    assert absence.colleague_slots[0]["id"] not in free_now
    assert set(ids(absence.elsewhere_slots)) <= set(free_now)
    refused = await clinic.book(absence.absent_slots[0]["id"], OTHER_PESEL)
    assert_problem(refused, 409)


async def test_an_absence_with_no_colleague_flags_every_booking(clinic: Clinic) -> None:
    doctor, place, work = await clinic.practitioner(), await clinic.location(), await clinic.work_type()
    other_work = await clinic.work_type("Control")
    colleague = await clinic.practitioner("Dr B")
    slots = await clinic.scheduled(doctor, place, work)
    # A colleague at the same place and time, but for another kind of work: not a substitute.
    await clinic.scheduled(colleague, place, other_work)
    booking = await clinic.booked(slots[2]["id"])
    answer = await clinic.client.post(
        f"{API}/practitioners/{doctor['id']}/absences", json={"date_from": DAY, "date_to": DAY}, headers=clinic.desk
    )
    assert answer.json() == {"reassigned": [], "needs_rescheduling": [booking["id"]]}


async def test_an_absence_leaves_the_days_outside_it_alone(clinic: Clinic) -> None:
    doctor, place, work = await clinic.practitioner(), await clinic.location(), await clinic.work_type()
    await clinic.scheduled(doctor, place, work, date=DAY)
    later = await clinic.scheduled(doctor, place, work, date=NEXT_DAY)
    booking = await clinic.booked(later[0]["id"])
    answer = await clinic.client.post(
        f"{API}/practitioners/{doctor['id']}/absences", json={"date_from": DAY, "date_to": DAY}, headers=clinic.desk
    )
    assert answer.json() == {"reassigned": [], "needs_rescheduling": []}
    assert (await clinic.booking(booking["id"]))["status"] == "booked"
    assert len(await clinic.slots(status="free", date_from=NEXT_DAY)) == 2
    assert {s["status"] for s in await clinic.slots(date_from=DAY, date_to=DAY)} == {"unavailable"}
    assert len(await clinic.slots(status="unavailable")) == 3


async def test_two_bookings_never_move_to_the_same_colleague_slot(clinic: Clinic) -> None:
    place, work = await clinic.location(), await clinic.work_type()
    first_absent, second_absent, colleague = [await clinic.practitioner(n) for n in ("Dr A", "Dr B", "Dr C")]
    a_slots = await clinic.scheduled(first_absent, place, work, end="08:20")
    b_slots = await clinic.scheduled(second_absent, place, work, end="08:20")
    c_slots = await clinic.scheduled(colleague, place, work, end="08:20")
    on_a = await clinic.booked(a_slots[0]["id"], PESEL)
    on_b = await clinic.booked(b_slots[0]["id"], OTHER_PESEL)
    url = f"{API}/practitioners/{{}}/absences"
    body = {"date_from": DAY, "date_to": DAY}
    first = (await clinic.client.post(url.format(first_absent["id"]), json=body, headers=clinic.desk)).json()
    second = (await clinic.client.post(url.format(second_absent["id"]), json=body, headers=clinic.desk)).json()
    assert first["reassigned"] == [{"booking_id": on_a["id"], "new_slot_id": c_slots[0]["id"]}]
    assert second == {"reassigned": [], "needs_rescheduling": [on_b["id"]]}


# ----------------------------------------------------------------------------- patients


@dataclass
class PatientView:
    online_slots: list[dict[str, Any]]
    desk_only_slots: list[dict[str, Any]]


@pytest.fixture
async def patient_view(clinic: Clinic) -> PatientView:
    place = await clinic.location()
    online, desk_only = await clinic.work_type("Visit"), await clinic.work_type("Control", visible_online=False)
    doctor, colleague = await clinic.practitioner("Dr A"), await clinic.practitioner("Dr B")
    return PatientView(
        online_slots=await clinic.scheduled(doctor, place, online),
        desk_only_slots=await clinic.scheduled(colleague, place, desk_only),
    )


async def test_a_patient_sees_only_free_slots_of_work_offered_online(clinic: Clinic, patient_view: PatientView) -> None:
    await clinic.booked(patient_view.online_slots[0]["id"], OTHER_PESEL)
    expected = ids(patient_view.online_slots[1:])
    assert ids(await clinic.slots(headers=clinic.patient())) == expected
    # Asking for booked slots or for the desk-only work does not widen the view.
    assert ids(await clinic.slots(headers=clinic.patient(), status="booked")) == expected
    desk_only = patient_view.desk_only_slots[0]["work_type_id"]
    assert await clinic.slots(headers=clinic.patient(), work_type_id=desk_only) == []


async def test_a_patient_books_for_themself_through_the_portal(clinic: Clinic, patient_view: PatientView) -> None:
    answer = await clinic.book(patient_view.online_slots[0]["id"], PESEL, "portal", headers=clinic.patient())
    assert answer.status_code == 201, answer.text
    assert answer.json()["patient_pesel"] == PESEL
    assert answer.json()["source"] == "portal"
    mine = await clinic.client.get(f"{API}/bookings/{answer.json()['id']}", headers=clinic.patient())
    assert mine.status_code == 200


async def test_a_patient_cannot_book_for_someone_else(clinic: Clinic, patient_view: PatientView) -> None:
    answer = await clinic.book(patient_view.online_slots[0]["id"], OTHER_PESEL, "portal", headers=clinic.patient())
    assert_problem(answer, 403)
    assert await clinic.slots(status="booked") == []


async def test_a_patient_books_only_through_the_portal(clinic: Clinic, patient_view: PatientView) -> None:
    answer = await clinic.book(patient_view.online_slots[0]["id"], PESEL, "desk", headers=clinic.patient())
    assert_problem(answer, 422, "body.source")
    assert await clinic.slots(status="booked") == []


async def test_a_patient_cannot_book_work_not_offered_online(clinic: Clinic, patient_view: PatientView) -> None:
    answer = await clinic.book(patient_view.desk_only_slots[0]["id"], PESEL, "portal", headers=clinic.patient())
    assert_problem(answer, 422, "body.slot_id")
    assert await clinic.slots(status="booked") == []


async def test_a_patient_cancels_only_their_own_booking(clinic: Clinic, patient_view: PatientView) -> None:
    mine = await clinic.booked(patient_view.online_slots[0]["id"], PESEL)
    theirs = await clinic.booked(patient_view.online_slots[1]["id"], OTHER_PESEL)
    me = clinic.patient(PESEL)

    refused = await clinic.client.post(f"{API}/bookings/{theirs['id']}/cancel", headers=me)
    assert_problem(refused, 404)
    hidden = await clinic.client.get(f"{API}/bookings/{theirs['id']}", headers=me)
    assert_problem(hidden, 404)
    assert (await clinic.booking(theirs["id"]))["status"] == "booked"

    cancelled = await clinic.client.post(f"{API}/bookings/{mine['id']}/cancel", headers=me)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/locations", {"name": "X"}),
        ("POST", "/practitioners", {"name": "X", "npwz": "5425740", "profession": "doctor"}),
        ("POST", "/work-types", {"name": "X"}),
    ],
)
async def test_a_patient_cannot_change_reference_data(
    clinic: Clinic, method: str, path: str, body: dict[str, Any]
) -> None:
    answer = await clinic.client.request(method, API + path, json=body, headers=clinic.patient())
    assert_problem(answer, 403)


# ----------------------------------------------------------------------------- roles


@pytest.mark.parametrize(
    ("role", "allowed"),
    [("facility_admin", True), ("registrar", True), ("practitioner", False), ("partner", False)],
)
async def test_only_staff_publish_schedules(clinic: Clinic, role: str, allowed: bool) -> None:
    doctor, place, work = await clinic.practitioner(), await clinic.location(), await clinic.work_type()
    body = {
        "practitioner_id": doctor["id"],
        "location_id": place["id"],
        "work_type_id": work["id"],
        "date": DAY,
        "start_time": "08:00",
        "end_time": "09:00",
        "visit_minutes": 20,
    }
    answer = await clinic.client.post(f"{API}/schedules", json=body, headers=clinic.auth(role))
    if allowed:
        assert answer.status_code == 201, answer.text
    else:
        assert_problem(answer, 403)
        assert await clinic.slots() == []


async def test_a_practitioner_reads_slots_but_cannot_book(clinic: Clinic, day_slots: list[dict[str, Any]]) -> None:
    practitioner = clinic.auth("practitioner")
    assert len(await clinic.slots(headers=practitioner)) == 3
    assert_problem(await clinic.book(day_slots[0]["id"], headers=practitioner), 403)


async def test_a_partner_books_on_behalf_of_the_facility(clinic: Clinic, day_slots: list[dict[str, Any]]) -> None:
    answer = await clinic.book(day_slots[0]["id"], PESEL, "cer_other_entity", headers=clinic.auth("partner"))
    assert answer.status_code == 201, answer.text


# ----------------------------------------------------------------------------- booking filters


async def test_bookings_are_filtered_by_patient_practitioner_slot_and_local_day(clinic: Clinic) -> None:
    place, work = await clinic.location(), await clinic.work_type()
    first, second = await clinic.practitioner("Dr A"), await clinic.practitioner("Dr B")
    monday = await clinic.scheduled(first, place, work, start="08:00", end="08:40", visit=20)
    tuesday = await clinic.scheduled(second, place, work, date=NEXT_DAY, start="08:00", end="08:20", visit=20)
    mine = await clinic.booked(monday[0]["id"])
    theirs = await clinic.booked(monday[1]["id"], OTHER_PESEL)
    later = await clinic.booked(tuesday[0]["id"])

    async def listed(**params: Any) -> list[str]:
        answer = await clinic.client.get(f"{API}/bookings", params=params, headers=clinic.desk)
        assert answer.status_code == 200, answer.text
        return [b["id"] for b in answer.json()]

    assert await listed(patient_pesel=PESEL) == [mine["id"], later["id"]]
    assert await listed(practitioner_id=first["id"]) == [mine["id"], theirs["id"]]
    assert await listed(slot_id=monday[1]["id"]) == [theirs["id"]]
    assert await listed(date_from=NEXT_DAY) == [later["id"]]
    assert await listed(date_to=DAY) == [mine["id"], theirs["id"]]
    assert await listed(date_from=DAY, date_to=DAY, patient_pesel=OTHER_PESEL) == [theirs["id"]]


async def test_an_unknown_or_bad_booking_filter_is_refused_not_ignored(clinic: Clinic) -> None:
    unknown = await clinic.client.get(f"{API}/bookings", params={"slot": "x", "pesel": "1"}, headers=clinic.desk)
    body = assert_problem(unknown, 422, "query.pesel")
    assert {e["field"] for e in body["errors"]} == {"query.pesel", "query.slot"}
    assert_problem(
        await clinic.client.get(f"{API}/bookings", params={"patient_pesel": "44051401358"}, headers=clinic.desk),
        422,
        "query.patient_pesel",
    )
    backwards = await clinic.client.get(
        f"{API}/bookings", params={"date_from": NEXT_DAY, "date_to": DAY}, headers=clinic.desk
    )
    assert_problem(backwards, 422, "query.date_to")
    assert_problem(
        await clinic.client.get(f"{API}/slots", params={"practitioner": "x"}, headers=clinic.desk),
        422,
        "query.practitioner",
    )

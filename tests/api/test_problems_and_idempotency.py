"""Bad input, auth and tenant errors as problem+json; body limits; Idempotency-Key; request ids."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from shared.auth import Claims, Role, issue_token
from shared.settings import Settings
from tests.api.test_scheduling_api import API, DAY, PROBLEM, Clinic, assert_problem
from tests.conftest import OTHER_FACILITY, OTHER_PESEL, PESEL, running_client

Headers = dict[str, str]


@dataclass
class Ids:
    practitioner: str
    location: str
    work_type: str
    slots: list[str]


@pytest.fixture
def clinic(scheduling_client: httpx.AsyncClient, auth: Callable[..., Headers]) -> Clinic:
    return Clinic(scheduling_client, auth)


@pytest.fixture
def other_clinic(scheduling_client: httpx.AsyncClient, auth: Callable[..., Headers]) -> Clinic:
    return Clinic(scheduling_client, auth, facility=OTHER_FACILITY, _npwz_seed=500_000)


@pytest.fixture
async def known(clinic: Clinic) -> Ids:
    doctor, place, work = await clinic.practitioner(), await clinic.location(), await clinic.work_type()
    slots = await clinic.scheduled(doctor, place, work)
    return Ids(doctor["id"], place["id"], work["id"], [s["id"] for s in slots])


def schedule_body(ids: Ids, **changes: Any) -> dict[str, Any]:
    body = {
        "practitioner_id": ids.practitioner,
        "location_id": ids.location,
        "work_type_id": ids.work_type,
        "date": "2030-03-06",
        "start_time": "08:00",
        "end_time": "09:00",
        "visit_minutes": 20,
    }
    body.update(changes)
    return body


def booking_body(ids: Ids, **changes: Any) -> dict[str, Any]:
    return {"slot_id": ids.slots[0], "patient_pesel": PESEL, "source": "desk", **changes}


UNKNOWN = str(uuid.uuid4())

# (id, path, body builder, status, the field the errors list must name)
BAD_BODIES: list[tuple[str, str, Callable[[Ids], Any], int, str]] = [
    ("bad pesel", "/bookings", lambda i: booking_body(i, patient_pesel="44051401358"), 422, "body.patient_pesel"),
    ("short pesel", "/bookings", lambda i: booking_body(i, patient_pesel="4405140135"), 422, "body.patient_pesel"),
    (
        "letters in pesel",
        "/bookings",
        lambda i: booking_body(i, patient_pesel="4405140135X"),
        422,
        "body.patient_pesel",
    ),
    ("pesel as number", "/bookings", lambda i: booking_body(i, patient_pesel=44051401359), 422, "body.patient_pesel"),
    ("unknown slot", "/bookings", lambda i: booking_body(i, slot_id=UNKNOWN), 422, "body.slot_id"),
    ("slot not a uuid", "/bookings", lambda i: booking_body(i, slot_id="slot-1"), 422, "body.slot_id"),
    ("unknown source", "/bookings", lambda i: booking_body(i, source="phone"), 422, "body.source"),
    ("missing slot", "/bookings", lambda i: {"patient_pesel": PESEL}, 422, "body.slot_id"),
    ("extra field", "/bookings", lambda i: booking_body(i, note="hi"), 422, "body.note"),
    (
        "bad npwz",
        "/practitioners",
        lambda i: {"name": "Dr X", "npwz": "5425741", "profession": "doctor"},
        422,
        "body.npwz",
    ),
    (
        "npwz check digit 0",
        "/practitioners",
        lambda i: {"name": "Dr X", "npwz": "0000000", "profession": "doctor"},
        422,
        "body.npwz",
    ),
    (
        "unknown profession",
        "/practitioners",
        lambda i: {"name": "Dr X", "npwz": "5425740", "profession": "surgeon"},
        422,
        "body.profession",
    ),
    (
        "name too long",
        "/practitioners",
        lambda i: {"name": "N" * 201, "npwz": "5425740", "profession": "doctor"},
        422,
        "body.name",
    ),
    ("empty name", "/locations", lambda i: {"name": ""}, 422, "body.name"),
    ("blank name", "/locations", lambda i: {"name": "   "}, 422, "body.name"),
    ("location name too long", "/locations", lambda i: {"name": "L" * 201}, 422, "body.name"),
    (
        "bad department code",
        "/locations",
        lambda i: {"name": "L", "department_code": "12a4"},
        422,
        "body.department_code",
    ),
    ("extra location field", "/locations", lambda i: {"name": "L", "colour": "red"}, 422, "body.colour"),
    ("work type name too long", "/work-types", lambda i: {"name": "W" * 201}, 422, "body.name"),
    (
        "bad cer specialty",
        "/work-types",
        lambda i: {"name": "W", "cer_specialty": "dentistry"},
        422,
        "body.cer_specialty",
    ),
    ("end before start", "/schedules", lambda i: schedule_body(i, start_time="10:00", end_time="09:00"), 422, "body"),
    ("end equals start", "/schedules", lambda i: schedule_body(i, start_time="10:00", end_time="10:00"), 422, "body"),
    (
        "shorter than a visit",
        "/schedules",
        lambda i: schedule_body(i, start_time="08:00", end_time="08:10"),
        422,
        "body.end_time",
    ),
    ("visit too short", "/schedules", lambda i: schedule_body(i, visit_minutes=4), 422, "body.visit_minutes"),
    ("visit too long", "/schedules", lambda i: schedule_body(i, visit_minutes=481), 422, "body.visit_minutes"),
    ("bad date", "/schedules", lambda i: schedule_body(i, date="2030-02-30"), 422, "body.date"),
    ("bad time", "/schedules", lambda i: schedule_body(i, start_time="25:00"), 422, "body.start_time"),
    ("time with offset", "/schedules", lambda i: schedule_body(i, start_time="08:00+02:00"), 422, "body.start_time"),
    ("time in UTC", "/schedules", lambda i: schedule_body(i, end_time="09:00Z"), 422, "body.end_time"),
    ("time as seconds", "/schedules", lambda i: schedule_body(i, start_time=0), 422, "body.start_time"),
    (
        "unknown practitioner",
        "/schedules",
        lambda i: schedule_body(i, practitioner_id=UNKNOWN),
        422,
        "body.practitioner_id",
    ),
    ("unknown location", "/schedules", lambda i: schedule_body(i, location_id=UNKNOWN), 422, "body.location_id"),
    ("unknown work type", "/schedules", lambda i: schedule_body(i, work_type_id=UNKNOWN), 422, "body.work_type_id"),
    ("a list, not an object", "/locations", lambda i: [{"name": "L"}], 422, "body"),
]


@pytest.mark.parametrize(
    ("path", "build", "status", "field"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES]
)
async def test_bad_input_is_a_problem_naming_the_field(
    clinic: Clinic, known: Ids, path: str, build: Callable[[Ids], Any], status: int, field: str
) -> None:
    answer = await clinic.client.post(API + path, json=build(known), headers=clinic.admin)
    body = assert_problem(answer, status, field)
    assert body["detail"]
    assert body["instance"] == API + path
    assert await clinic.slots(status="booked") == []
    assert len(await clinic.slots()) == 3


async def test_an_end_before_the_start_says_so(clinic: Clinic, known: Ids) -> None:
    answer = await clinic.client.post(
        f"{API}/schedules", json=schedule_body(known, start_time="10:00", end_time="09:00"), headers=clinic.desk
    )
    body = assert_problem(answer, 422, "body")
    assert "end_time must be after start_time" in body["detail"]


async def test_an_absence_ending_before_it_starts_is_refused(clinic: Clinic, known: Ids) -> None:
    answer = await clinic.client.post(
        f"{API}/practitioners/{known.practitioner}/absences",
        json={"date_from": "2030-03-05", "date_to": "2030-03-04"},
        headers=clinic.desk,
    )
    body = assert_problem(answer, 422, "body")
    assert "date_to" in body["detail"]
    assert {s["status"] for s in await clinic.slots()} == {"free"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"practitioner_id": "dr-a"}, "query.practitioner_id"),
        ({"location_id": "12"}, "query.location_id"),
        ({"work_type_id": "x"}, "query.work_type_id"),
        ({"date_from": "04.03.2030"}, "query.date_from"),
        ({"date_to": "2030-13-01"}, "query.date_to"),
        ({"date_from": "2030-03-05", "date_to": "2030-03-04"}, "query.date_to"),
        ({"status": "taken"}, "query.status"),
        ({"limit": "0"}, "query.limit"),
        ({"limit": "2001"}, "query.limit"),
    ],
)
async def test_bad_slot_queries_name_the_parameter(clinic: Clinic, params: dict[str, str], field: str) -> None:
    answer = await clinic.client.get(f"{API}/slots", params=params, headers=clinic.desk)
    assert_problem(answer, 422, field)


async def test_an_npwz_query_longer_than_any_npwz_is_refused(clinic: Clinic) -> None:
    answer = await clinic.client.get(f"{API}/practitioners", params={"npwz": "123456789"}, headers=clinic.desk)
    assert_problem(answer, 422, "query.npwz")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/bookings/{id}"),
        ("POST", "/bookings/{id}/cancel"),
        ("GET", "/locations/{id}"),
    ],
)
async def test_unknown_ids_in_the_path_are_404(clinic: Clinic, method: str, path: str) -> None:
    answer = await clinic.client.request(method, API + path.format(id=UNKNOWN), headers=clinic.admin)
    assert_problem(answer, 404)


async def test_unknown_practitioner_or_location_in_the_path_is_404(clinic: Clinic, known: Ids) -> None:
    absence = await clinic.client.post(
        f"{API}/practitioners/{UNKNOWN}/absences", json={"date_from": DAY, "date_to": DAY}, headers=clinic.desk
    )
    assert_problem(absence, 404)
    duty = await clinic.client.put(
        f"{API}/locations/{UNKNOWN}/duty-practitioner",
        json={"practitioner_id": known.practitioner},
        headers=clinic.desk,
    )
    assert_problem(duty, 404)


async def test_a_malformed_id_in_the_path_names_it(clinic: Clinic) -> None:
    answer = await clinic.client.get(f"{API}/bookings/not-a-uuid", headers=clinic.desk)
    assert_problem(answer, 422, "path.booking_id")


async def test_an_unknown_endpoint_and_a_wrong_method_are_problems(clinic: Clinic) -> None:
    assert_problem(await clinic.client.get(f"{API}/nothing-here", headers=clinic.desk), 404)
    assert_problem(await clinic.client.delete(f"{API}/locations", headers=clinic.desk), 405)


# ----------------------------------------------------------------------------- malformed and oversized bodies


@pytest.mark.parametrize(
    "raw",
    [b'{"name": "Centrum"', b"name=Centrum", b'{"name": "Centrum",}', b"\xff\xfe", b"{'name': 'x'}"],
)
async def test_malformed_json_is_400(clinic: Clinic, raw: bytes) -> None:
    answer = await clinic.client.post(
        f"{API}/locations", content=raw, headers={**clinic.admin, "content-type": "application/json"}
    )
    assert_problem(answer, 400)
    assert (await clinic.client.get(f"{API}/locations", headers=clinic.desk)).json() == []


async def test_an_empty_body_is_refused(clinic: Clinic) -> None:
    answer = await clinic.client.post(
        f"{API}/locations", content=b"", headers={**clinic.admin, "content-type": "application/json"}
    )
    assert_problem(answer, 422, "body")


async def test_a_body_over_one_mebibyte_is_413(clinic: Clinic) -> None:
    big = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    answer = await clinic.client.post(
        f"{API}/locations", content=big, headers={**clinic.admin, "content-type": "application/json"}
    )
    assert_problem(answer, 413)
    assert (await clinic.client.get(f"{API}/locations", headers=clinic.desk)).json() == []


async def test_a_streamed_body_without_length_is_cut_off_at_the_limit(clinic: Clinic) -> None:
    chunks_sent = 0

    async def stream() -> AsyncIterator[bytes]:
        nonlocal chunks_sent
        yield b'{"name": "'
        for _ in range(64):  # 4 MiB in all if it were read to the end
            chunks_sent += 1
            yield b"x" * 65536
        yield b'"}'

    answer = await clinic.client.post(
        f"{API}/locations", content=stream(), headers={**clinic.admin, "content-type": "application/json"}
    )
    assert_problem(answer, 413)


async def test_a_streamed_oversized_body_with_an_idempotency_key_is_413_too(clinic: Clinic, known: Ids) -> None:
    async def stream() -> AsyncIterator[bytes]:
        yield b'{"slot_id": "' + known.slots[0].encode() + b'", "patient_pesel": "' + b"4" * (2 * 1024 * 1024)
        yield b'"}'

    answer = await clinic.client.post(
        f"{API}/bookings",
        content=stream(),
        headers={**clinic.desk, "content-type": "application/json", "Idempotency-Key": "big-1"},
    )
    assert_problem(answer, 413)
    assert await clinic.slots(status="booked") == []


async def test_a_body_just_under_the_limit_is_read(clinic: Clinic) -> None:
    # Under 1 MiB reaches validation, which then refuses the too-long name: 422, not 413.
    body = b'{"name": "' + b"x" * (1024 * 1024 - 100) + b'"}'
    answer = await clinic.client.post(
        f"{API}/locations", content=body, headers={**clinic.admin, "content-type": "application/json"}
    )
    assert_problem(answer, 422, "body.name")


# ----------------------------------------------------------------------------- never a 500

ODD_VALUES: list[Any] = [
    None,
    0,
    -1,
    10**30,
    1.5,
    True,
    "",
    " ",
    "x" * 5000,
    "\u0000",
    "😀" * 3,
    "'; DROP TABLE slots; --",
    [],
    {},
    {"$gt": ""},
    ["a", 1],
]


async def test_odd_values_in_any_field_never_cause_a_500(clinic: Clinic, known: Ids) -> None:
    cases: list[tuple[str, dict[str, Any]]] = []
    for key in schedule_body(known):
        cases += [("/schedules", schedule_body(known, **{key: value})) for value in ODD_VALUES]
    for key in booking_body(known):
        cases += [("/bookings", booking_body(known, **{key: value})) for value in ODD_VALUES]
    for key in ("name", "npwz", "profession", "poz"):
        base = {"name": "Dr X", "npwz": "5425740", "profession": "doctor", "poz": False}
        cases += [("/practitioners", {**base, key: value}) for value in ODD_VALUES]
    statuses = set()
    for path, body in cases:
        answer = await clinic.client.post(API + path, json=body, headers=clinic.admin)
        statuses.add(answer.status_code)
        assert answer.status_code < 500, (path, body, answer.text)
        if answer.status_code >= 400:
            assert answer.headers["content-type"] == PROBLEM, answer.text
    assert 422 in statuses


# ----------------------------------------------------------------------------- auth and roles


async def test_no_token_is_401(clinic: Clinic, known: Ids) -> None:
    for method, path in (("GET", "/slots"), ("POST", "/bookings"), ("GET", "/locations")):
        answer = await clinic.client.request(method, API + path, json=booking_body(known))
        body = assert_problem(answer, 401)
        assert "Bearer" in body["detail"]


@pytest.mark.parametrize("value", ["Bearer not-a-jwt", "Basic dXNlcjpwYXNz", "Bearer", "bearer a.b.c"])
async def test_a_bad_token_is_401(clinic: Clinic, value: str) -> None:
    assert_problem(await clinic.client.get(f"{API}/slots", headers={"Authorization": value}), 401)


async def test_an_expired_token_is_401(clinic: Clinic, settings: Settings) -> None:
    # Expired longer ago than the clock-skew leeway every verifier grants.
    stale = settings.model_copy(update={"jwt_ttl_seconds": -(settings.jwt_leeway_seconds + 5)})
    token = issue_token(Claims(sub="desk", role=Role.registrar, facility_id="clinic-a"), stale)
    answer = await clinic.client.get(f"{API}/slots", headers={"Authorization": f"Bearer {token}"})
    body = assert_problem(answer, 401)
    assert "expired" in body["detail"]


@pytest.mark.parametrize(
    ("role", "method", "path"),
    [
        ("registrar", "POST", "/locations"),
        ("registrar", "POST", "/practitioners"),
        ("practitioner", "POST", "/work-types"),
        ("practitioner", "POST", "/schedules"),
        ("practitioner", "POST", "/bookings"),
        ("practitioner", "PUT", "/locations/{location}/duty-practitioner"),
        ("partner", "POST", "/practitioners/{practitioner}/absences"),
        ("patient", "POST", "/practitioners/{practitioner}/absences"),
        ("pharmacist", "GET", "/slots"),
        ("pharmacist", "POST", "/bookings"),
    ],
)
async def test_a_wrong_role_is_403(clinic: Clinic, known: Ids, role: str, method: str, path: str) -> None:
    url = API + path.format(location=known.location, practitioner=known.practitioner)
    answer = await clinic.client.request(method, url, json={}, headers=clinic.auth(role))
    body = assert_problem(answer, 403)
    assert role in body["detail"]


async def test_a_patient_without_a_facility_is_refused(clinic: Clinic, known: Ids) -> None:
    token = clinic.auth("patient", facility_id=None)
    assert_problem(await clinic.client.get(f"{API}/slots", headers=token), 403)


# ----------------------------------------------------------------------------- tenants


async def test_another_facility_never_sees_nor_touches_our_rows(
    clinic: Clinic, other_clinic: Clinic, known: Ids
) -> None:
    booking = await clinic.booked(known.slots[0])
    them = other_clinic.desk

    assert await other_clinic.slots() == []
    for url in (f"{API}/bookings/{booking['id']}", f"{API}/locations/{known.location}"):
        body = assert_problem(await clinic.client.get(url, headers=them), 404)
        assert OTHER_FACILITY not in body["detail"]
        assert "another facility" not in body["detail"]
    assert_problem(await clinic.client.post(f"{API}/bookings/{booking['id']}/cancel", headers=them), 404)
    stolen = await other_clinic.book(known.slots[1], OTHER_PESEL)
    body = assert_problem(stolen, 422, "body.slot_id")
    assert "your facility" in body["errors"][0]["message"]
    absence = await clinic.client.post(
        f"{API}/practitioners/{known.practitioner}/absences", json={"date_from": DAY, "date_to": DAY}, headers=them
    )
    assert_problem(absence, 404)

    their_place = await other_clinic.location()
    their_work = await other_clinic.work_type()
    borrowed = await other_clinic.client.post(
        f"{API}/schedules",
        json={
            "practitioner_id": known.practitioner,
            "location_id": their_place["id"],
            "work_type_id": their_work["id"],
            "date": "2030-03-06",
            "start_time": "08:00",
            "end_time": "09:00",
            "visit_minutes": 20,
        },
        headers=them,
    )
    assert_problem(borrowed, 422, "body.practitioner_id")
    duty = await other_clinic.client.put(
        f"{API}/locations/{their_place['id']}/duty-practitioner",
        json={"practitioner_id": known.practitioner},
        headers=them,
    )
    assert_problem(duty, 422, "body.practitioner_id")

    # Ours is untouched by all of that.
    assert (await clinic.booking(booking["id"]))["status"] == "booked"
    assert ids_of(await clinic.slots(status="booked")) == [known.slots[0]]
    assert {s["status"] for s in await clinic.slots()} == {"booked", "free"}


def ids_of(rows: list[dict[str, Any]]) -> list[str]:
    return [row["id"] for row in rows]


# ----------------------------------------------------------------------------- idempotency


async def test_a_retry_with_the_same_key_replays_the_first_answer_and_books_once(clinic: Clinic, known: Ids) -> None:
    headers = {**clinic.desk, "Idempotency-Key": "booking-retry-1"}
    first = await clinic.client.post(f"{API}/bookings", json=booking_body(known), headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = await clinic.client.post(f"{API}/bookings", json=booking_body(known), headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["content-type"] == "application/json"
    assert ids_of(await clinic.slots(status="booked")) == [known.slots[0]]
    assert (await clinic.booking(first.json()["id"]))["status"] == "booked"


async def test_the_same_key_with_another_body_is_422(clinic: Clinic, known: Ids) -> None:
    headers = {**clinic.desk, "Idempotency-Key": "booking-retry-2"}
    assert (await clinic.client.post(f"{API}/bookings", json=booking_body(known), headers=headers)).status_code == 201
    other = await clinic.client.post(
        f"{API}/bookings", json=booking_body(known, slot_id=known.slots[1]), headers=headers
    )
    body = assert_problem(other, 422)
    assert "different request body" in body["detail"]
    assert ids_of(await clinic.slots(status="booked")) == [known.slots[0]]


async def test_a_refusal_is_replayed_too(clinic: Clinic, known: Ids) -> None:
    earlier = await clinic.booked(known.slots[0], OTHER_PESEL)
    headers = {**clinic.desk, "Idempotency-Key": "booking-retry-3"}
    first = await clinic.client.post(f"{API}/bookings", json=booking_body(known), headers=headers)
    assert_problem(first, 409)
    # The slot is freed meanwhile; the retry still tells the first story and books nothing.
    await clinic.client.post(f"{API}/bookings/{earlier['id']}/cancel", headers=clinic.desk)
    again = await clinic.client.post(f"{API}/bookings", json=booking_body(known), headers=headers)
    assert again.status_code == 409
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["content-type"] == PROBLEM
    assert await clinic.slots(status="booked") == []


async def test_concurrent_retries_with_one_key_book_once(clinic: Clinic, known: Ids) -> None:
    headers = {**clinic.desk, "Idempotency-Key": "double-click"}
    answers = await asyncio.gather(
        *(clinic.client.post(f"{API}/bookings", json=booking_body(known), headers=headers) for _ in range(4))
    )
    created = [a for a in answers if a.status_code == 201]
    assert created
    assert {a.json()["id"] for a in created} == {created[0].json()["id"]}
    for answer in answers:
        if answer.status_code != 201:
            body = assert_problem(answer, 409)
            assert body["type"].endswith("idempotency-in-progress"), body
            assert answer.headers["retry-after"] == "1"
    assert ids_of(await clinic.slots(status="booked")) == [known.slots[0]]


async def test_keys_belong_to_their_caller_and_their_endpoint(clinic: Clinic, known: Ids) -> None:
    key = {"Idempotency-Key": "shared-key"}
    mine = await clinic.client.post(f"{API}/bookings", json=booking_body(known), headers={**clinic.desk, **key})
    assert mine.status_code == 201
    colleague = clinic.auth("registrar", sub="another-desk")
    theirs = await clinic.client.post(
        f"{API}/bookings", json=booking_body(known, slot_id=known.slots[1]), headers={**colleague, **key}
    )
    assert theirs.status_code == 201, theirs.text
    assert "idempotent-replayed" not in theirs.headers
    place = await clinic.client.post(f"{API}/locations", json={"name": "Filia"}, headers={**clinic.admin, **key})
    assert place.status_code == 201
    assert len(await clinic.slots(status="booked")) == 2


async def test_without_a_key_each_post_is_its_own_request(clinic: Clinic) -> None:
    first = await clinic.client.post(f"{API}/locations", json={"name": "Filia"}, headers=clinic.admin)
    second = await clinic.client.post(f"{API}/locations", json={"name": "Filia"}, headers=clinic.admin)
    assert first.json()["id"] != second.json()["id"]


async def test_a_key_sent_without_a_token_is_not_remembered(clinic: Clinic, known: Ids) -> None:
    key = {"Idempotency-Key": "no-token-yet"}
    refused = await clinic.client.post(f"{API}/bookings", json=booking_body(known), headers=key)
    assert_problem(refused, 401)
    accepted = await clinic.client.post(f"{API}/bookings", json=booking_body(known), headers={**clinic.desk, **key})
    assert accepted.status_code == 201
    assert "idempotent-replayed" not in accepted.headers


@pytest.mark.parametrize("key", ["", "k" * 256])
async def test_an_empty_or_overlong_key_is_422(clinic: Clinic, known: Ids, key: str) -> None:
    answer = await clinic.client.post(
        f"{API}/bookings", json=booking_body(known), headers={**clinic.desk, "Idempotency-Key": key}
    )
    assert_problem(answer, 422)
    assert await clinic.slots(status="booked") == []


# ----------------------------------------------------------------------------- request ids


async def test_a_request_id_is_echoed(clinic: Clinic) -> None:
    answer = await clinic.client.get(f"{API}/locations", headers={**clinic.desk, "X-Request-ID": "abc-123"})
    assert answer.headers["x-request-id"] == "abc-123"
    problem = await clinic.client.get(f"{API}/bookings/{UNKNOWN}", headers={**clinic.desk, "X-Request-ID": "abc-124"})
    assert problem.status_code == 404
    assert problem.headers["x-request-id"] == "abc-124"


async def test_a_request_id_is_generated_when_absent_or_unusable(clinic: Clinic) -> None:
    first = await clinic.client.get(f"{API}/locations", headers=clinic.desk)
    second = await clinic.client.get(f"{API}/locations", headers=clinic.desk)
    assert re.fullmatch(r"[0-9a-f]{32}", first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    too_long = await clinic.client.get(f"{API}/locations", headers={**clinic.desk, "X-Request-ID": "r" * 129})
    assert re.fullmatch(r"[0-9a-f]{32}", too_long.headers["x-request-id"])
    unauthenticated = await clinic.client.get(f"{API}/locations")
    assert unauthenticated.status_code == 401
    assert re.fullmatch(r"[0-9a-f]{32}", unauthenticated.headers["x-request-id"])


async def test_a_replayed_answer_carries_the_retrys_own_request_id(clinic: Clinic, known: Ids) -> None:
    headers = {**clinic.desk, "Idempotency-Key": "rid-1"}
    await clinic.client.post(f"{API}/bookings", json=booking_body(known), headers={**headers, "X-Request-ID": "one"})
    again = await clinic.client.post(
        f"{API}/bookings", json=booking_body(known), headers={**headers, "X-Request-ID": "two"}
    )
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["x-request-id"] == "two"


# ----------------------------------------------------------------------------- health


async def test_health_and_readiness_answer_without_a_token(clinic: Clinic) -> None:
    assert (await clinic.client.get("/healthz")).json() == {"status": "ok"}
    ready = await clinic.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["service"] == "scheduling"


# ----------------------------------------------------------------------------- control characters


@pytest.mark.parametrize(
    ("name", "why"),
    [("Dr\x00 Nowak", "NUL"), ("Dr\x07 Nowak", "BEL"), ("Dr \u202eKAWON", "right-to-left override"), ("\x9b", "C1")],
)
async def test_a_text_field_with_a_control_character_is_refused_naming_the_field(
    scheduling_client: httpx.AsyncClient, auth: Callable[..., dict[str, str]], name: str, why: str
) -> None:
    answer = await scheduling_client.post(
        "/api/v1/scheduling/locations", json={"name": name}, headers=auth("facility_admin")
    )
    assert answer.status_code == 422, why
    assert answer.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in answer.json()["errors"]] == ["body.name"]
    listed = await scheduling_client.get("/api/v1/scheduling/locations", headers=auth("facility_admin"))
    assert listed.json() == []


async def test_line_breaks_tabs_and_polish_letters_are_ordinary_text(
    scheduling_client: httpx.AsyncClient, auth: Callable[..., dict[str, str]]
) -> None:
    answer = await scheduling_client.post(
        "/api/v1/scheduling/locations",
        json={"name": "Przychodnia\tŻółć\nFilia"},
        headers=auth("facility_admin"),
    )
    assert answer.status_code == 201, answer.text


def test_control_characters_are_found_in_nested_values_and_keys() -> None:
    from shared.app import control_character_fields

    document = {"items": [{"drug": "ok"}, {"drug": "bad\x00"}], "k\x1b": 1, "note": "fine\r\n"}
    assert control_character_fields(document) == ["body.items.1.drug", "body.'k\\x1b'"]


@pytest.fixture
async def pharmacy_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    from services.pharmacy.app import create_app

    async for client in running_client(create_app(settings)):
        yield client


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # One IdP's user name in two pharmacies of one chain (the facility claim alike).
        ({"pharmacy_id": "apteka-1", "facility_id": "chain"}, {"pharmacy_id": "apteka-2", "facility_id": "chain"}),
        ({"pharmacy_id": "apteka-1"}, {"pharmacy_id": "apteka-1", "facility_id": "clinic-x"}),
        ({"pharmacy_id": "apteka-1", "npwz": "5425740"}, {"pharmacy_id": "apteka-1", "npwz": "1234567P"}),
    ],
)
async def test_keys_of_two_tenants_sharing_a_sub_are_kept_apart(
    pharmacy_client: httpx.AsyncClient, settings: Settings, first: dict[str, str], second: dict[str, str]
) -> None:
    def headers(claims: dict[str, str]) -> Headers:
        token = issue_token(Claims(sub="jan.kowalski", role=Role.pharmacist, **claims), settings)  # type: ignore[arg-type]
        return {"Authorization": f"Bearer {token}", "Idempotency-Key": "new-product-1"}

    body = {"name": "Advil Zatoki 4 tabl.", "marketed_on": "2017-03-01", "substances": [{"substance": "Ibuprofen"}]}
    mine = await pharmacy_client.post("/api/v1/pharmacy/products", json=body, headers=headers(first))
    assert mine.status_code == 201, mine.text
    theirs = await pharmacy_client.post("/api/v1/pharmacy/products", json=body, headers=headers(second))
    assert "idempotent-replayed" not in theirs.headers
    if theirs.status_code == 201:  # another pharmacy: its own catalogue, its own new product
        assert theirs.json()["id"] != mine.json()["id"]
    else:  # the same pharmacy under other claims: its catalogue has that product already
        assert_problem(theirs, 409)

"""The prescription-ordering API as clients see it: through the gateway (embedded), endpoint by endpoint.

Every endpoint of API.md's "Prescription ordering" table and our extensions (settings read-back,
account drugs, request listing, prescriptions by key and their cancellation): what a good request
answers, each bad field named in a problem+json 422, a wrong role 403, no token 401, and another
facility or patient answered 404 without revealing anything. The facility is built by the ``clinic``
fixture of the e2e flow (locations A with a department code and B, doctors DOCTOR/DUTY/OTHER,
prescription and online work types, demo mode active, ordering on for DOCTOR and DUTY).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import uuid
from typing import Any

import httpx

from shared.clock import FixedClock
from shared.events import Envelope
from tests.e2e import test_prescriptions_flow as flow
from tests.e2e.test_prescriptions_flow import (
    DOCTOR,
    DUTY,
    FACILITY,
    OTHER,
    PATIENT,
    PATIENT_2,
    WARSAW,
    Clinic,
    _ikp_ready,
    _poll_and_seal,
    _rx,
)

clinic = flow.clinic  # the e2e flow's facility fixture, used here by name

RX = "/api/v1/prescriptions"
OTHER_FACILITY = "clinic-elsewhere"
NURSE = "5000001P"  # a nurse's licence number: 7 digits + P, no doctor's check digit
MIDWIFE = "6000002A"
DENTIST = "1950280"
FELDSHER = "2053227"
BAD_NPWZ = "1047515"  # DOCTOR with a wrong check digit
UNKNOWN_NPWZ = "1855252"  # a valid number no practitioner of the facility has
BAD_PESEL = "44051401358"  # PATIENT with a wrong checksum
ROLES = ("patient", "registrar", "practitioner", "pharmacist", "facility_admin", "partner")


# ----------------------------------------------------------------------------- helpers


def _today() -> dt.date:
    return dt.datetime.now(WARSAW).date()


def _in(days: int) -> str:
    return (_today() + dt.timedelta(days=days)).isoformat()


def _problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("https://")
    return body


def _dotted(field: str) -> str:
    """``body.prescriptions[0].kind`` and ``body.prescriptions.0.kind`` name the same field."""
    return re.sub(r"\[(\d+)\]", r".\1", field)


def _fields(answer: httpx.Response) -> list[str]:
    return [_dotted(e["field"]) for e in _problem(answer, 422).get("errors", [])]


async def _role_token(clinic: Clinic, role: str, facility: str = FACILITY, **claims: str) -> dict[str, str]:
    base: dict[str, str] = {"sub": f"test-{role}", "role": role}
    if role == "pharmacist":
        base["pharmacy_id"] = "apteka-1"
    else:
        base["facility_id"] = facility
    if role == "patient":
        base["pesel"] = PATIENT
    if role == "practitioner":
        base["npwz"] = DOCTOR
    return await clinic.token(**{**base, **claims})


async def _doctor(clinic: Clinic, npwz: str = DOCTOR, facility: str = FACILITY) -> dict[str, str]:
    return await clinic.token(sub=f"dr-{npwz}", role="practitioner", facility_id=facility, npwz=npwz)


def _order(clinic: Clinic, *items: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "patient_pesel": PATIENT,
        "practitioner_npwz": DOCTOR,
        "location_id": clinic.ids["A"],
        "items": list(items) or [{"drug": "Metformax 500", "packages": 1}],
        **extra,
    }


async def _booked_request(clinic: Clinic) -> dict[str, Any]:
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "09:00")
    answer = await clinic.request(DOCTOR)
    assert answer.status_code == 201, answer.text
    request: dict[str, Any] = answer.json()
    assert request["status"] == "booked"
    return request


def _issue_body(*prescriptions: dict[str, Any], npwz: str = DOCTOR, profession: str = "doctor") -> dict[str, Any]:
    return {"issuer_npwz": npwz, "issuer_profession": profession, "prescriptions": list(prescriptions)}


async def _issued(clinic: Clinic, *prescriptions: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A booked request issued by DOCTOR: (the package, DOCTOR's token)."""
    request = await _booked_request(clinic)
    doctor = await _doctor(clinic)
    answer = await clinic.post(
        f"{RX}/requests/{request['id']}/issue", _issue_body(*(prescriptions or (_rx(),))), doctor
    )
    assert answer.status_code == 201, answer.text
    package: dict[str, Any] = answer.json()
    return package, doctor


# ----------------------------------------------------------------------------- settings


def _on(clinic: Clinic, day: str) -> None:
    """The prescriptions service's today (Europe/Warsaw) is ``day``: its clock stands at noon there."""
    noon = dt.datetime.combine(dt.date.fromisoformat(day), dt.time(12), WARSAW)
    clinic.service("prescriptions").state.ctx.clock = FixedClock(noon.astimezone(dt.UTC))


async def _put_settings(clinic: Clinic, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    answer = await clinic.client.put(f"{RX}/settings", json=body, headers=headers)
    assert answer.status_code == 200, answer.text
    settings: dict[str, Any] = answer.json()
    return settings


async def test_settings_active_until_is_3_or_12_months_from_todays_activation_clamped_to_the_month_end(
    clinic: Clinic,
) -> None:
    cases = [
        ("demo", "2026-11-30", "2027-02-28"),
        ("demo", "2027-11-30", "2028-02-29"),  # a leap year's February
        ("demo", "2026-01-31", "2026-04-30"),
        ("demo", "2026-05-15", "2026-08-15"),
        ("full", "2028-02-29", "2029-02-28"),
        ("full", "2026-01-31", "2027-01-31"),
        ("full", "2026-12-31", "2027-12-31"),
    ]
    for number, (mode, today, until) in enumerate(cases):
        _on(clinic, today)
        admin = await _role_token(clinic, "facility_admin", f"clinic-months-{number}")  # demo: once per facility
        body = {"mode": mode, "problem_email": "recepty@clinic.example"}
        answer = await _put_settings(clinic, body, admin)
        assert (answer["mode"], answer["activated_on"], answer["active_until"]) == (mode, today, until), today
        assert answer["active"] is True

    stored = await clinic.client.get(
        f"{RX}/settings", headers=await _role_token(clinic, "registrar", "clinic-months-6")
    )
    assert stored.status_code == 200
    assert stored.json() == {
        "mode": "full",
        "activated_on": "2026-12-31",
        "active_until": "2027-12-31",
        "active": True,
        "drug_scope": "any",
        "problem_email": "recepty@clinic.example",
        "ikp_enabled": False,
        "demo_used_on": None,
    }

    off = await _put_settings(clinic, {"mode": "off"}, await _role_token(clinic, "facility_admin", "clinic-months-6"))
    assert (off["activated_on"], off["active_until"], off["active"]) == (None, None, False)


async def test_settings_are_active_from_the_activation_day_through_the_last_day(clinic: Clinic) -> None:
    admin = await _role_token(clinic, "facility_admin", "clinic-days")

    async def active_on(day: str) -> bool:
        _on(clinic, day)
        answer = await clinic.client.get(f"{RX}/settings", headers=admin)
        assert answer.status_code == 200, answer.text
        flag: bool = answer.json()["active"]
        return flag

    _on(clinic, "2026-11-30")
    await _put_settings(clinic, {"mode": "demo"}, admin)
    assert [await active_on(d) for d in ("2026-11-29", "2026-11-30", "2027-02-28", "2027-03-01")] == [
        False,
        True,
        True,
        False,
    ]
    _on(clinic, "2027-03-01")
    await _put_settings(clinic, {"mode": "full"}, admin)  # bought the day after the demo ended
    assert [await active_on(d) for d in ("2027-02-28", "2027-03-01", "2028-03-01", "2028-03-02")] == [
        False,
        True,
        True,
        False,
    ]

    # An inactive service refuses portal requests: the flag is what ordering obeys.
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "09:00")
    _on(clinic, _in(0))
    assert (await clinic.request(DOCTOR)).status_code == 201
    _on(clinic, (dt.date.fromisoformat(_in(0)) + dt.timedelta(days=200)).isoformat())  # the fixture's demo is over
    refused = await clinic.request(DOCTOR)
    assert "no active online prescription-ordering service" in _problem(refused, 422)["detail"]


async def test_the_activation_date_is_the_servers_today_and_any_other_date_is_refused(clinic: Clinic) -> None:
    admin = await _role_token(clinic, "facility_admin", "clinic-dates")
    _on(clinic, "2026-12-08")
    for mode in ("demo", "full"):
        for day in ("2026-12-07", "2026-12-09", "2020-01-01"):
            answer = await clinic.client.put(f"{RX}/settings", json={"mode": mode, "activated_on": day}, headers=admin)
            assert _fields(answer) == ["body.activated_on"], (mode, day)
            assert "today (2026-12-08)" in _problem(answer, 422)["detail"]
    untouched = (await clinic.client.get(f"{RX}/settings", headers=admin)).json()
    assert (untouched["mode"], untouched["demo_used_on"]) == ("off", None)  # the refused demo was not used

    dated = await _put_settings(clinic, {"mode": "full", "activated_on": "2026-12-08"}, admin)
    undated = await _put_settings(clinic, {"mode": "full", "drug_scope": "patient_account"}, admin)
    assert dated["activated_on"] == undated["activated_on"] == "2026-12-08"
    assert undated["drug_scope"] == "patient_account"


async def test_demo_mode_is_used_once_per_facility_then_the_service_can_only_be_bought(clinic: Clinic) -> None:
    admin = await _role_token(clinic, "facility_admin", "clinic-demo-once")
    _on(clinic, "2026-12-08")
    demo = await _put_settings(clinic, {"mode": "demo"}, admin)
    assert (demo["mode"], demo["activated_on"], demo["active_until"], demo["demo_used_on"]) == (
        "demo",
        "2026-12-08",
        "2027-03-08",
        "2026-12-08",
    )
    # Asked for again while it runs (to change the e-mail): the same period, not a second demo.
    _on(clinic, "2027-01-15")
    again = await _put_settings(clinic, {"mode": "demo", "problem_email": "nowy@clinic.example"}, admin)
    assert (again["activated_on"], again["active_until"], again["problem_email"]) == (
        "2026-12-08",
        "2027-03-08",
        "nowy@clinic.example",
    )

    async def demo_refused() -> None:
        answer = await clinic.client.put(f"{RX}/settings", json={"mode": "demo"}, headers=admin)
        assert _fields(answer) == ["body.mode"]
        assert "can now only be bought (mode full)" in _problem(answer, 422)["detail"]

    _on(clinic, "2027-03-09")  # expired ...
    assert (await clinic.client.get(f"{RX}/settings", headers=admin)).json()["active"] is False
    await demo_refused()
    await _put_settings(clinic, {"mode": "off"}, admin)  # ... or switched off
    await demo_refused()
    stored = (await clinic.client.get(f"{RX}/settings", headers=admin)).json()
    assert (stored["mode"], stored["demo_used_on"]) == ("off", "2026-12-08")

    full = await _put_settings(clinic, {"mode": "full"}, admin)
    assert (full["mode"], full["activated_on"], full["active_until"], full["active"]) == (
        "full",
        "2027-03-09",
        "2028-03-09",
        True,
    )
    await demo_refused()  # from full mode too
    assert (await clinic.client.get(f"{RX}/settings", headers=admin)).json() == full


async def test_two_administrators_switching_demo_on_at_once_use_it_once(clinic: Clinic) -> None:
    admins = [await _role_token(clinic, "facility_admin", "clinic-race") for _ in range(2)]
    _on(clinic, "2026-12-08")
    answers = await asyncio.gather(
        *(clinic.client.put(f"{RX}/settings", json={"mode": "demo"}, headers=admin) for admin in admins)
    )
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert {(a.json()["activated_on"], a.json()["demo_used_on"]) for a in answers} == {("2026-12-08", "2026-12-08")}
    _on(clinic, "2027-03-09")
    assert _fields(await clinic.client.put(f"{RX}/settings", json={"mode": "demo"}, headers=admins[0])) == ["body.mode"]


async def test_settings_bad_input_names_the_field_and_changes_nothing(clinic: Clinic) -> None:
    before = (await clinic.client.get(f"{RX}/settings", headers=clinic.admin)).json()
    cases: list[tuple[dict[str, Any], str]] = [
        ({"mode": "demo", "activated_on": _in(0), "problem_email": "not-an-email"}, "body.problem_email"),
        ({"mode": "demo", "activated_on": _in(0), "problem_email": "a" * 250 + "@x.pl"}, "body.problem_email"),
        ({"mode": "off", "activated_on": _in(0)}, "body.activated_on"),
        ({"mode": "full", "activated_on": _in(-1)}, "body.activated_on"),
        ({"mode": "demo", "activated_on": "2026-02-30"}, "body.activated_on"),
        ({"mode": "trial", "activated_on": _in(0)}, "body.mode"),
        ({"activated_on": _in(0)}, "body.mode"),
        ({"mode": "demo", "activated_on": _in(0), "drug_scope": "everything"}, "body.drug_scope"),
        ({"mode": "demo", "activated_on": _in(0), "colour": "red"}, "body.colour"),
    ]
    for body, field in cases:
        answer = await clinic.client.put(f"{RX}/settings", json=body, headers=clinic.admin)
        assert _fields(answer) == [field], body
    off_with_date = await clinic.client.put(
        f"{RX}/settings", json={"mode": "off", "activated_on": _in(0)}, headers=clinic.admin
    )
    assert "off has no activation date" in _problem(off_with_date, 422)["detail"]
    not_json = await clinic.client.put(
        f"{RX}/settings", content=b"{mode: demo", headers={**clinic.admin, "content-type": "application/json"}
    )
    _problem(not_json, 400)

    assert (await clinic.client.get(f"{RX}/settings", headers=clinic.admin)).json() == before


async def test_settings_with_an_activation_date_at_the_end_of_the_calendar_is_refused_as_bad_input(
    clinic: Clinic,
) -> None:
    answer = await clinic.client.put(
        f"{RX}/settings", json={"mode": "demo", "activated_on": "9999-12-01"}, headers=clinic.admin
    )
    assert _fields(answer) == ["body.activated_on"]


async def test_settings_belong_to_one_facility(clinic: Clinic) -> None:
    elsewhere = await _role_token(clinic, "facility_admin", OTHER_FACILITY)
    theirs = await clinic.client.get(f"{RX}/settings", headers=elsewhere)
    assert theirs.status_code == 200
    assert (theirs.json()["mode"], theirs.json()["active"], theirs.json()["problem_email"]) == ("off", False, None)

    changed = await clinic.client.put(
        f"{RX}/settings", json={"mode": "full", "problem_email": "x@y.pl"}, headers=elsewhere
    )
    assert changed.status_code == 200
    ours = (await clinic.client.get(f"{RX}/settings", headers=clinic.admin)).json()
    assert (ours["mode"], ours["activated_on"], ours["problem_email"]) == ("demo", _in(0), "problemy@clinic.example")


# ----------------------------------------------------------------------------- the per-practitioner switch


async def test_the_ordering_switch_per_npwz_validates_the_check_digit_and_steers_routing(clinic: Clinic) -> None:
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "08:30")
    await clinic.schedule(DUTY, "A", "rx", 1, "09:00", "09:30")

    off = await clinic.client.put(
        f"{RX}/practitioners/{DOCTOR}/ordering", json={"enabled": False}, headers=clinic.admin
    )
    assert (off.status_code, off.json()) == (200, {"npwz": DOCTOR, "enabled": False})
    assert _fields(await clinic.request(DOCTOR)) == ["body.practitioner_npwz"]  # the portal no longer offers DOCTOR
    to_duty = (await clinic.request(DOCTOR, source="ikp")).json()
    assert (to_duty["routed_to"], to_duty["assigned_npwz"], to_duty["problems"]) == ("duty", DUTY, [2])

    on = await clinic.client.put(f"{RX}/practitioners/{DOCTOR}/ordering", json={"enabled": True}, headers=clinic.admin)
    assert on.json() == {"npwz": DOCTOR, "enabled": True}
    own = (await clinic.request(DOCTOR)).json()
    assert (own["routed_to"], own["assigned_npwz"], own["problems"]) == ("own", DOCTOR, [])

    nurse = await clinic.client.put(
        f"{RX}/practitioners/5000001p/ordering", json={"enabled": True}, headers=clinic.admin
    )
    assert nurse.json() == {"npwz": NURSE, "enabled": True}  # a nurse's number, normalised to upper case

    bad = await clinic.client.put(
        f"{RX}/practitioners/{BAD_NPWZ}/ordering", json={"enabled": True}, headers=clinic.admin
    )
    assert _fields(bad) == ["path.npwz"]
    short = await clinic.client.put(f"{RX}/practitioners/104751/ordering", json={"enabled": True}, headers=clinic.admin)
    assert _fields(short) == ["path.npwz"]
    no_flag = await clinic.client.put(f"{RX}/practitioners/{DOCTOR}/ordering", json={}, headers=clinic.admin)
    assert _fields(no_flag) == ["body.enabled"]
    not_bool = await clinic.client.put(
        f"{RX}/practitioners/{DOCTOR}/ordering", json={"enabled": "maybe"}, headers=clinic.admin
    )
    assert _fields(not_bool) == ["body.enabled"]

    for role in ("registrar", "practitioner", "partner", "patient"):
        refused = await clinic.client.put(
            f"{RX}/practitioners/{DOCTOR}/ordering", json={"enabled": False}, headers=await _role_token(clinic, role)
        )
        _problem(refused, 403)
    still_own = (await clinic.request(DOCTOR)).json()
    assert still_own["routed_to"] == "own"  # the refused switches changed nothing


async def test_a_portal_request_to_a_practitioner_without_ordering_is_refused_not_rerouted(clinic: Clinic) -> None:
    await clinic.schedule(OTHER, "A", "rx", 1, "08:00", "08:30")  # ordering never switched on for OTHER
    await clinic.schedule(DUTY, "A", "rx", 1, "09:00", "09:30")  # a duty slot the portal must not take
    patient = await _role_token(clinic, "patient")

    for npwz in (OTHER, UNKNOWN_NPWZ):
        for headers in (clinic.desk, patient):
            refused = await clinic.post(f"{RX}/requests", _order(clinic, practitioner_npwz=npwz), headers)
            assert _fields(refused) == ["body.practitioner_npwz"], (npwz, refused.text)
            assert npwz in _problem(refused, 422)["detail"]
    assert (await clinic.client.get(f"{RX}/requests", headers=clinic.desk)).json() == []
    duty_slot = await clinic.client.get(
        "/api/v1/scheduling/slots", params={"practitioner_id": clinic.ids[DUTY]}, headers=clinic.desk
    )
    assert [s["status"] for s in duty_slot.json()] == ["free", "free"]  # nothing was booked
    notices = await _problems_raised(clinic)
    assert [(n["problem"], n["npwz"]) for n in notices] == [(2, OTHER)] * 2 + [(5, UNKNOWN_NPWZ)] * 2

    # Switched on, OTHER is offered: the portal books OTHER's own slot.
    await clinic.client.put(f"{RX}/practitioners/{OTHER}/ordering", json={"enabled": True}, headers=clinic.admin)
    taken = await clinic.post(f"{RX}/requests", _order(clinic, practitioner_npwz=OTHER), patient)
    assert taken.status_code == 201, taken.text
    assert (taken.json()["routed_to"], taken.json()["assigned_npwz"], taken.json()["problems"]) == ("own", OTHER, [])


# ----------------------------------------------------------------------------- the patient's account


async def test_account_drugs_are_recorded_once_per_normalised_name_and_read_by_their_patient_only(
    clinic: Clinic,
) -> None:
    path = f"{RX}/patients/{PATIENT}/account-drugs"
    first = await clinic.post(path, {"drug": "Metformax 500"}, clinic.desk)
    assert first.status_code == 201
    assert first.json() == [{"drug": "Metformax 500", "added_on": _in(0), "source": "recorded"}]
    for spelling in ("  METFORMAX   500 ", "metformax\t500", "Ｍｅｔｆｏｒｍａｘ 500"):  # case, spaces, full width
        again = await clinic.post(path, {"drug": spelling}, clinic.desk)
        assert again.status_code == 201
        assert [d["drug"] for d in again.json()] == ["Metformax 500"], spelling
    doctor = await _doctor(clinic)
    second = await clinic.post(path, {"drug": "Bisocard 5"}, doctor)
    assert [d["drug"] for d in second.json()] == ["Bisocard 5", "Metformax 500"]

    patient = await _role_token(clinic, "patient")
    own = await clinic.client.get(path, headers=patient)
    assert own.status_code == 200 and own.json() == second.json()
    someone_else = await clinic.client.get(f"{RX}/patients/{PATIENT_2}/account-drugs", headers=patient)
    body = _problem(someone_else, 404)
    assert "Bisocard" not in str(body) and PATIENT_2 not in body["detail"]
    other_patient = await _role_token(clinic, "patient", pesel=PATIENT_2)
    assert (await clinic.client.get(path, headers=other_patient)).status_code == 404
    _problem(await clinic.post(path, {"drug": "Xanax 1"}, patient), 403)  # patients do not edit the account
    _problem(await clinic.post(path, {"drug": "Xanax 1"}, await _role_token(clinic, "partner")), 403)

    elsewhere = await _role_token(clinic, "registrar", OTHER_FACILITY)
    assert (await clinic.client.get(path, headers=elsewhere)).json() == []

    assert _fields(await clinic.post(f"{RX}/patients/{BAD_PESEL}/account-drugs", {"drug": "X"}, clinic.desk)) == [
        "path.pesel"
    ]
    bad_read = await clinic.client.get(f"{RX}/patients/4405140135/account-drugs", headers=clinic.desk)
    assert _fields(bad_read) == ["path.pesel"]
    assert _fields(await clinic.post(path, {"drug": "x" * 201}, clinic.desk)) == ["body.drug"]
    assert _fields(await clinic.post(path, {"drug": "   "}, clinic.desk)) == ["body.drug"]
    assert _fields(await clinic.post(path, {}, clinic.desk)) == ["body.drug"]
    assert len((await clinic.client.get(path, headers=clinic.desk)).json()) == 2


# ----------------------------------------------------------------------------- requests


async def test_each_bad_request_field_is_named_and_nothing_is_stored(clinic: Clinic) -> None:
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "09:00")
    one = {"drug": "Metformax 500", "packages": 1}
    cases: list[tuple[dict[str, Any], list[str]]] = [
        (_order(clinic, patient_pesel=BAD_PESEL), ["body.patient_pesel"]),
        (_order(clinic, practitioner_npwz=BAD_NPWZ), ["body.practitioner_npwz"]),
        (_order(clinic, location_id="A"), ["body.location_id"]),
        (_order(clinic, items=[]), ["body.items"]),
        (_order(clinic, items=[{**one, "drug": f"Lek {i}"} for i in range(21)]), ["body.items"]),
        (_order(clinic, {**one, "comment": "x" * 1001}), ["body.items.0.comment"]),
        (_order(clinic, one, {**one, "drug": "x" * 201}), ["body.items.1.drug"]),
        (_order(clinic, {**one, "drug": ""}), ["body.items.0.drug"]),
        (_order(clinic, {**one, "packages": 0}), ["body.items.0.packages"]),
        (_order(clinic, {**one, "packages": 100}), ["body.items.0.packages"]),
        (_order(clinic, {**one, "packages": "two"}), ["body.items.0.packages"]),
        (_order(clinic, {**one, "dosage": "2x1"}), ["body.items.0.dosage"]),
        (_order(clinic, source="fax"), ["body.source"]),
        (_order(clinic, urgent=True), ["body.urgent"]),
    ]
    for body, fields in cases:
        answer = await clinic.post(f"{RX}/requests", body, clinic.desk)
        assert _fields(answer) == fields, fields
    missing = {k: v for k, v in _order(clinic).items() if k != "location_id"}
    assert _fields(await clinic.post(f"{RX}/requests", missing, clinic.desk)) == ["body.location_id"]
    several = _order(clinic, patient_pesel="123", practitioner_npwz="abc", items=[{**one, "packages": -1}])
    assert set(_fields(await clinic.post(f"{RX}/requests", several, clinic.desk))) == {
        "body.patient_pesel",
        "body.practitioner_npwz",
        "body.items.0.packages",
    }
    assert (await clinic.client.get(f"{RX}/requests", headers=clinic.desk)).json() == []

    at_the_limits = _order(
        clinic,
        *(
            [{"drug": "x" * 200, "packages": 99, "comment": "y" * 1000}]
            + [{"drug": f"Lek {i}", "packages": 1, "comment": f"k{i}"} for i in range(19)]
        ),
    )
    accepted = await clinic.post(f"{RX}/requests", at_the_limits, clinic.desk)
    assert accepted.status_code == 201, accepted.text
    items = accepted.json()["items"]
    assert len(items) == 20 and (items[0]["packages"], len(items[0]["drug"]), len(items[0]["comment"])) == (
        99,
        200,
        1000,
    )
    assert len((await clinic.client.get(f"{RX}/requests", headers=clinic.desk)).json()) == 1


async def test_a_patient_orders_for_themself_through_the_portal_only(clinic: Clinic) -> None:
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "09:00")
    patient = await _role_token(clinic, "patient")

    mine = await clinic.post(f"{RX}/requests", _order(clinic), patient)
    assert mine.status_code == 201, mine.text
    assert (mine.json()["source"], mine.json()["patient_pesel"], mine.json()["status"]) == ("portal", PATIENT, "booked")
    read_back = await clinic.client.get(f"{RX}/requests/{mine.json()['id']}", headers=patient)
    assert read_back.status_code == 200 and read_back.json() == mine.json()

    via_ikp = await clinic.post(f"{RX}/requests", _order(clinic, source="ikp"), patient)
    assert _fields(via_ikp) == ["body.source"]
    assert "portal" in _problem(via_ikp, 422)["detail"]
    for_someone_else = await clinic.post(f"{RX}/requests", _order(clinic, patient_pesel=PATIENT_2), patient)
    _problem(for_someone_else, 403)
    _problem(await clinic.client.get(f"{RX}/requests", headers=patient), 403)  # the list is the clinic's
    _problem(await clinic.post(f"{RX}/requests", _order(clinic), await _doctor(clinic)), 403)

    everything = (await clinic.client.get(f"{RX}/requests", headers=clinic.desk)).json()
    assert [r["id"] for r in everything] == [mine.json()["id"]]


async def test_identical_item_comments_fold_into_one_request_comment_different_ones_stay_per_item(
    clinic: Clinic,
) -> None:
    async def order(*comments: str | None) -> dict[str, Any]:
        items = [{"drug": f"Lek {i}", "packages": 1, "comment": c} for i, c in enumerate(comments)]
        answer = await clinic.post(f"{RX}/requests", _order(clinic, *items), clinic.desk)
        assert answer.status_code == 201, answer.text
        request: dict[str, Any] = answer.json()
        return request

    same = await order("jak zwykle", "  jak zwykle", "jak zwykle ")
    assert same["comment"] == "jak zwykle"
    assert [i["comment"] for i in same["items"]] == [None, None, None]
    stored = (await clinic.client.get(f"{RX}/requests/{same['id']}", headers=clinic.desk)).json()
    assert (stored["comment"], [i["comment"] for i in stored["items"]]) == ("jak zwykle", [None, None, None])

    different = await order("rano", "wieczorem")
    assert different["comment"] is None
    assert [i["comment"] for i in different["items"]] == ["rano", "wieczorem"]

    partly = await order("rano", None)
    assert (partly["comment"], [i["comment"] for i in partly["items"]]) == (None, ["rano", None])

    blank_and_none = await order("   ", None)
    assert (blank_and_none["comment"], [i["comment"] for i in blank_and_none["items"]]) == (None, [None, None])

    single = await order("pilne")
    assert (single["comment"], single["items"][0]["comment"]) == ("pilne", None)


async def test_the_request_list_filters_by_status_and_patient_within_the_own_facility(clinic: Clinic) -> None:
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "08:15")  # one slot: the second request finds none
    booked = (await clinic.request(DOCTOR)).json()
    unassigned = (await clinic.post(f"{RX}/requests", _order(clinic, patient_pesel=PATIENT_2), clinic.desk)).json()
    assert (booked["status"], unassigned["status"]) == ("booked", "unassigned")

    async def listed(query: str, headers: dict[str, str] | None = None) -> list[str]:
        answer = await clinic.client.get(f"{RX}/requests{query}", headers=headers or clinic.desk)
        assert answer.status_code == 200, answer.text
        return [r["id"] for r in answer.json()]

    assert await listed("") == [unassigned["id"], booked["id"]]  # newest first
    assert await listed("?status=booked") == [booked["id"]]
    assert await listed("?status=unassigned") == [unassigned["id"]]
    assert await listed("?status=issued") == []
    assert await listed(f"?patient_pesel={PATIENT_2}") == [unassigned["id"]]
    assert await listed(f"?patient_pesel={PATIENT}&status=unassigned") == []
    assert await listed("?limit=1") == [unassigned["id"]]
    assert await listed("", await _doctor(clinic)) == [unassigned["id"], booked["id"]]

    assert _fields(await clinic.client.get(f"{RX}/requests?status=bogus", headers=clinic.desk)) == ["query.status"]
    assert _fields(await clinic.client.get(f"{RX}/requests?status=BOOKED", headers=clinic.desk)) == ["query.status"]
    bad_pesel = await clinic.client.get(f"{RX}/requests?patient_pesel={BAD_PESEL}", headers=clinic.desk)
    assert _fields(bad_pesel) == ["query.patient_pesel"]
    assert _fields(await clinic.client.get(f"{RX}/requests?limit=0", headers=clinic.desk)) == ["query.limit"]
    assert _fields(await clinic.client.get(f"{RX}/requests?limit=501", headers=clinic.desk)) == ["query.limit"]

    elsewhere = await _role_token(clinic, "registrar", OTHER_FACILITY)
    assert await listed("", elsewhere) == []
    assert await listed(f"?patient_pesel={PATIENT}", elsewhere) == []


async def test_a_request_by_id_bad_uuid_unknown_or_another_facilitys_reveals_nothing(clinic: Clinic) -> None:
    mine = await _booked_request(clinic)
    assert _fields(await clinic.client.get(f"{RX}/requests/not-a-uuid", headers=clinic.desk)) == ["path.request_id"]
    unknown_id = uuid.uuid4()
    unknown = _problem(await clinic.client.get(f"{RX}/requests/{unknown_id}", headers=clinic.desk), 404)

    elsewhere = await _role_token(clinic, "registrar", OTHER_FACILITY)
    theirs = _problem(await clinic.client.get(f"{RX}/requests/{mine['id']}", headers=elsewhere), 404)
    assert PATIENT not in str(theirs) and DOCTOR not in str(theirs)
    # The same answer as for an id that does not exist at all, apart from the id itself.
    assert {k: str(v).replace(mine["id"], "ID") for k, v in theirs.items()} == {
        k: str(v).replace(str(unknown_id), "ID") for k, v in unknown.items()
    }
    other_patient = await _role_token(clinic, "patient", pesel=PATIENT_2)
    assert _problem(await clinic.client.get(f"{RX}/requests/{mine['id']}", headers=other_patient), 404)
    owner = await _role_token(clinic, "patient")
    assert (await clinic.client.get(f"{RX}/requests/{mine['id']}", headers=owner)).json() == mine


# ----------------------------------------------------------------------------- issuing


async def test_each_kind_gets_its_validity_window_and_the_package_one_access_code(clinic: Clinic) -> None:
    package, _ = await _issued(
        clinic,
        _rx(drug="Standard"),
        _rx(drug="Extended", extended=True),
        _rx(drug="Amotaks", kind="antibiotic", packages=1, units_per_package="16", daily_dose_units="2"),
        _rx(drug="Szczepionka", kind="immunological", packages=1),
        _rx(drug="Morfina", kind="narcotic", packages=1),
    )
    assert package["issued_on"] == _in(0)
    assert len(package["package_key"]) == 44 and re.fullmatch(r"[0-9]{4}", package["access_code"])
    windows = {p["drug"]: (p["valid_from"], p["valid_until"]) for p in package["prescriptions"]}
    assert windows == {
        "Standard": (_in(0), _in(30)),
        "Extended": (_in(0), _in(365)),
        "Amotaks": (_in(0), _in(7)),
        "Szczepionka": (_in(0), _in(120)),
        "Morfina": (_in(0), _in(30)),
    }
    assert {p["access_code"] for p in package["prescriptions"]} == {package["access_code"]}
    keys = [p["key"] for p in package["prescriptions"]]
    assert len(set(keys)) == 5 and all(re.fullmatch(r"[0-9]{44}", k) for k in keys)
    assert package["package_key"] not in keys

    request = (await clinic.request(DOCTOR)).json()
    later = await clinic.post(
        f"{RX}/requests/{request['id']}/issue",
        _issue_body(
            _rx(drug="Standard", realise_from=_in(5)),
            _rx(drug="Extended", extended=True, realise_from=_in(5)),
            _rx(drug="Amotaks", kind="antibiotic", realise_from=_in(5), packages=1),
            _rx(drug="Today", realise_from=_in(0)),
        ),
        await _doctor(clinic),
    )
    assert later.status_code == 201, later.text
    moved = {p["drug"]: (p["valid_from"], p["valid_until"]) for p in later.json()["prescriptions"]}
    assert moved == {
        "Standard": (_in(5), _in(35)),
        "Extended": (_in(5), _in(370)),
        "Amotaks": (_in(5), _in(12)),
        "Today": (_in(0), _in(30)),
    }
    assert (await clinic.client.get(f"{RX}/requests/{request['id']}", headers=clinic.desk)).json()["status"] == "issued"


async def test_refused_prescriptions_name_their_field_and_issue_nothing(clinic: Clinic) -> None:
    request = await _booked_request(clinic)
    path = f"{RX}/requests/{request['id']}/issue"
    doctor = await _doctor(clinic)

    async def refused(*prescriptions: dict[str, Any], **body: Any) -> tuple[list[str], str]:
        answer = await clinic.post(path, {**_issue_body(*prescriptions), **body}, doctor)
        return _fields(answer), _problem(answer, 422)["detail"]

    fields, detail = await refused(_rx(kind="target_import"))
    assert fields == ["body.prescriptions.0.kind"] and "paper only" in detail
    for kind in ("narcotic", "psychotropic_in_iip", "immunological"):
        fields, detail = await refused(_rx(), _rx(kind=kind, packages=1, realise_from=_in(3)))
        assert fields == ["body.prescriptions.1.realise_from"] and "valid from its issue date" in detail, kind
    fields, detail = await refused(_rx(realise_from=_in(-1)))
    assert fields == ["body.prescriptions.0.realise_from"] and "before the issue date" in detail
    for kind in ("antibiotic", "narcotic", "immunological"):
        fields, _ = await refused(_rx(kind=kind, extended=True))
        assert fields == ["body.prescriptions.0.extended"], kind
    fields, _ = await refused(_rx(controlled_group="I-N"))
    assert fields == ["body.prescriptions.0.controlled_group"]
    fields, _ = await refused(_rx(kind="antibiotic", controlled_group="II-P"))
    assert fields == ["body.prescriptions.0.controlled_group"]
    fields, detail = await refused(*[_rx(drug=f"Lek {i}") for i in range(6)])
    assert fields == ["body.prescriptions"] and "at most 5" in detail

    bad_values: list[tuple[dict[str, Any], str]] = [
        (_rx(packages=0), "body.prescriptions.0.packages"),
        (_rx(packages=1000), "body.prescriptions.0.packages"),
        (_rx(units_per_package="0"), "body.prescriptions.0.units_per_package"),
        (_rx(units_per_package="abc"), "body.prescriptions.0.units_per_package"),
        (_rx(daily_dose_units="-1"), "body.prescriptions.0.daily_dose_units"),
        (_rx(daily_dose_units="0.00001"), "body.prescriptions.0.daily_dose_units"),
        (_rx(drug=""), "body.prescriptions.0.drug"),
        (_rx(drug="x" * 201), "body.prescriptions.0.drug"),
        (_rx(kind="herbal"), "body.prescriptions.0.kind"),
        (_rx(controlled_group="V-X", kind="narcotic"), "body.prescriptions.0.controlled_group"),
        (_rx(realise_from="tomorrow"), "body.prescriptions.0.realise_from"),
        (_rx(dosage="d" * 201), "body.prescriptions.0.dosage"),
        (_rx(refill=True), "body.prescriptions.0.refill"),
    ]
    for prescription, field in bad_values:
        fields, _ = await refused(prescription)
        assert fields == [field], prescription
    assert (await refused())[0] == ["body.prescriptions"]
    assert (await refused(_rx(), issuer_profession="pharmacist"))[0] == ["body.issuer_profession"]
    assert (await refused(_rx(), issuer_npwz=BAD_NPWZ))[0] == ["body.issuer_npwz"]
    assert (await refused(_rx(), control_visit_on="soon"))[0] == ["body.control_visit_on"]

    after = (await clinic.client.get(f"{RX}/requests/{request['id']}", headers=clinic.desk)).json()
    assert after["status"] == "booked"  # nothing was issued
    account = await clinic.client.get(f"{RX}/patients/{PATIENT}/account-drugs", headers=clinic.desk)
    assert account.json() == []


async def test_issuing_rule_refusals_name_the_field_in_the_documented_dotted_form(clinic: Clinic) -> None:
    request = await _booked_request(clinic)
    path = f"{RX}/requests/{request['id']}/issue"
    doctor = await _doctor(clinic)
    schema_refusal = await clinic.post(path, _issue_body(_rx(kind="antibiotic", extended=True)), doctor)
    rule_refusal = await clinic.post(path, _issue_body(_rx(kind="target_import")), doctor)
    assert [e["field"] for e in _problem(schema_refusal, 422)["errors"]] == ["body.prescriptions.0.extended"]
    assert [e["field"] for e in _problem(rule_refusal, 422)["errors"]] == ["body.prescriptions.0.kind"]


async def test_a_realise_from_date_at_the_end_of_the_calendar_is_refused_as_bad_input(clinic: Clinic) -> None:
    request = await _booked_request(clinic)
    answer = await clinic.post(
        f"{RX}/requests/{request['id']}/issue", _issue_body(_rx(realise_from="9999-12-30")), await _doctor(clinic)
    )
    assert _fields(answer) == ["body.prescriptions.0.realise_from"]


async def test_quantity_limits_per_issuer_are_exact(clinic: Clinic) -> None:
    request = await _booked_request(clinic)
    path = f"{RX}/requests/{request['id']}/issue"
    # The limit follows the profession on the practitioner's record.
    for npwz, profession in ((NURSE, "nurse"), (MIDWIFE, "midwife"), (DENTIST, "dentist"), (FELDSHER, "feldsher")):
        body = {"name": f"{profession} {npwz}", "npwz": npwz, "profession": profession}
        await clinic.created("/api/v1/scheduling/practitioners", body)

    def days(units: str, **extra: Any) -> dict[str, Any]:
        """One package of ``units`` at 2 units a day: units / 2 days of use."""
        return _rx(packages=1, units_per_package=units, daily_dose_units="2", **extra)

    cases: list[tuple[str, str, dict[str, Any], bool]] = [
        (DOCTOR, "doctor", days("720"), True),  # 360 days
        (DOCTOR, "doctor", days("721"), False),  # 360.5 days
        (DENTIST, "dentist", days("720"), True),
        (FELDSHER, "feldsher", days("722"), False),
        (NURSE, "nurse", days("360"), True),  # 180 days
        (NURSE, "nurse", days("362"), False),  # 181 days
        (MIDWIFE, "midwife", days("360"), True),
        (MIDWIFE, "midwife", days("361"), False),  # 180.5 days
        (DOCTOR, "doctor", days("180", kind="psychotropic_in_iip"), True),  # 90 days
        (DOCTOR, "doctor", days("182", kind="psychotropic_in_iip"), False),  # 91 days
        (DOCTOR, "doctor", days("182", kind="narcotic"), False),  # group I-N by default: 90 days
        (DOCTOR, "doctor", days("720", kind="narcotic", controlled_group="II-N"), True),  # no 90-day group
        (NURSE, "nurse", days("360", kind="narcotic", controlled_group="IV-P"), True),
        (NURSE, "nurse", days("182", kind="psychotropic_in_iip"), False),
    ]
    for npwz, profession, prescription, allowed in cases:
        answer = await clinic.post(
            path, _issue_body(prescription, npwz=npwz, profession=profession), await _doctor(clinic, npwz)
        )
        if allowed:
            assert answer.status_code == 201, (profession, prescription, answer.text)
        else:
            assert _fields(answer) == ["body.prescriptions.0.packages"], (profession, prescription)
    over = await clinic.post(path, _issue_body(days("721")), await _doctor(clinic))
    assert "360.5 days of use" in over.json()["detail"] and "limit of 360 days" in over.json()["detail"]
    nurse_over = await clinic.post(
        path, _issue_body(days("362"), npwz=NURSE, profession="nurse"), await _doctor(clinic, NURSE)
    )
    assert "181 days" in nurse_over.json()["detail"] and "limit of 180 days" in nurse_over.json()["detail"]
    strict = await clinic.post(path, _issue_body(days("182", kind="psychotropic_in_iip")), await _doctor(clinic))
    assert "limit of 90 days" in strict.json()["detail"]


async def test_only_the_practitioner_named_in_the_token_issues_and_only_in_their_facility(clinic: Clinic) -> None:
    request = await _booked_request(clinic)
    path = f"{RX}/requests/{request['id']}/issue"
    body = _issue_body(_rx())

    impostor = await clinic.post(path, body, await _doctor(clinic, DUTY))
    assert "own NPWZ" in _problem(impostor, 403)["detail"]
    for role in ("registrar", "facility_admin", "partner", "patient", "pharmacist"):
        _problem(await clinic.post(path, body, await _role_token(clinic, role)), 403)
    _problem(await clinic.client.post(path, json=body), 401)
    forged = {"Authorization": "Bearer " + "e30.e30.c2lnbmF0dXJl"}
    _problem(await clinic.client.post(path, json=body, headers=forged), 401)

    same_npwz_elsewhere = await _doctor(clinic, DOCTOR, OTHER_FACILITY)
    theirs = _problem(await clinic.post(path, body, same_npwz_elsewhere), 404)
    assert PATIENT not in str(theirs)
    _problem(await clinic.post(f"{RX}/requests/{uuid.uuid4()}/issue", body, await _doctor(clinic)), 404)
    assert _fields(await clinic.post(f"{RX}/requests/123/issue", body, await _doctor(clinic))) == ["path.request_id"]

    assert (await clinic.client.get(f"{RX}/requests/{request['id']}", headers=clinic.desk)).json()["status"] == "booked"
    # The NPWZ may be left out: the issuer is the practitioner of the token.
    without = {key: value for key, value in body.items() if key != "issuer_npwz"}
    issued = await clinic.post(path, without, await _doctor(clinic))
    assert issued.status_code == 201, issued.text
    key = issued.json()["prescriptions"][0]["key"]
    found = await clinic.client.get(f"{RX}/prescriptions/{key}", headers=clinic.desk)
    assert found.json()["issuer_npwz"] == DOCTOR


async def _problems_raised(clinic: Clinic) -> list[dict[str, Any]]:
    """The payloads of the problem notices the prescriptions service wrote, oldest first."""
    return [json.loads(e)["payload"] for e in await clinic.events("prescriptions.problem.raised")]


async def test_ikp_items_for_drugs_prescribed_elsewhere_are_taken_as_p1_sends_them(clinic: Clinic) -> None:
    # The portal's scope is "only drugs from the patient's account" and the account is empty: P1
    # already limited the IKP items to the patient's history (a specialist's, a private prescription).
    scoped = await clinic.client.put(
        f"{RX}/settings",
        json={"mode": "full", "activated_on": _in(0), "drug_scope": "patient_account"},
        headers=clinic.admin,
    )
    assert scoped.status_code == 200, scoped.text
    await _ikp_ready(clinic)
    await clinic.schedule(DOCTOR, "A", "rx", 2, "08:00", "09:00")
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    played = await clinic.client.post(
        "/sandbox/p1/ikp/requests",
        json={
            "facility_id": FACILITY,
            "patient_pesel": PATIENT,
            "doctor_npwz": DOCTOR,
            "items": [
                {"drug": "Concor 5 (od kardiologa)", "packages": 1, "submitted_at": at.isoformat()},
                {"drug": "Euthyrox N 50", "packages": 2, "submitted_at": (at + dt.timedelta(seconds=30)).isoformat()},
            ],
        },
    )
    assert played.status_code == 201, played.text

    requests = await _poll_and_seal(clinic)

    assert len(requests) == 1
    taken = requests[0]
    assert (taken["source"], taken["status"], taken["routed_to"], taken["problems"]) == ("ikp", "booked", "own", [])
    assert [(i["drug"], i["refused_reason"]) for i in taken["items"]] == [
        ("Concor 5 (od kardiologa)", None),
        ("Euthyrox N 50", None),
    ]
    assert await _problems_raised(clinic) == []
    issued = await clinic.post(
        f"{RX}/requests/{taken['id']}/issue", _issue_body(_rx(drug="Concor 5 (od kardiologa)")), await _doctor(clinic)
    )
    assert issued.status_code == 201, issued.text


async def test_a_portal_request_outside_the_drug_scope_is_refused_and_the_facility_is_notified(clinic: Clinic) -> None:
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "09:00")
    scoped = await clinic.client.put(
        f"{RX}/settings",
        json={
            "mode": "full",
            "activated_on": _in(0),
            "drug_scope": "patient_account",
            "problem_email": "problemy@clinic.example",
        },
        headers=clinic.admin,
    )
    assert scoped.status_code == 200, scoped.text
    await clinic.post(f"{RX}/patients/{PATIENT}/account-drugs", {"drug": "Metformax 500"}, clinic.desk)

    refused = await clinic.request(DOCTOR, "Metformax 500", "Xanax 1")

    assert _fields(refused) == ["body.items.1.drug"]
    assert "Xanax 1 was not previously prescribed" in _problem(refused, 422)["detail"]
    assert (await clinic.client.get(f"{RX}/requests", headers=clinic.desk)).json() == []
    notices = await _problems_raised(clinic)
    assert len(notices) == 1
    notice = notices[0]
    assert (notice["problem"], notice["problem_email"], notice["npwz"]) == (6, "problemy@clinic.example", DOCTOR)
    assert len(notice["details"]) == 1 and "Xanax 1" in notice["details"][0]
    assert "Metformax" not in notice["details"][0] and PATIENT not in json.dumps(notice)

    accepted = await clinic.request(DOCTOR, "Metformax 500")
    assert accepted.status_code == 201, accepted.text
    assert len(await _problems_raised(clinic)) == 1  # an accepted request raises no notice


async def test_a_polled_ikp_request_whose_location_is_gone_is_stored_refused_and_noticed_not_left_waiting(
    clinic: Clinic,
) -> None:
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "09:00")
    gone = str(uuid.uuid4())  # the location the items name no longer exists in the facility
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    bus = clinic.app.state.gateway.bus
    for number, drug in enumerate(("Nieznany lek", "Inny lek")):
        item = {
            "item_id": f"p1-item-{number}",
            "sequence": number + 1,
            "patient_pesel": PATIENT,
            "doctor_npwz": DOCTOR,
            "drug": drug,
            "packages": 1,
            "comment": None,
            "submitted_at": (at + dt.timedelta(seconds=30 * number)).isoformat(),
            "location_id": gone,
        }
        await bus.publish(Envelope(type="integration.ikp.item_received", facility_id=FACILITY, payload=item))
    await bus.drain()
    sealer = clinic.service("prescriptions").state.ctx.extras["sealer"]

    assert await sealer.seal_due(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)) == 1
    assert await sealer.seal_due(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=2)) == 0  # not again

    requests = (await clinic.client.get(f"{RX}/requests", headers=clinic.desk)).json()
    assert len(requests) == 1
    refused = requests[0]
    assert (refused["source"], refused["status"], refused["slot_id"], refused["problems"]) == (
        "ikp",
        "refused",
        None,
        [6],
    )
    assert refused["location_id"] == gone
    assert all("location" in (i["refused_reason"] or "") for i in refused["items"])
    notices = await _problems_raised(clinic)
    assert [(n["problem"], n["request_id"]) for n in notices] == [(6, refused["id"])]
    assert "Lokalizacja" in notices[0]["details"][0]

    answer = await clinic.post(
        f"{RX}/requests/{refused['id']}/issue", _issue_body(_rx(drug="Nieznany lek")), await _doctor(clinic)
    )
    assert "nothing to issue" in _problem(answer, 409)["detail"]
    after = (await clinic.client.get(f"{RX}/requests/{refused['id']}", headers=clinic.desk)).json()
    assert after["status"] == "refused"


async def test_a_retried_order_or_issue_with_the_same_idempotency_key_creates_nothing_new(clinic: Clinic) -> None:
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "09:00")
    once = {**clinic.desk, "Idempotency-Key": "order-1"}
    first = await clinic.client.post(f"{RX}/requests", json=_order(clinic), headers=once)
    retried = await clinic.client.post(f"{RX}/requests", json=_order(clinic), headers=once)
    assert first.status_code == retried.status_code == 201
    assert retried.json() == first.json()
    changed = await clinic.client.post(
        f"{RX}/requests", json=_order(clinic, {"drug": "Bisocard 5", "packages": 1}), headers=once
    )
    _problem(changed, 422)
    assert len((await clinic.client.get(f"{RX}/requests", headers=clinic.desk)).json()) == 1

    doctor = {**await _doctor(clinic), "Idempotency-Key": "issue-1"}
    path = f"{RX}/requests/{first.json()['id']}/issue"
    issued = await clinic.client.post(path, json=_issue_body(_rx()), headers=doctor)
    again = await clinic.client.post(path, json=_issue_body(_rx()), headers=doctor)
    assert issued.status_code == again.status_code == 201
    assert again.json()["package_key"] == issued.json()["package_key"]
    await clinic.settle()
    outgoing = (await clinic.client.get("/api/v1/integration/p1/outgoing", headers=clinic.admin)).json()
    assert [o["kind"] for o in outgoing] == ["register_package"]  # one package registered, not two


async def test_a_nurse_cannot_lift_her_quantity_limit_by_stating_another_profession(clinic: Clinic) -> None:
    await clinic.created(
        "/api/v1/scheduling/practitioners", {"name": "Piel. Nowak", "npwz": NURSE, "profession": "nurse", "poz": True}
    )
    request = await _booked_request(clinic)
    year = _rx(packages=1, units_per_package="720", daily_dose_units="2")  # 360 days: a doctor's limit
    answer = await clinic.post(
        f"{RX}/requests/{request['id']}/issue",
        _issue_body(year, npwz=NURSE, profession="doctor"),
        await _doctor(clinic, NURSE),
    )
    assert answer.status_code in (403, 422), answer.text
    after = (await clinic.client.get(f"{RX}/requests/{request['id']}", headers=clinic.desk)).json()
    assert after["status"] == "booked"


# ----------------------------------------------------------------------------- prescriptions by key


async def test_a_prescription_is_read_by_its_44_digit_key_in_its_own_facility_only(clinic: Clinic) -> None:
    package, _ = await _issued(clinic, _rx(drug="Bisocard 5", packages=3))
    key = package["prescriptions"][0]["key"]

    found = await clinic.client.get(f"{RX}/prescriptions/{key}", headers=clinic.desk)
    assert found.status_code == 200
    assert found.json() == {
        "key": key,
        "package_key": package["package_key"],
        "drug": "Bisocard 5",
        "packages": 3,
        "kind": "standard",
        "extended": False,
        "controlled_group": None,
        "valid_from": _in(0),
        "valid_until": _in(30),
        "status": "issued",
        "issuer_npwz": DOCTOR,
        "first_realised_on": None,
    }
    assert (
        await clinic.client.get(f"{RX}/prescriptions/{key}", headers=await _doctor(clinic, DUTY))
    ).status_code == 200

    for bad in (key[:43], key + "1", "x" * 44, key[:43] + "a"):
        assert _fields(await clinic.client.get(f"{RX}/prescriptions/{bad}", headers=clinic.desk)) == ["path.key"]
    unknown_key = "1" * 44
    unknown = _problem(await clinic.client.get(f"{RX}/prescriptions/{unknown_key}", headers=clinic.desk), 404)
    elsewhere = await _role_token(clinic, "registrar", OTHER_FACILITY)
    theirs = _problem(await clinic.client.get(f"{RX}/prescriptions/{key}", headers=elsewhere), 404)
    assert theirs["detail"] == unknown["detail"] and "Bisocard" not in str(theirs)
    _problem(await clinic.client.get(f"{RX}/prescriptions/{key}", headers=await _role_token(clinic, "patient")), 403)
    _problem(await clinic.client.get(f"{RX}/prescriptions/{key}"), 401)


async def test_the_issuer_cancels_once_and_again_without_a_second_cancellation(clinic: Clinic) -> None:
    package, doctor = await _issued(clinic, _rx(), _rx(drug="Bisocard 5"))
    key, kept = (p["key"] for p in package["prescriptions"])
    cancel = f"{RX}/prescriptions/{key}/cancel"

    colleague = _problem(await clinic.post(cancel, {}, await _doctor(clinic, DUTY)), 404)
    same_npwz_elsewhere = _problem(await clinic.post(cancel, {}, await _doctor(clinic, DOCTOR, OTHER_FACILITY)), 404)
    unknown = _problem(await clinic.post(f"{RX}/prescriptions/{'2' * 44}/cancel", {}, doctor), 404)
    assert colleague["detail"] == same_npwz_elsewhere["detail"] == unknown["detail"]
    for role in ("registrar", "facility_admin", "patient"):
        _problem(await clinic.post(cancel, {}, await _role_token(clinic, role)), 403)
    _problem(await clinic.client.post(cancel), 401)
    assert _fields(await clinic.post(f"{RX}/prescriptions/{key[:43]}/cancel", {}, doctor)) == ["path.key"]
    assert (await clinic.client.get(f"{RX}/prescriptions/{key}", headers=clinic.desk)).json()["status"] == "issued"

    first = await clinic.post(cancel, {}, doctor)
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    again = await clinic.post(cancel, {}, doctor)
    assert again.status_code == 200 and again.json() == first.json()
    assert (await clinic.client.get(f"{RX}/prescriptions/{key}", headers=clinic.desk)).json()["status"] == "cancelled"
    assert (await clinic.client.get(f"{RX}/prescriptions/{kept}", headers=clinic.desk)).json()["status"] == "issued"

    await clinic.settle()
    outgoing = (await clinic.client.get("/api/v1/integration/p1/outgoing", headers=clinic.admin)).json()
    assert sorted((o["kind"], o["reference"]) for o in outgoing) == [
        ("cancel_prescription", key),  # P1 is told once, whatever the number of clicks
        ("register_package", package["package_key"]),
    ]


def _realisation(key: str, realised_on: str) -> dict[str, Any]:
    """The pharmacy's realisation event (the prescriptions service reads only the key and the day)."""
    return {
        "realisation_id": str(uuid.uuid4()),
        "key": key,
        "pharmacy_id": "apteka-1",
        "packages": 1,
        "realised_on": realised_on,
        "outage": False,
    }


async def test_after_the_pharmacys_first_realisation_the_prescription_can_no_longer_be_cancelled(
    clinic: Clinic,
) -> None:
    package, doctor = await _issued(clinic, _rx(), _rx(drug="Bisocard 5"))
    key, other = (p["key"] for p in package["prescriptions"])
    bus = clinic.app.state.gateway.bus
    realised = Envelope(type="pharmacy.realisation.recorded", payload=_realisation(key, _in(0)))
    await bus.publish(realised)
    await bus.drain()

    seen = await clinic.client.get(f"{RX}/prescriptions/{key}", headers=clinic.desk)
    assert (seen.json()["first_realised_on"], seen.json()["status"]) == (_in(0), "issued")
    refused = _problem(await clinic.post(f"{RX}/prescriptions/{key}/cancel", {}, doctor), 409)
    assert _in(0) in refused["detail"] and "can no longer be cancelled" in refused["detail"]
    assert (await clinic.client.get(f"{RX}/prescriptions/{key}", headers=clinic.desk)).json() == seen.json()

    # The same event again - even carrying another day - is consumed once: nothing changes.
    duplicate = Envelope(id=realised.id, type=realised.type, payload=_realisation(key, _in(-3)))
    await bus.publish(realised)
    await bus.publish(duplicate)
    await bus.drain()
    assert (await clinic.client.get(f"{RX}/prescriptions/{key}", headers=clinic.desk)).json() == seen.json()
    # A later realisation of the same prescription keeps the first day.
    await bus.publish(Envelope(type=realised.type, payload=_realisation(key, _in(2))))
    await bus.drain()
    assert (await clinic.client.get(f"{RX}/prescriptions/{key}", headers=clinic.desk)).json() == seen.json()

    # The package's other prescription was not realised: its issuer may still cancel it.
    cancelled = await clinic.post(f"{RX}/prescriptions/{other}/cancel", {}, doctor)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"


# ----------------------------------------------------------------------------- roles and tokens


async def test_every_endpoint_refuses_a_missing_token_and_each_role_it_does_not_admit(clinic: Clinic) -> None:
    some_id, key = uuid.uuid4(), "3" * 44
    clinic_roles = {"facility_admin", "registrar", "practitioner", "partner"}
    matrix: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
        ("PUT", f"{RX}/settings", {"mode": "off"}, {"facility_admin"}),
        ("GET", f"{RX}/settings", None, clinic_roles),
        ("PUT", f"{RX}/practitioners/{DOCTOR}/ordering", {"enabled": True}, {"facility_admin"}),
        (
            "POST",
            f"{RX}/patients/{PATIENT}/account-drugs",
            {"drug": "X"},
            {"facility_admin", "registrar", "practitioner"},
        ),
        ("GET", f"{RX}/patients/{PATIENT}/account-drugs", None, clinic_roles | {"patient"}),
        ("POST", f"{RX}/requests", _order(clinic), {"facility_admin", "registrar", "partner", "patient"}),
        ("GET", f"{RX}/requests", None, clinic_roles),
        ("GET", f"{RX}/requests/{some_id}", None, clinic_roles | {"patient"}),
        ("POST", f"{RX}/requests/{some_id}/issue", _issue_body(_rx()), {"practitioner"}),
        ("GET", f"{RX}/prescriptions/{key}", None, clinic_roles),
        ("POST", f"{RX}/prescriptions/{key}/cancel", None, {"practitioner"}),
    ]
    tokens = {role: await _role_token(clinic, role) for role in ROLES}
    for method, path, body, allowed in matrix:
        anonymous = await clinic.client.request(method, path, json=body)
        assert "token" in _problem(anonymous, 401)["detail"], (method, path)
        for role in sorted(set(ROLES) - allowed):
            answer = await clinic.client.request(method, path, json=body, headers=tokens[role])
            assert f"role {role} may not do this" in _problem(answer, 403)["detail"], (method, path, role)
    for role in sorted(clinic_roles):
        assert (await clinic.client.get(f"{RX}/settings", headers=tokens[role])).status_code == 200, role
        assert (await clinic.client.get(f"{RX}/requests", headers=tokens[role])).status_code == 200, role
    # Nothing the refused calls carried was applied.
    assert (await clinic.client.get(f"{RX}/settings", headers=clinic.admin)).json()["mode"] == "demo"
    assert (await clinic.client.get(f"{RX}/requests", headers=clinic.desk)).json() == []

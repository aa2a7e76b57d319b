"""E-prescription realisation at the pharmacy as clients see it: through the gateway (embedded).

API.md's Pharmacy rows ``POST /prescriptions/lookup`` and ``POST /realizations`` with DOMAIN.md 3 and 4:
each bad field named in a problem+json 422, only a pharmacist, the scanned key opening its prescription
alone and the access code + PESEL the package (wrong codes limited per pharmacy and per PESEL), the
validity windows on
their last day and the day after, the 180-day cap per visit, partial realisation bound to one pharmacy,
substitutes, idempotent retries, the report to P1 and the prescriptions service learning the first
realisation.

Prescriptions come either from the clinic (issued through the prescriptions service, registered in the P1
sandbox by the integration service's queue) or straight from the P1 sandbox (``POST /sandbox/p1/prescriptions``)
when the test needs a kind or issue date the clinic cannot produce today (issued 100 days ago, a narcotic,
20 packages of a 365-day prescription).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from services.pharmacy.models import PrescriptionHold, PrescriptionRealisation
from shared.clock import FixedClock
from tests.e2e import test_prescriptions_flow as flow
from tests.e2e.test_prescriptions_flow import DOCTOR, FACILITY, PATIENT, PATIENT_2, WARSAW, Clinic, _rx
from tests.e2e.test_realisation_flow import _issued, _pharmacist

clinic = flow.clinic  # the e2e flow's facility fixture, used here by name

LOOKUP = "/api/v1/pharmacy/prescriptions/lookup"
REALISE = "/api/v1/pharmacy/realizations"
BAD_PESEL = "44051401358"  # PATIENT with a wrong checksum
A, B = "apteka-a", "apteka-b"
_numbers = itertools.count(1)


# ----------------------------------------------------------------------------- helpers


def _today() -> dt.date:
    return dt.datetime.now(WARSAW).date()


def _on(days: int) -> str:
    return (_today() + dt.timedelta(days=days)).isoformat()


def _problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["title"] and body["type"]
    return body


def _fields(answer: httpx.Response) -> list[str]:
    return [e["field"] for e in _problem(answer, 422).get("errors", [])]


def _line(
    kind: str = "standard",
    *,
    packages: int = 2,
    units: str = "30",
    dose: str = "1",
    drug: str = "Metformax 500",
    valid_from: dt.date | None = None,
) -> dict[str, Any]:
    """One prescription of a sandbox package; ``valid_from`` None: the issue date."""
    return {
        "kind": kind,
        "packages": packages,
        "units_per_package": units,
        "daily_dose_units": dose,
        "drug": drug,
        "valid_from": valid_from,
    }


async def _registered(clinic: Clinic, *lines: dict[str, Any], issued_days_ago: int = 0) -> dict[str, Any]:
    """A package registered straight in the P1 sandbox for PATIENT_2: ``{package_key, access_code, keys}``."""
    number = next(_numbers)
    issued_on = _today() - dt.timedelta(days=issued_days_ago)
    days = {"standard": 30, "extended": 365, "antibiotic": 7, "narcotic_psychotropic": 30}
    prescriptions = []
    for index, line in enumerate(lines or (_line(),)):
        valid_from = line["valid_from"] or issued_on
        prescriptions.append(
            {
                "key": f"8{number:039d}{index:04d}",
                "drug": line["drug"],
                "packages": line["packages"],
                "units_per_package": line["units_per_package"],
                "daily_dose_units": line["daily_dose_units"],
                "kind": line["kind"],
                "valid_from": valid_from.isoformat(),
                "valid_until": (valid_from + dt.timedelta(days=days.get(line["kind"], 120))).isoformat(),
            }
        )
    package = {
        "package_key": f"7{number:043d}",
        "access_code": f"{1000 + number % 9000:04d}",
        "patient_pesel": PATIENT_2,
        "facility_id": FACILITY,
        "issuer_npwz": DOCTOR,
        "issued_on": issued_on.isoformat(),
        "prescriptions": prescriptions,
    }
    answer = await clinic.client.post("/sandbox/p1/prescriptions", json=package)
    assert answer.status_code == 201, answer.text
    return {
        "package_key": package["package_key"],
        "access_code": package["access_code"],
        "keys": [p["key"] for p in prescriptions],
    }


async def _open(clinic: Clinic, token: dict[str, str], package: dict[str, Any], pesel: str) -> dict[str, Any]:
    """The pharmacist enters the package's access code with the PESEL (the key becomes visible here)."""
    answer = await clinic.post(LOOKUP, {"access_code": package["access_code"], "pesel": pesel}, token)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def _sandbox_rx(clinic: Clinic, token: dict[str, str], *lines: dict[str, Any], issued_days_ago: int = 0) -> str:
    """A one-prescription sandbox package opened by ``token``'s pharmacy: its key."""
    package = await _registered(clinic, *lines, issued_days_ago=issued_days_ago)
    await _open(clinic, token, package, PATIENT_2)
    key: str = package["keys"][0]
    return key


async def _clinic_rx(clinic: Clinic, token: dict[str, str], **overrides: Any) -> str:
    """A one-prescription package issued by the clinic and opened by ``token``'s pharmacy: its key."""
    package = await _issued(clinic, _rx(**overrides))
    await _open(clinic, token, package, PATIENT)
    key: str = package["prescriptions"][0]["key"]
    return key


def _move_to(clinic: Clinic, day: int | None) -> None:
    """The pharmacy's clock at noon of today + ``day`` (Warsaw): its realisations and lookups are dated then."""
    if day is not None:
        noon = dt.datetime.combine(_today() + dt.timedelta(days=day), dt.time(12), tzinfo=WARSAW)
        clinic.service("pharmacy").state.ctx.clock = FixedClock(noon)


async def _realise(
    clinic: Clinic, token: dict[str, str], key: str, packages: int, day: int | None = None, **extra: Any
) -> httpx.Response:
    _move_to(clinic, day)
    return await clinic.post(REALISE, {"key": key, "packages": packages, **extra}, token)


async def _by_key(clinic: Clinic, token: dict[str, str], key: str, day: int | None = None) -> httpx.Response:
    _move_to(clinic, day)
    return await clinic.post(LOOKUP, {"key": key}, token)


async def _report(clinic: Clinic) -> None:
    """The pharmacy's events published and consumed, and the integration service's P1 queue sent."""
    await clinic.service("pharmacy").state.ctx.relay.publish_pending()
    await clinic.settle()
    await clinic.service("integration").state.ctx.extras["forwarder"].forward_pending()


async def _in_p1(clinic: Clinic, key: str) -> dict[str, Any]:
    answer = await clinic.client.get(f"/sandbox/p1/prescriptions/{key}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


# ----------------------------------------------------------------------------- lookup: bad input


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"key": "1" * 43}, "body.key"),
        ({"key": "1" * 45}, "body.key"),
        ({"key": "1" * 43 + "x"}, "body.key"),
        ({"access_code": "123", "pesel": PATIENT}, "body.access_code"),
        ({"access_code": "12345", "pesel": PATIENT}, "body.access_code"),
        ({"access_code": "12a4", "pesel": PATIENT}, "body.access_code"),
        ({"access_code": "1234", "pesel": BAD_PESEL}, "body.pesel"),
        ({"access_code": "1234", "pesel": "4405140135"}, "body.pesel"),
        ({"key": "1" * 44, "access_code": "1234", "pesel": PATIENT}, "body.key"),
        ({"key": "1" * 44, "access_code": "1234"}, "body.key"),
        ({"access_code": "1234"}, "body.pesel"),
        ({"pesel": PATIENT}, "body.access_code"),
        ({}, "body.access_code"),
        ({"key": "1" * 44, "on_date": "9999-12-31"}, "body.on_date"),
        ({"key": "1" * 44, "on_date": "1999-12-31"}, "body.on_date"),
        ({"key": "1" * 44, "on_date": "2024-02-30"}, "body.on_date"),
        ({"key": "1" * 44, "shelf": "B2"}, "body.shelf"),
    ],
)
async def test_bad_lookup_input_names_the_field(clinic: Clinic, body: dict[str, Any], field: str) -> None:
    a = await _pharmacist(clinic, A)

    answer = await clinic.post(LOOKUP, body, a)

    assert field in _fields(answer)


async def test_bad_lookups_do_not_count_against_the_pharmacy_as_wrong_codes(clinic: Clinic) -> None:
    package = await _registered(clinic)
    a = await _pharmacist(clinic, A)
    for _ in range(8):
        assert (await clinic.post(LOOKUP, {"access_code": "12", "pesel": PATIENT_2}, a)).status_code == 422

    assert (
        await clinic.post(LOOKUP, {"access_code": package["access_code"], "pesel": PATIENT_2}, a)
    ).status_code == 200


# ----------------------------------------------------------------------------- roles


@pytest.mark.parametrize("role", ["registrar", "practitioner", "patient", "facility_admin", "partner"])
async def test_only_a_pharmacist_looks_up_and_realises(clinic: Clinic, role: str) -> None:
    package = await _registered(clinic)
    claims = {"sub": f"someone-{role}", "role": role, "facility_id": FACILITY}
    if role == "patient":
        claims["pesel"] = PATIENT_2
    if role == "practitioner":
        claims["npwz"] = DOCTOR
    token = await clinic.token(**claims)

    by_code = await clinic.post(LOOKUP, {"access_code": package["access_code"], "pesel": PATIENT_2}, token)
    realised = await _realise(clinic, token, package["keys"][0], 1)

    _problem(by_code, 403)
    _problem(realised, 403)
    assert (await _in_p1(clinic, package["keys"][0]))["packages_dispensed"] == 0


async def test_no_token_or_a_forged_one_is_401(clinic: Clinic) -> None:
    package = await _registered(clinic)
    body = {"access_code": package["access_code"], "pesel": PATIENT_2}

    _problem(await clinic.client.post(LOOKUP, json=body), 401)
    _problem(await clinic.client.post(REALISE, json={"key": package["keys"][0], "packages": 1}), 401)
    forged = {"Authorization": "Bearer not.a.token"}
    _problem(await clinic.client.post(LOOKUP, json=body, headers=forged), 401)


# ----------------------------------------------------------------------------- lookup: answers and visibility


async def test_a_key_lookup_answers_the_shape_of_the_contract(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a, packages=3)

    answer = await _by_key(clinic, a, key)

    assert answer.status_code == 200, answer.text
    found = answer.json()
    assert {
        k: found[k]
        for k in (
            "key",
            "drug",
            "packages_prescribed",
            "packages_dispensed",
            "packages_dispensable",
            "valid_until",
            "reduction_days",
        )
    } == {
        "key": key,
        "drug": "Metformax 500",
        "packages_prescribed": 3,
        "packages_dispensed": 0,
        "packages_dispensable": 3,
        "valid_until": _on(30),
        "reduction_days": 0,
    }


async def test_a_package_of_three_by_code_shows_all_three_and_each_key_opens_alone_anywhere(clinic: Clinic) -> None:
    package = await _issued(
        clinic, _rx(), _rx(drug="Bisocard 5", packages=1), _rx(drug="Amotaks 1g", kind="antibiotic", packages=1)
    )
    keys = [p["key"] for p in package["prescriptions"]]
    a, b = await _pharmacist(clinic, A), await _pharmacist(clinic, B)

    found = await _open(clinic, a, package, PATIENT)

    assert found["package_key"] == package["package_key"]
    assert [p["key"] for p in found["prescriptions"]] == keys
    assert [(p["drug"], p["packages_prescribed"]) for p in found["prescriptions"]] == [
        ("Metformax 500", 2),
        ("Bisocard 5", 1),
        ("Amotaks 1g", 1),
    ]
    assert [p["valid_until"] for p in found["prescriptions"]] == [_on(30), _on(30), _on(7)]
    assert [p["reason_code"] for p in found["prescriptions"]] == [None, None, None]
    for key in keys:  # the key scanned from the printout: only that prescription, in any pharmacy
        assert (await _by_key(clinic, a, key)).json()["key"] == key
        scanned = await _by_key(clinic, b, key)
        assert scanned.status_code == 200 and "package_key" not in scanned.json()
        assert scanned.json()["key"] == key and scanned.json()["packages_dispensable"] >= 1


async def test_the_scanned_key_alone_opens_and_realises_a_prescription_no_code_was_entered_for(
    clinic: Clinic,
) -> None:
    package = await _issued(clinic, _rx(packages=3))
    key = package["prescriptions"][0]["key"]
    b = await _pharmacist(clinic, B)

    scanned = await _by_key(clinic, b, key)
    realised = await _realise(clinic, b, key, 2)

    assert scanned.status_code == 200, scanned.text
    assert (scanned.json()["packages_dispensable"], scanned.json()["reason"]) == (3, None)
    assert realised.status_code == 201 and realised.json()["packages_remaining"] == 1


async def test_a_key_partly_realised_in_another_pharmacy_opens_with_nothing_dispensable_and_the_reason(
    clinic: Clinic,
) -> None:
    a, b = await _pharmacist(clinic, A), await _pharmacist(clinic, B)
    key = await _clinic_rx(clinic, a, packages=3)
    assert (await _realise(clinic, a, key, 1)).status_code == 201

    scanned = await _by_key(clinic, b, key)
    realised = await _realise(clinic, b, key, 1)

    assert scanned.status_code == 200, scanned.text
    found = scanned.json()
    assert (found["packages_dispensed"], found["packages_dispensable"], found["held_by_this_pharmacy"]) == (1, 0, False)
    assert found["reason_code"] == "realised_elsewhere" and "another pharmacy" in found["reason"]
    assert A not in scanned.text  # which pharmacy the patient went to is not told
    assert "another pharmacy" in _problem(realised, 409)["detail"] and A not in realised.text


async def test_an_unknown_key_is_404_saying_what_the_pharmacist_can_do(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)

    unknown = _problem(await _by_key(clinic, a, "9" * 44), 404)

    assert "scan the QR code again" in unknown["detail"] and "access code" in unknown["detail"]


async def test_a_key_scan_is_never_blocked_by_the_per_pesel_code_limit(clinic: Clinic) -> None:
    _fix_pharmacy_clock(clinic)
    package = await _registered(clinic, _line(packages=2))
    guessers = [await _pharmacist(clinic, f"apteka-{n}") for n in range(5)]
    for n in range(10):
        _problem(await _code(clinic, guessers[n % 5], _wrong(package, n)), 404)
    a = await _pharmacist(clinic, A)
    _problem(await _code(clinic, a, package["access_code"]), 429)

    scanned = await _by_key(clinic, a, package["keys"][0])
    realised = await _realise(clinic, a, package["keys"][0], 1)

    assert scanned.status_code == 200 and scanned.json()["packages_dispensable"] == 2
    assert realised.status_code == 201, realised.text


async def test_a_key_realised_partly_here_stays_visible_here_and_is_held_by_this_pharmacy(clinic: Clinic) -> None:
    a, b = await _pharmacist(clinic, A), await _pharmacist(clinic, B)
    package = await _issued(clinic, _rx(packages=3))
    key = package["prescriptions"][0]["key"]
    await _open(clinic, a, package, PATIENT)
    assert (await _realise(clinic, a, key, 1)).status_code == 201

    mine = (await _by_key(clinic, a, key)).json()
    theirs = (await _open(clinic, b, package, PATIENT))["prescriptions"][0]

    assert (mine["packages_dispensed"], mine["packages_dispensable"], mine["held_by_this_pharmacy"]) == (1, 2, True)
    assert (theirs["packages_dispensed"], theirs["packages_dispensable"], theirs["held_by_this_pharmacy"]) == (
        1,
        0,
        False,
    )
    elsewhere = _problem(await _realise(clinic, b, key, 1), 409)
    assert "another pharmacy" in elsewhere["detail"]
    assert (await _realise(clinic, a, key, 2)).json()["packages_remaining"] == 0


async def test_a_wrong_code_or_another_patients_pesel_is_404(clinic: Clinic) -> None:
    package = await _registered(clinic)
    a = await _pharmacist(clinic, A)
    wrong = "0000" if package["access_code"] != "0000" else "1111"

    _problem(await clinic.post(LOOKUP, {"access_code": wrong, "pesel": PATIENT_2}, a), 404)
    _problem(await clinic.post(LOOKUP, {"access_code": package["access_code"], "pesel": PATIENT}, a), 404)


# ----------------------------------------------------------------------------- the access-code limit


def _fix_pharmacy_clock(clinic: Clinic) -> FixedClock:
    clock = FixedClock(dt.datetime.now(dt.UTC))
    clinic.service("pharmacy").state.ctx.clock = clock
    return clock


async def _code(clinic: Clinic, token: dict[str, str], code: str, pesel: str = PATIENT_2) -> httpx.Response:
    return await clinic.post(LOOKUP, {"access_code": code, "pesel": pesel}, token)


def _wrong(package: dict[str, Any], n: int) -> str:
    code = f"{(int(package['access_code']) + 1 + n) % 10000:04d}"
    assert code != package["access_code"]
    return code


async def test_a_wrong_code_says_what_to_do_and_how_many_tries_are_left(clinic: Clinic) -> None:
    package = await _registered(clinic)
    a = await _pharmacist(clinic, A)

    first = _problem(await _code(clinic, a, _wrong(package, 0)), 404)
    second = _problem(await _code(clinic, a, _wrong(package, 1)), 404)

    assert "scan the QR code" in first["detail"] and "PESEL" in first["detail"]
    assert (first["attempts_left"], second["attempts_left"]) == (4, 3)
    assert package["access_code"] not in first["detail"]


async def test_the_sixth_wrong_code_waits_with_retry_after_until_the_first_leaves_the_window(clinic: Clinic) -> None:
    clock = _fix_pharmacy_clock(clinic)
    package = await _registered(clinic)
    a = await _pharmacist(clinic, A)
    for n in range(5):
        _problem(await _code(clinic, a, _wrong(package, n)), 404)
        clock.advance(seconds=10)

    paused = await _code(clinic, a, package["access_code"])
    clock.advance(seconds=549)
    still = await _code(clinic, a, package["access_code"])
    clock.advance(seconds=1)
    again = await _code(clinic, a, package["access_code"])

    body = _problem(paused, 429)
    assert paused.headers["Retry-After"] == "550" and body["retry_after_seconds"] == 550  # first guess 600 s old
    assert body["limit"] == "pharmacy" and "scan the QR code" in body["detail"]
    assert still.headers["Retry-After"] == "1"
    assert again.status_code == 200, again.text


async def test_right_codes_are_released_so_a_busy_pharmacy_is_never_paused_by_its_hits(clinic: Clinic) -> None:
    _fix_pharmacy_clock(clinic)
    package = await _registered(clinic)
    a = await _pharmacist(clinic, A)
    for n in range(4):
        _problem(await _code(clinic, a, _wrong(package, n)), 404)

    hits = [(await _code(clinic, a, package["access_code"])).status_code for _ in range(12)]
    fifth_miss = await _code(clinic, a, _wrong(package, 4))
    sixth_miss = await _code(clinic, a, _wrong(package, 5))

    assert hits == [200] * 12
    assert _problem(fifth_miss, 404)["attempts_left"] == 0
    _problem(sixth_miss, 429)


async def test_many_pharmacies_guessing_one_patients_code_are_stopped_at_the_per_pesel_limit(clinic: Clinic) -> None:
    _fix_pharmacy_clock(clinic)
    package = await _registered(clinic)
    guessers = [await _pharmacist(clinic, f"apteka-{n}") for n in range(5)]
    misses = [(await _code(clinic, guessers[n % 5], _wrong(package, n))).status_code for n in range(10)]

    eleventh = await _code(clinic, await _pharmacist(clinic, "apteka-x"), _wrong(package, 10))
    right_code = await _code(clinic, await _pharmacist(clinic, "apteka-y"), package["access_code"])
    other_patient = await _code(clinic, await _pharmacist(clinic, "apteka-y"), "0000", PATIENT)

    assert misses == [404] * 10  # two per pharmacy: no pharmacy reached its own limit of 5
    assert _problem(eleventh, 429)["limit"] == "patient" and int(eleventh.headers["Retry-After"]) > 0
    assert _problem(right_code, 429)["limit"] == "patient"
    assert "scan the QR code" in right_code.json()["detail"]
    _problem(other_patient, 404)  # the pause is this PESEL's alone


async def test_p1_down_answers_503_on_lookup_and_realisation(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    package = await _registered(clinic)
    await _open(clinic, a, package, PATIENT_2)
    assert (await clinic.client.post("/sandbox/p1/down")).status_code == 200

    by_code = await clinic.post(LOOKUP, {"access_code": package["access_code"], "pesel": PATIENT_2}, a)
    by_key = await _by_key(clinic, a, package["keys"][0])
    realised = await _realise(clinic, a, package["keys"][0], 1)

    assert "P1" in _problem(by_code, 503)["detail"]
    _problem(by_key, 503)
    _problem(realised, 503)
    await clinic.client.post("/sandbox/p1/up")
    assert (await _by_key(clinic, a, package["keys"][0])).json()["packages_dispensed"] == 0


async def test_a_realisation_p1_recorded_for_a_pharmacy_outside_the_suite_binds_the_rest_there(
    clinic: Clinic,
) -> None:
    package = await _registered(clinic, _line(packages=3))
    key = package["keys"][0]
    outside = {"realisation_id": str(uuid.uuid4()), "pharmacy_id": "apteka-poza", "packages": 1, "realised_on": _on(0)}
    assert (await clinic.client.post(f"/sandbox/p1/prescriptions/{key}/realisations", json=outside)).status_code == 201
    a = await _pharmacist(clinic, A)

    found = (await _open(clinic, a, package, PATIENT_2))["prescriptions"][0]
    refused = await _realise(clinic, a, key, 1)

    assert (found["packages_dispensed"], found["packages_dispensable"], found["held_by_this_pharmacy"]) == (1, 0, False)
    assert "another pharmacy" in _problem(refused, 409)["detail"]
    assert (await _in_p1(clinic, key))["packages_dispensed"] == 1


async def test_two_pharmacies_realising_at_the_same_moment_one_gets_it_the_other_is_refused(clinic: Clinic) -> None:
    package = await _registered(clinic, _line(packages=2))
    key = package["keys"][0]
    a, b = await _pharmacist(clinic, A), await _pharmacist(clinic, B)
    await _open(clinic, a, package, PATIENT_2)
    await _open(clinic, b, package, PATIENT_2)

    answers = await asyncio.gather(_realise(clinic, a, key, 2), _realise(clinic, b, key, 2))

    assert sorted(r.status_code for r in answers) == [201, 422]
    winner = A if answers[0].status_code == 201 else B
    loser = answers[1] if winner == A else answers[0]
    assert _problem(loser, 422)["errors"][0]["field"] == "body.packages"
    await _report(clinic)
    in_p1 = await _in_p1(clinic, key)
    assert (in_p1["packages_dispensed"], in_p1["pharmacy_id"]) == (2, winner)


async def test_the_same_pharmacy_twice_at_once_never_dispenses_more_than_prescribed(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _sandbox_rx(clinic, a, _line(packages=3))

    answers = await asyncio.gather(*(_realise(clinic, a, key, 2) for _ in range(3)))

    assert sorted(r.status_code for r in answers) == [201, 422, 422]
    assert (await _by_key(clinic, a, key)).json()["packages_dispensed"] == 2


# ----------------------------------------------------------------------------- the realisation date


@pytest.mark.parametrize("day", [-1, 0, 5])
async def test_a_pharmacist_cannot_date_a_realisation_not_even_today(clinic: Clinic, day: int) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a, packages=2)

    dated = await _realise(clinic, a, key, 1, on_date=_on(day))

    assert _fields(dated) == ["body.on_date"] and "outage" in dated.json()["detail"]
    assert (await _by_key(clinic, a, key)).json()["packages_dispensed"] == 0


async def test_a_realisation_is_filed_with_p1_under_the_servers_date(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a, packages=2)

    assert (await _realise(clinic, a, key, 1, day=3)).status_code == 201
    await _report(clinic)

    assert [(r["realised_on"], r["outage"]) for r in (await _in_p1(clinic, key))["realisations"]] == [(_on(3), False)]


def _printout(package: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """What the patient's printout of a ``_registered`` default line shows."""
    return {
        "package_key": package["package_key"],
        "patient_pesel": PATIENT_2,
        "drug": "Metformax 500",
        "kind": "standard",
        "issued_on": _on(0),
        "packages": 2,
        "units_per_package": "30",
        "daily_dose_units": "1",
        **changes,
    }


async def test_an_outage_realisation_is_dated_back_to_the_first_failed_call_to_p1_and_no_further(
    clinic: Clinic,
) -> None:
    a = await _pharmacist(clinic, A)
    package = await _registered(clinic)
    key = package["keys"][0]
    assert (await clinic.client.post("/sandbox/p1/down")).status_code == 200
    _problem(await _by_key(clinic, a, key, day=1), 503)  # P1 fails first on day 1
    outage = {"outage_statement": True, "printout": _printout(package), "identity_document": "id_card"}

    before_the_outage = await _realise(clinic, a, key, 1, day=3, on_date=_on(0), **outage)
    in_the_future = await _realise(clinic, a, key, 1, on_date=_on(4), **outage)
    first_day_down = await _realise(clinic, a, key, 1, on_date=_on(1), **outage)

    assert _fields(before_the_outage) == ["body.on_date"] and _on(1) in before_the_outage.json()["detail"]
    assert _fields(in_the_future) == ["body.on_date"] and "future" in in_the_future.json()["detail"]
    assert first_day_down.status_code == 201, first_day_down.text
    assert (await clinic.client.post("/sandbox/p1/up")).status_code == 200
    await clinic.settle()
    await (
        clinic.service("integration")
        .state.ctx.extras["forwarder"]
        .forward_pending(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    )
    in_p1 = await _in_p1(clinic, key)
    assert [(r["realised_on"], r["outage"]) for r in in_p1["realisations"]] == [(_on(1), True)]


async def test_once_p1_answers_again_a_later_outage_starts_afresh(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    package = await _registered(clinic, _line(packages=3))
    key = package["keys"][0]
    assert (await clinic.client.post("/sandbox/p1/down")).status_code == 200
    _problem(await _by_key(clinic, a, key, day=0), 503)
    assert (await clinic.client.post("/sandbox/p1/up")).status_code == 200
    assert (await _by_key(clinic, a, key, day=1)).status_code == 200  # P1 answers: the outage is over
    assert (await clinic.client.post("/sandbox/p1/down")).status_code == 200

    dated_in_the_old_outage = await _realise(
        clinic,
        a,
        key,
        1,
        day=2,
        on_date=_on(0),
        outage_statement=True,
        printout=_printout(package, packages=3),
        identity_document="passport",
    )

    assert _fields(dated_in_the_old_outage) == ["body.on_date"] and _on(2) in dated_in_the_old_outage.json()["detail"]


# ----------------------------------------------------------------------------- outage realisation


async def test_with_p1_down_neither_a_bare_key_nor_a_statement_without_the_documents_realises(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    package = await _registered(clinic)
    key = package["keys"][0]
    assert (await _by_key(clinic, a, key)).status_code == 200  # seen while P1 was up
    assert (await clinic.client.post("/sandbox/p1/down")).status_code == 200

    bare_key = await _realise(clinic, a, key, 1)
    no_printout = await _realise(clinic, a, key, 1, outage_statement=True, identity_document="id_card")
    no_document = await _realise(clinic, a, key, 1, outage_statement=True, printout=_printout(package))
    no_statement = await _realise(clinic, a, key, 1, printout=_printout(package), identity_document="id_card")

    assert "P1 is unreachable" in _problem(bare_key, 503)["detail"]
    assert _fields(no_printout) == ["body.printout"]
    assert _fields(no_document) == ["body.identity_document"]
    assert _fields(no_statement) == ["body.outage_statement"]
    async with clinic.service("pharmacy").state.ctx.sessions() as session:
        assert await session.scalar(sa.select(sa.func.count()).select_from(PrescriptionRealisation)) == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"patient_pesel": PATIENT}, "body.printout.patient_pesel"),
        ({"drug": "Metformax 850"}, "body.printout.drug"),
        ({"packages": 5}, "body.printout.packages"),
        ({"package_key": "7" * 44}, "body.printout.package_key"),
    ],
)
async def test_an_outage_printout_that_contradicts_what_p1_showed_this_pharmacy_is_refused(
    clinic: Clinic, change: dict[str, Any], field: str
) -> None:
    a = await _pharmacist(clinic, A)
    package = await _registered(clinic)
    key = package["keys"][0]
    await _open(clinic, a, package, PATIENT_2)  # by code + PESEL: this pharmacy knows the patient
    assert (await clinic.client.post("/sandbox/p1/down")).status_code == 200
    documents = {"outage_statement": True, "identity_document": "passport"}

    forged = await _realise(clinic, a, key, 1, printout=_printout(package, **change), **documents)
    genuine = await _realise(clinic, a, key, 1, printout=_printout(package, drug=" metformax 500"), **documents)

    assert _fields(forged) == [field]
    assert PATIENT not in forged.text and PATIENT_2 not in forged.text
    assert genuine.status_code == 201 and genuine.json()["outage"] is True
    async with clinic.service("pharmacy").state.ctx.sessions() as session:
        recorded = list(await session.scalars(sa.select(PrescriptionRealisation)))
    assert [(r.outage, r.identity_document, r.packages) for r in recorded] == [(True, "passport", 1)]


async def test_an_outage_realisation_of_a_prescription_never_seen_here_goes_on_the_printout(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    package = await _registered(clinic)
    key = package["keys"][0]
    assert (await clinic.client.post("/sandbox/p1/down")).status_code == 200

    realised = await _realise(
        clinic, a, key, 1, outage_statement=True, printout=_printout(package), identity_document="mobywatel"
    )

    assert realised.status_code == 201, realised.text
    assert (realised.json()["packages_remaining"], realised.json()["outage"]) == (1, True)


# ----------------------------------------------------------------------------- validity windows


async def test_a_standard_prescription_is_realisable_through_issue_plus_30_and_not_a_day_more(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a)

    late = await _realise(clinic, a, key, 1, day=31)
    last_day = await _realise(clinic, a, key, 1, day=30)

    assert _fields(late) == ["body.key"] and _on(30) in late.json()["detail"]
    assert last_day.status_code == 201, last_day.text
    assert (await _by_key(clinic, a, key, day=31)).json()["packages_dispensable"] == 0


async def test_partial_realisation_does_not_extend_validity(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a, packages=3)
    assert (await _realise(clinic, a, key, 1, day=29)).status_code == 201

    rest = await _realise(clinic, a, key, 2, day=31)

    assert _fields(rest) == ["body.key"]
    assert (await _by_key(clinic, a, key)).json()["packages_dispensed"] == 1


async def test_a_standard_prescription_from_p1_issued_31_days_ago_has_expired_and_30_is_the_last_day(
    clinic: Clinic,
) -> None:
    a = await _pharmacist(clinic, A)
    expired = await _sandbox_rx(clinic, a, issued_days_ago=31)
    last_day = await _sandbox_rx(clinic, a, issued_days_ago=30)

    assert _fields(await _realise(clinic, a, expired, 1)) == ["body.key"]
    assert (await _realise(clinic, a, last_day, 1)).status_code == 201


async def test_an_antibiotic_is_realisable_through_issue_plus_7(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a, drug="Amotaks 1g", kind="antibiotic", packages=1, units_per_package="16")

    assert (await _by_key(clinic, a, key)).json()["valid_until"] == _on(7)
    assert _fields(await _realise(clinic, a, key, 1, day=8)) == ["body.key"]
    assert (await _realise(clinic, a, key, 1, day=7)).status_code == 201


async def test_an_antibiotic_from_p1_issued_8_days_ago_is_refused_today(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    eight = await _sandbox_rx(clinic, a, _line("antibiotic", packages=1, units="16"), issued_days_ago=8)
    seven = await _sandbox_rx(clinic, a, _line("antibiotic", packages=1, units="16"), issued_days_ago=7)

    assert (await _by_key(clinic, a, eight)).json()["packages_dispensable"] == 0
    assert _fields(await _realise(clinic, a, eight, 1)) == ["body.key"]
    assert (await _realise(clinic, a, seven, 1)).status_code == 201


async def test_a_realise_from_date_opens_the_window_on_that_day_and_counts_30_days_from_it(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a, packages=3, realise_from=_on(5))

    found = (await _by_key(clinic, a, key)).json()
    early = await _realise(clinic, a, key, 1)
    day_before = await _realise(clinic, a, key, 1, day=4)
    on_the_day = await _realise(clinic, a, key, 1, day=5)
    last_day = await _realise(clinic, a, key, 1, day=35)
    after = await _realise(clinic, a, key, 1, day=36)

    assert (found["valid_until"], found["packages_dispensable"]) == (_on(35), 0)
    assert _fields(early) == ["body.key"] and _on(5) in early.json()["detail"]
    assert _fields(day_before) == ["body.key"]
    assert on_the_day.status_code == 201 and last_day.status_code == 201
    assert _fields(after) == ["body.key"]


@pytest.mark.parametrize(
    ("kind", "days"), [("narcotic_psychotropic", 30), ("immunological", 120), ("target_import", 120)]
)
async def test_kinds_counted_from_the_issue_date_end_on_their_last_day(clinic: Clinic, kind: str, days: int) -> None:
    a = await _pharmacist(clinic, A)
    line = _line(kind, packages=1, drug="Oxycodone 10")
    last_day = await _sandbox_rx(clinic, a, line, issued_days_ago=days)
    day_after = await _sandbox_rx(clinic, a, line, issued_days_ago=days + 1)

    assert (await _by_key(clinic, a, last_day)).json()["valid_until"] == _on(0)
    assert (await _realise(clinic, a, last_day, 1)).status_code == 201
    assert _fields(await _realise(clinic, a, day_after, 1)) == ["body.key"]


async def test_a_narcotic_with_a_realise_from_date_in_p1_does_not_break_the_package_lookup(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    package = await _registered(
        clinic,
        _line(),
        _line("narcotic_psychotropic", packages=1, drug="Oxycodone 10", valid_from=_today() + dt.timedelta(days=3)),
    )

    answer = await clinic.post(LOOKUP, {"access_code": package["access_code"], "pesel": PATIENT_2}, a)

    assert answer.status_code != 500
    assert answer.status_code == 200 or answer.headers["content-type"].startswith("application/problem+json")


async def test_a_365_day_prescription_is_realisable_through_issue_plus_365(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    # 20 packages of 30 tablets, 1 a day (600 days): after 365 days 235 tablets remain, 7 whole packages.
    key = await _sandbox_rx(clinic, a, _line("extended", packages=20), issued_days_ago=365)

    found = (await _by_key(clinic, a, key)).json()
    last_day = await _realise(clinic, a, key, 6)

    assert (found["valid_until"], found["reduction_days"], found["packages_dispensable"]) == (_on(0), 365, 6)
    assert last_day.status_code == 201, last_day.text
    assert last_day.json()["reduced_packages"] == 13 and last_day.json()["packages_remaining"] == 1
    assert _fields(await _realise(clinic, a, key, 1, day=1)) == ["body.key"]


async def test_a_365_day_prescription_issued_100_days_ago_is_reduced_once(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    # 12 x 30 tablets, 1 a day: 100 days elapsed leave 260 tablets, 8 whole packages (4 removed).
    key = await _sandbox_rx(clinic, a, _line("extended", packages=12), issued_days_ago=100)

    found = (await _by_key(clinic, a, key)).json()
    first = await _realise(clinic, a, key, 6)
    rest = await _realise(clinic, a, key, 2, day=30)

    assert (found["reduction_days"], found["packages_dispensable"], found["valid_until"]) == (100, 6, _on(265))
    assert first.json() == {
        "key": key,
        "packages_dispensed": 6,
        "packages_remaining": 2,
        "reduced_packages": 4,
        "outage": False,
    }
    assert rest.status_code == 201 and rest.json()["reduced_packages"] == 4 and rest.json()["packages_remaining"] == 0


async def test_the_365_day_reduction_starts_after_30_days(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a, packages=12, extended=True)  # 12 x 30 tablets, 1 a day

    day_30 = (await _by_key(clinic, a, key, day=30)).json()
    day_31 = (await _by_key(clinic, a, key, day=31)).json()
    realised = await _realise(clinic, a, key, 1, day=31)

    assert (day_30["reduction_days"], day_30["packages_dispensable"]) == (0, 6)
    assert (day_31["reduction_days"], day_31["packages_dispensable"]) == (31, 6)
    # 360 - 31 tablets leave 10 whole packages: 2 removed, 1 dispensed, 9 remaining.
    assert (realised.json()["reduced_packages"], realised.json()["packages_remaining"]) == (2, 9)


async def test_a_365_day_prescription_issued_by_the_clinic_expires_after_day_365(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a, packages=12, extended=True)

    found = (await _by_key(clinic, a, key, day=30)).json()
    used_up = await _realise(clinic, a, key, 1, day=365)  # 365 days of dosage take all 360 tablets
    expired = await _realise(clinic, a, key, 1, day=366)

    assert (found["valid_until"], found["reduction_days"], found["packages_dispensable"]) == (_on(365), 0, 6)
    assert _fields(used_up) == ["body.packages"] and "nothing can be dispensed" in used_up.json()["detail"]
    assert _fields(expired) == ["body.key"]


async def test_a_prescription_cancelled_by_the_issuer_cannot_be_realised(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    package = await _issued(clinic, _rx())
    key = package["prescriptions"][0]["key"]
    await _open(clinic, a, package, PATIENT)
    doctor = await clinic.token(sub="dr", role="practitioner", facility_id=FACILITY, npwz=DOCTOR)
    assert (await clinic.post(f"/api/v1/prescriptions/prescriptions/{key}/cancel", {}, doctor)).status_code == 200
    await _report(clinic)
    assert (await _in_p1(clinic, key))["status"] == "cancelled"

    refused = await _realise(clinic, a, key, 1)

    assert "cancelled" in _problem(refused, 409)["detail"]
    assert (await _in_p1(clinic, key))["packages_dispensed"] == 0


async def test_a_prescription_cancelled_in_p1_after_the_lookup_cannot_be_realised(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _sandbox_rx(clinic, a)
    assert (await clinic.client.post(f"/sandbox/p1/prescriptions/{key}/cancel")).status_code == 200

    _problem(await _realise(clinic, a, key, 1), 409)


async def test_a_cancelled_prescription_is_shown_with_nothing_dispensable(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    package = await _registered(clinic)
    key = package["keys"][0]
    assert (await clinic.client.post(f"/sandbox/p1/prescriptions/{key}/cancel")).status_code == 200

    found = (await _open(clinic, a, package, PATIENT_2))["prescriptions"][0]

    assert found["packages_dispensable"] == 0


# ----------------------------------------------------------------------------- realisation: bad input


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"packages": 0}, "body.packages"),
        ({"packages": -1}, "body.packages"),
        ({"packages": 1000}, "body.packages"),
        ({"packages": None}, "body.packages"),
        ({"packages": "two"}, "body.packages"),
        ({"packages": 1.5}, "body.packages"),
        ({"key": "1" * 43}, "body.key"),
        ({"key": "x" * 44}, "body.key"),
        ({"key": None}, "body.key"),
        ({"on_date": "9999-12-31"}, "body.on_date"),
        ({"on_date": "tomorrow"}, "body.on_date"),
        ({"outage_statement": "maybe"}, "body.outage_statement"),
        ({"substitute": ""}, "body.substitute"),
        ({"substitute": "x" * 201}, "body.substitute"),
        ({"pharmacy_id": B}, "body.pharmacy_id"),
    ],
)
async def test_bad_realisation_input_names_the_field(clinic: Clinic, change: dict[str, Any], field: str) -> None:
    a = await _pharmacist(clinic, A)
    body = {"key": "1" * 44, "packages": 1, **change}

    answer = await clinic.post(REALISE, body, a)

    assert field in _fields(answer)


async def test_missing_key_and_packages_are_each_named(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)

    answer = await clinic.post(REALISE, {}, a)

    assert {"body.key", "body.packages"} <= set(_fields(answer))


async def test_an_unknown_key_cannot_be_realised(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)

    unknown = await _realise(clinic, a, "9" * 44, 1)

    assert "P1 knows no prescription" in _problem(unknown, 404)["detail"]


async def test_more_packages_than_left_is_refused_saying_how_many_are_left(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a, packages=3)

    too_many_at_once = await _realise(clinic, a, key, 4)
    first = await _realise(clinic, a, key, 2)
    too_many_now = await _realise(clinic, a, key, 2)
    last = await _realise(clinic, a, key, 1)
    nothing_left = await _realise(clinic, a, key, 1)

    assert _fields(too_many_at_once) == ["body.packages"] and "only 3 left" in too_many_at_once.json()["detail"]
    assert first.json()["packages_remaining"] == 1
    assert _fields(too_many_now) == ["body.packages"] and "only 1 left" in too_many_now.json()["detail"]
    assert last.status_code == 201 and last.json()["packages_remaining"] == 0
    assert _fields(nothing_left) == ["body.packages"] and "already been dispensed" in nothing_left.json()["detail"]
    assert (await _by_key(clinic, a, key)).json()["packages_dispensed"] == 3


async def test_at_most_180_days_of_use_in_one_visit(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a, packages=12)  # 30 tablets, 1 a day: 30 days a package

    found = (await _by_key(clinic, a, key)).json()
    seven = await _realise(clinic, a, key, 7)
    six = await _realise(clinic, a, key, 6)
    next_visit = await _realise(clinic, a, key, 6, day=1)

    assert found["packages_dispensable"] == 6
    assert _fields(seven) == ["body.packages"]
    assert "210 days" in seven.json()["detail"] and "at most 6 packages" in seven.json()["detail"]
    assert six.status_code == 201 and six.json()["packages_remaining"] == 6
    assert next_visit.status_code == 201 and next_visit.json()["packages_remaining"] == 0


async def test_two_calls_the_same_day_are_one_visit_and_share_its_180_days(clinic: Clinic) -> None:
    a, b = await _pharmacist(clinic, A), await _pharmacist(clinic, B)
    key = await _clinic_rx(clinic, a, packages=12)  # 30 days a package: 6 packages a visit

    first = await _realise(clinic, a, key, 3, day=0)
    over = await _realise(clinic, a, key, 4)
    rest_of_the_visit = await _realise(clinic, a, key, 3)
    seen_after = (await _by_key(clinic, a, key)).json()
    one_more = await _realise(clinic, a, key, 1)
    next_day = (await _by_key(clinic, a, key, day=1)).json()

    assert first.status_code == 201 and rest_of_the_visit.status_code == 201
    assert _fields(over) == ["body.packages"] and "at most 3 more today" in over.json()["detail"]
    assert (seen_after["packages_dispensable"], seen_after["reason_code"]) == (0, "visit_cap_reached")
    assert _fields(one_more) == ["body.packages"] and "nothing more today" in one_more.json()["detail"]
    assert (next_day["packages_dispensable"], next_day["reason_code"]) == (6, None)
    assert (await _by_key(clinic, b, key)).json()["reason_code"] == "realised_elsewhere"


async def test_the_180_day_cap_follows_the_dosage(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    # 30 tablets, 2 a day: 15 days a package, so 12 packages are 180 days: all allowed at once.
    key = await _sandbox_rx(clinic, a, _line(packages=13, dose="2"))

    assert _fields(await _realise(clinic, a, key, 13)) == ["body.packages"]
    assert (await _realise(clinic, a, key, 12)).status_code == 201


async def test_a_substitute_is_recorded_with_the_prescribed_drug_kept(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a)

    answer = await _realise(clinic, a, key, 1, substitute="Metformin Teva 500")

    assert answer.status_code == 201, answer.text
    assert answer.json()["packages_remaining"] == 1
    async with clinic.service("pharmacy").state.ctx.sessions() as session:
        recorded = list(
            await session.scalars(sa.select(PrescriptionRealisation).where(PrescriptionRealisation.key == key))
        )
        hold = await session.get(PrescriptionHold, key)
    assert [(r.dispensed_product, r.packages, r.pharmacy_id) for r in recorded] == [("Metformin Teva 500", 1, A)]
    assert hold is not None and hold.drug == "Metformax 500"
    assert (await _by_key(clinic, a, key)).json()["drug"] == "Metformax 500"


# ----------------------------------------------------------------------------- idempotency


async def test_a_retried_realisation_with_the_same_idempotency_key_dispenses_once(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a, packages=3)
    headers = {**a, "Idempotency-Key": "visit-1"}
    body = {"key": key, "packages": 1}

    first = await clinic.client.post(REALISE, json=body, headers=headers)
    retry = await clinic.client.post(REALISE, json=body, headers=headers)
    other_body = await clinic.client.post(REALISE, json={**body, "packages": 2}, headers=headers)

    assert first.status_code == retry.status_code == 201
    assert retry.json() == first.json() and first.json()["packages_remaining"] == 2
    _problem(other_body, 422)
    assert (await _by_key(clinic, a, key)).json()["packages_dispensed"] == 1
    async with clinic.service("pharmacy").state.ctx.sessions() as session:
        count = await session.scalar(
            sa.select(sa.func.count()).select_from(PrescriptionRealisation).where(PrescriptionRealisation.key == key)
        )
    assert count == 1
    await _report(clinic)
    assert (await _in_p1(clinic, key))["packages_dispensed"] == 1


# ----------------------------------------------------------------------------- P1 and the prescriptions service


async def test_realisations_are_reported_to_p1_with_the_pharmacy(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a, packages=3)
    assert (await _realise(clinic, a, key, 1)).status_code == 201
    assert (await _realise(clinic, a, key, 1, day=2)).status_code == 201

    await _report(clinic)

    in_p1 = await _in_p1(clinic, key)
    assert (in_p1["status"], in_p1["packages_dispensed"], in_p1["pharmacy_id"]) == ("partly_realised", 2, A)
    assert [(r["packages"], r["realised_on"], r["pharmacy_id"]) for r in in_p1["realisations"]] == [
        (1, _on(0), A),
        (1, _on(2), A),
    ]


async def test_a_sandbox_prescription_realised_here_is_reported_to_p1(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _sandbox_rx(clinic, a, _line(packages=2))
    assert (await _realise(clinic, a, key, 2)).status_code == 201

    await _report(clinic)

    in_p1 = await _in_p1(clinic, key)
    assert (in_p1["status"], in_p1["packages_dispensed"], in_p1["pharmacy_id"]) == ("realised", 2, A)


async def test_after_the_first_realisation_the_issuer_can_no_longer_cancel(clinic: Clinic) -> None:
    a = await _pharmacist(clinic, A)
    key = await _clinic_rx(clinic, a, packages=2)
    assert (await _realise(clinic, a, key, 1)).status_code == 201

    await _report(clinic)
    doctor = await clinic.token(sub="dr", role="practitioner", facility_id=FACILITY, npwz=DOCTOR)
    cancel = await clinic.post(f"/api/v1/prescriptions/prescriptions/{key}/cancel", {}, doctor)

    assert "first realised on" in _problem(cancel, 409)["detail"]
    assert (await _in_p1(clinic, key))["status"] == "partly_realised"
    assert (await _realise(clinic, a, key, 1)).status_code == 201

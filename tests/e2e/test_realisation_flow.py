"""E-prescription realisation end to end through the gateway: issued in the clinic, registered in
the P1 sandbox, looked up and realised in two pharmacies, reported back to P1."""

from __future__ import annotations

import datetime as dt
from typing import Any

from shared.clock import FixedClock
from tests.e2e.test_prescriptions_flow import DOCTOR, FACILITY, PATIENT, PATIENT_2, WARSAW, Clinic, _day, _rx, clinic

__all__ = ["clinic"]  # the fixture, shared with the prescriptions flow


async def _issued(clinic: Clinic, *prescriptions: dict[str, Any]) -> dict[str, Any]:
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "09:00")
    request = (await clinic.request(DOCTOR)).json()
    doctor = await clinic.token(sub="dr", role="practitioner", facility_id=FACILITY, npwz=DOCTOR)
    issued = await clinic.post(
        f"/api/v1/prescriptions/requests/{request['id']}/issue",
        {"issuer_npwz": DOCTOR, "issuer_profession": "doctor", "prescriptions": list(prescriptions)},
        doctor,
    )
    assert issued.status_code == 201, issued.text
    await clinic.settle()
    await clinic.service("integration").state.ctx.extras["forwarder"].forward_pending()
    package: dict[str, Any] = issued.json()
    return package


def _pharmacy_on(clinic: Clinic, days_from_today: int) -> None:
    """The pharmacy's clock at noon, ``days_from_today`` days on: the server dates every realisation."""
    noon = dt.datetime.combine(dt.date.fromisoformat(_day(days_from_today)), dt.time(12), tzinfo=WARSAW)
    clinic.service("pharmacy").state.ctx.clock = FixedClock(noon)


async def _pharmacist(clinic: Clinic, pharmacy: str) -> dict[str, str]:
    return await clinic.token(sub=f"mgr-{pharmacy}", role="pharmacist", pharmacy_id=pharmacy)


async def test_partial_realisation_in_a_binds_the_rest_to_a_and_p1_learns_every_package(clinic: Clinic) -> None:
    package = await _issued(clinic, _rx(packages=6))  # 6 x 30 tablets, 1 a day: 180 days
    key = package["prescriptions"][0]["key"]
    a, b = await _pharmacist(clinic, "apteka-a"), await _pharmacist(clinic, "apteka-b")
    lookup = "/api/v1/pharmacy/prescriptions/lookup"

    scanned = await clinic.post(lookup, {"key": key}, a)  # the QR code of the printout alone opens it
    assert scanned.status_code == 200 and scanned.json()["packages_dispensable"] == 6, scanned.text
    by_code = await clinic.post(lookup, {"access_code": package["access_code"], "pesel": PATIENT}, a)
    assert by_code.status_code == 200, by_code.text
    found = by_code.json()["prescriptions"][0]
    assert (found["key"], found["packages_prescribed"], found["packages_dispensable"]) == (key, 6, 6)

    first = await clinic.post("/api/v1/pharmacy/realizations", {"key": key, "packages": 2}, a)
    assert first.status_code == 201, first.text
    assert (first.json()["packages_dispensed"], first.json()["packages_remaining"]) == (2, 4)

    at_b = (await clinic.post(lookup, {"key": key}, b)).json()
    assert (at_b["packages_dispensable"], at_b["reason_code"]) == (0, "realised_elsewhere")
    elsewhere = await clinic.post("/api/v1/pharmacy/realizations", {"key": key, "packages": 1}, b)
    assert elsewhere.status_code == 409 and "another pharmacy" in elsewhere.json()["detail"]

    rest = await clinic.post("/api/v1/pharmacy/realizations", {"key": key, "packages": 4}, a)
    assert rest.status_code == 201 and rest.json()["packages_remaining"] == 0
    assert (await clinic.post(lookup, {"key": key}, a)).json()["packages_dispensable"] == 0

    await clinic.settle()
    await clinic.service("integration").state.ctx.extras["forwarder"].forward_pending()
    in_p1 = (await clinic.client.get(f"/sandbox/p1/prescriptions/{key}")).json()
    assert (in_p1["status"], in_p1["packages_dispensed"], in_p1["pharmacy_id"]) == ("realised", 6, "apteka-a")
    doctor = await clinic.token(sub="dr", role="practitioner", facility_id=FACILITY, npwz=DOCTOR)
    too_late = await clinic.post(f"/api/v1/prescriptions/prescriptions/{key}/cancel", {}, doctor)
    assert too_late.status_code == 409


async def test_more_than_180_days_in_one_visit_is_refused_with_the_most_allowed(clinic: Clinic) -> None:
    package = await _issued(clinic, _rx(packages=12, kind="standard", extended=True))  # 360 days
    key = package["prescriptions"][0]["key"]
    a = await _pharmacist(clinic, "apteka-a")
    await clinic.post(
        "/api/v1/pharmacy/prescriptions/lookup", {"access_code": package["access_code"], "pesel": PATIENT}, a
    )

    over = await clinic.post("/api/v1/pharmacy/realizations", {"key": key, "packages": 7}, a)

    assert over.status_code == 422
    assert over.json()["errors"][0]["field"] == "body.packages" and "at most 6 packages" in over.json()["detail"]
    _pharmacy_on(clinic, 400)
    expired = await clinic.post("/api/v1/pharmacy/realizations", {"key": key, "packages": 1}, a)
    assert expired.status_code == 422 and expired.json()["errors"][0]["field"] == "body.key"
    assert "expired" in expired.json()["detail"]


async def test_the_365_day_reduction_is_said_in_the_lookup_and_applied_once(clinic: Clinic) -> None:
    package = await _issued(clinic, _rx(packages=12, extended=True))
    key = package["prescriptions"][0]["key"]
    a = await _pharmacist(clinic, "apteka-a")
    _pharmacy_on(clinic, 95)  # the patient comes 95 days after the issue
    looked = await clinic.post(
        "/api/v1/pharmacy/prescriptions/lookup", {"access_code": package["access_code"], "pesel": PATIENT}, a
    )
    one = looked.json()["prescriptions"][0]
    assert (one["reduction_days"], one["packages_dispensable"]) == (
        95,
        6,
    )  # 360 - 95 tablets left: 8 whole packages (4 removed), at most 6 a visit

    first = await clinic.post("/api/v1/pharmacy/realizations", {"key": key, "packages": 6}, a)
    assert first.json() == {
        "key": key,
        "packages_dispensed": 6,
        "packages_remaining": 2,
        "reduced_packages": 4,
        "outage": False,
    }
    _pharmacy_on(clinic, 96)  # the rest on another visit: 6 packages were this visit's 180 days
    again = await clinic.post("/api/v1/pharmacy/realizations", {"key": key, "packages": 2}, a)
    assert again.status_code == 201 and again.json()["reduced_packages"] == 4  # applied once, not again


async def test_wrong_codes_are_rate_limited_per_pharmacy(clinic: Clinic) -> None:
    package = await _issued(clinic, _rx())
    guesser, honest = await _pharmacist(clinic, "apteka-z"), await _pharmacist(clinic, "apteka-a")
    wrong = "0000" if package["access_code"] != "0000" else "1111"
    answers = [
        (
            await clinic.post(
                "/api/v1/pharmacy/prescriptions/lookup", {"access_code": wrong, "pesel": PATIENT}, guesser
            )
        ).status_code
        for _ in range(6)
    ]
    assert answers == [404] * 5 + [429]
    right_but_blocked = await clinic.post(
        "/api/v1/pharmacy/prescriptions/lookup", {"access_code": package["access_code"], "pesel": PATIENT}, guesser
    )
    assert right_but_blocked.status_code == 429
    other_patient = await clinic.post(
        "/api/v1/pharmacy/prescriptions/lookup", {"access_code": package["access_code"], "pesel": PATIENT_2}, honest
    )
    assert other_patient.status_code == 404
    fine = await clinic.post(
        "/api/v1/pharmacy/prescriptions/lookup", {"access_code": package["access_code"], "pesel": PATIENT}, honest
    )
    assert fine.status_code == 200


async def test_an_outage_realisation_needs_p1_down_and_reaches_p1_when_it_is_back(clinic: Clinic) -> None:
    package = await _issued(clinic, _rx(packages=2))
    key = package["prescriptions"][0]["key"]
    a = await _pharmacist(clinic, "apteka-a")
    printout = {
        "package_key": package["package_key"],
        "patient_pesel": PATIENT,
        "drug": "Metformax 500",
        "kind": "standard",
        "issued_on": _day(0),
        "packages": 2,
        "units_per_package": "30",
        "daily_dose_units": "1",
    }
    documents = {"outage_statement": True, "printout": printout, "identity_document": "id_card"}
    while_up = await clinic.post("/api/v1/pharmacy/realizations", {"key": key, "packages": 1, **documents}, a)
    assert while_up.status_code == 422 and while_up.json()["errors"][0]["field"] == "body.outage_statement"

    await clinic.client.post("/sandbox/p1/down")
    no_statement = await clinic.post("/api/v1/pharmacy/realizations", {"key": key, "packages": 1}, a)
    assert no_statement.status_code in (404, 503)  # never on a bare key or code while P1 is down
    no_printout = await clinic.post(
        "/api/v1/pharmacy/realizations",
        {"key": key, "packages": 1, "outage_statement": True, "identity_document": "id_card"},
        a,
    )
    assert no_printout.status_code == 422 and no_printout.json()["errors"][0]["field"] == "body.printout"
    outage = await clinic.post(
        "/api/v1/pharmacy/realizations",
        {"key": key, "packages": 1, **documents},
        a,
    )
    assert outage.status_code == 201, outage.text
    assert outage.json()["outage"] is True

    await clinic.settle()
    forwarder = clinic.service("integration").state.ctx.extras["forwarder"]
    assert await forwarder.forward_pending() == 0
    await clinic.client.post("/sandbox/p1/up")
    await forwarder.forward_pending(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    in_p1 = (await clinic.client.get(f"/sandbox/p1/prescriptions/{key}")).json()
    assert in_p1["packages_dispensed"] == 1 and in_p1["realisations"][0]["outage"] is True


async def test_code_lookups_hit_or_miss_and_realisations_are_audited_under_the_pharmacy(clinic: Clinic) -> None:
    package = await _issued(clinic, _rx(packages=2))
    key = package["prescriptions"][0]["key"]
    pharmacist = await _pharmacist(clinic, "apteka-a")
    lookup = "/api/v1/pharmacy/prescriptions/lookup"
    wrong = "0000" if package["access_code"] != "0000" else "1111"
    assert (await clinic.post(lookup, {"access_code": wrong, "pesel": PATIENT}, pharmacist)).status_code == 404
    hit = await clinic.post(lookup, {"access_code": package["access_code"], "pesel": PATIENT}, pharmacist)
    assert hit.status_code == 200, hit.text
    assert (
        await clinic.post("/api/v1/pharmacy/realizations", {"key": key, "packages": 1}, pharmacist)
    ).status_code == 201
    await clinic.settle()

    operator = await clinic.token(sub="ops", role="operator")
    answer = await clinic.client.get(
        "/api/v1/audit/events", params={"patient_pesel": PATIENT, "actor": "mgr-apteka-a"}, headers=operator
    )
    assert answer.status_code == 200, answer.text
    rows = answer.json()
    assert sorted(r["action"] for r in rows) == [
        "pharmacy.prescription.lookup_code",
        "pharmacy.prescription.lookup_code_miss",
    ]
    assert {r["tenant"] for r in rows} == {"apteka-a"} and PATIENT not in answer.text
    realised = await clinic.client.get(
        "/api/v1/audit/events", params={"action": "pharmacy.prescription.realise"}, headers=operator
    )
    assert [(r["actor"], r["resource"]) for r in realised.json()] == [("mgr-apteka-a", f"prescription/…{key[-6:]}")]
    assert key not in realised.text  # the whole key opens the prescription: never in the audit

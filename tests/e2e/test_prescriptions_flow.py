"""Prescription ordering end to end through the gateway (embedded: every service and the sandbox in
one process, real HTTP-shaped calls between them): routing through scheduling, IKP through the P1
sandbox, issuing, registration in P1, cancelling."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from gateway.app import create_app
from services.integration.models import P1Outgoing
from services.prescriptions.models import Outbox
from tests.conftest import make_gateway_settings, running_client
from tests.support.waiting import eventually

FACILITY = "clinic-rx"
DOCTOR = "1047514"  # the patient's POZ doctor
DUTY = "1142542"  # duty doctor of location A
OTHER = "1340517"  # a doctor with ordering never switched on
NURSE = "1657277"
PATIENT = "44051401359"
PATIENT_2 = "02070803628"
WARSAW = ZoneInfo("Europe/Warsaw")


def _day(offset: int) -> str:
    return (dt.datetime.now(WARSAW).date() + dt.timedelta(days=offset)).isoformat()


@dataclass
class Clinic:
    client: httpx.AsyncClient
    app: FastAPI
    admin: dict[str, str]
    desk: dict[str, str]
    ids: dict[str, str]

    async def token(self, **claims: str) -> dict[str, str]:
        answer = await self.client.post("/api/v1/auth/dev-token", json=claims)
        assert answer.status_code == 200, answer.text
        return {"Authorization": f"Bearer {answer.json()['access_token']}"}

    async def post(self, path: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.client.post(path, json=body, headers=headers or self.admin)

    async def created(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        answer = await self.post(path, body)
        assert answer.status_code == 201, answer.text
        found: dict[str, Any] = answer.json()
        return found

    async def schedule(self, who: str, where: str, work: str, day: int, start: str, end: str) -> None:
        await self.created(
            "/api/v1/scheduling/schedules",
            {
                "practitioner_id": self.ids[who],
                "location_id": self.ids[where],
                "work_type_id": self.ids[work],
                "date": _day(day),
                "start_time": start,
                "end_time": end,
                "visit_minutes": 15,
            },
        )

    async def request(self, npwz: str = DOCTOR, *drugs: str, where: str = "A", **extra: Any) -> httpx.Response:
        body = {
            "patient_pesel": PATIENT,
            "practitioner_npwz": npwz,
            "location_id": self.ids[where],
            "items": [{"drug": d, "packages": 1} for d in (drugs or ("Metformax 500",))],
            **extra,
        }
        return await self.post("/api/v1/prescriptions/requests", body, self.desk)

    def service(self, name: str) -> FastAPI:
        app: FastAPI | None = self.app.state.gateway.upstreams[name].app
        assert app is not None
        return app

    async def settle(self) -> None:
        """Every service's outbox published and every event consumed."""
        for name in ("prescriptions", "integration", "pharmacy"):
            await self.service(name).state.ctx.relay.publish_pending()
        await self.app.state.gateway.bus.drain()

    async def events(self, event_type: str) -> list[str]:
        """The envelopes the prescriptions service wrote to its outbox, of one type."""
        sessions = self.service("prescriptions").state.ctx.sessions
        async with sessions() as session:
            rows = await session.scalars(sa.select(Outbox.envelope).where(Outbox.event_type == event_type))
            return list(rows)


@pytest.fixture
async def clinic(tmp_path: Path) -> AsyncIterator[Clinic]:
    app = create_app(make_gateway_settings(tmp_path))
    async for client in running_client(app, "http://gateway"):
        admin_answer = await client.post(
            "/api/v1/auth/dev-token", json={"sub": "admin", "role": "facility_admin", "facility_id": FACILITY}
        )
        admin = {"Authorization": f"Bearer {admin_answer.json()['access_token']}"}
        clinic = Clinic(client, app, admin, {}, {})
        clinic.desk = await clinic.token(sub="desk", role="registrar", facility_id=FACILITY)
        ids = clinic.ids
        ids["A"] = (await clinic.created("/api/v1/scheduling/locations", {"name": "A", "department_code": "0010"}))[
            "id"
        ]
        ids["B"] = (await clinic.created("/api/v1/scheduling/locations", {"name": "B"}))["id"]
        staff = ((DOCTOR, "doctor"), (DUTY, "doctor"), (OTHER, "doctor"), (NURSE, "nurse"))
        for npwz, profession in staff:
            body = {
                "name": f"{profession} {npwz}",
                "npwz": npwz,
                "profession": profession,
                "poz": profession == "doctor",
            }
            ids[npwz] = (await clinic.created("/api/v1/scheduling/practitioners", body))["id"]
        ids["rx"] = (
            await clinic.created("/api/v1/scheduling/work-types", {"name": "Recepty", "prescription_only": True})
        )["id"]
        ids["visit"] = (
            await clinic.created("/api/v1/scheduling/work-types", {"name": "Wizyta", "visible_online": True})
        )["id"]
        duty = await client.put(
            f"/api/v1/scheduling/locations/{ids['A']}/duty-practitioner",
            json={"practitioner_id": ids[DUTY]},
            headers=admin,
        )
        assert duty.status_code == 200, duty.text
        settings = await client.put(
            "/api/v1/prescriptions/settings",
            json={"mode": "demo", "activated_on": _day(0), "problem_email": "problemy@clinic.example"},
            headers=admin,
        )
        assert settings.status_code == 200, settings.text
        for npwz in (DOCTOR, DUTY):
            switched = await client.put(
                f"/api/v1/prescriptions/practitioners/{npwz}/ordering", json={"enabled": True}, headers=admin
            )
            assert switched.status_code == 200, switched.text
        yield clinic


async def test_a_portal_request_books_the_doctors_earliest_prescription_slot(clinic: Clinic) -> None:
    await clinic.schedule(DOCTOR, "A", "visit", 1, "08:00", "09:00")  # earlier, but not a prescription slot
    await clinic.schedule(DOCTOR, "A", "rx", 1, "12:00", "12:30")
    await clinic.schedule(DOCTOR, "A", "rx", 2, "08:00", "08:30")

    answer = await clinic.request(DOCTOR, "Metformax 500", "Bisocard 5")

    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert (body["status"], body["routed_to"], body["assigned_npwz"]) == ("booked", "own", DOCTOR)
    assert body["slot_start"].startswith(_day(1)) or body["slot_start"] > _day(0)
    assert [i["drug"] for i in body["items"]] == ["Metformax 500", "Bisocard 5"]
    assert body["problems"] == []
    slot = next(
        s
        for s in (await clinic.client.get("/api/v1/scheduling/slots", headers=clinic.desk)).json()
        if s["id"] == body["slot_id"]
    )
    assert slot["status"] == "booked" and slot["work_type_id"] == clinic.ids["rx"]
    assert dt.datetime.fromisoformat(slot["start"]).astimezone(WARSAW).strftime("%H:%M") == "12:00"
    again = await clinic.client.get(f"/api/v1/prescriptions/requests/{body['id']}", headers=clinic.desk)
    assert again.json() == body


async def test_without_own_slots_the_duty_doctor_takes_it_here_first_then_elsewhere(clinic: Clinic) -> None:
    await clinic.schedule(DUTY, "B", "rx", 1, "07:00", "07:15")  # earlier, but at the other location
    await clinic.schedule(DUTY, "A", "rx", 2, "10:00", "10:15")

    here = (await clinic.request(DOCTOR)).json()
    elsewhere = (await clinic.request(DOCTOR)).json()
    nothing = (await clinic.request(DOCTOR)).json()

    assert (here["routed_to"], here["assigned_npwz"], here["problems"]) == ("duty", DUTY, [3])
    assert here["slot_start"].startswith(_day(2))
    assert (elsewhere["routed_to"], elsewhere["problems"]) == ("duty", [3])
    assert elsewhere["slot_start"].startswith(_day(1))
    assert (nothing["status"], nothing["slot_id"], nothing["problems"]) == ("unassigned", None, [4])
    problems = await clinic.events("prescriptions.problem.raised")
    assert len(problems) == 3 and all("problemy@clinic.example" in p for p in problems)
    assert "lekarza i lekarza dyżurnego" in problems[-1]


async def test_an_ikp_request_to_a_disabled_doctor_or_an_unknown_npwz_goes_to_the_duty_doctor_with_its_notice(
    clinic: Clinic,
) -> None:
    await clinic.schedule(OTHER, "A", "rx", 1, "08:00", "08:30")  # never used: ordering is off for OTHER
    await clinic.schedule(DUTY, "A", "rx", 1, "09:00", "09:30")

    # Rerouting is the IKP path; the portal refuses such requests (test_prescriptions_api).
    disabled = (await clinic.request(OTHER, source="ikp")).json()
    unknown = (await clinic.request("1855252", source="ikp")).json()

    assert (disabled["routed_to"], disabled["assigned_npwz"], disabled["problems"]) == ("duty", DUTY, [2])
    assert (unknown["routed_to"], unknown["problems"]) == ("duty", [5])


async def test_two_requests_racing_for_the_last_slot_one_gets_it_the_other_is_routed_on(clinic: Clinic) -> None:
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "08:15")
    await clinic.schedule(DUTY, "A", "rx", 1, "09:00", "09:15")

    first, second = await asyncio.gather(clinic.request(DOCTOR), clinic.request(DOCTOR))

    routes = sorted((a.json()["routed_to"], a.json()["assigned_npwz"]) for a in (first, second))
    assert routes == [("duty", DUTY), ("own", DOCTOR)]
    assert first.json()["slot_id"] != second.json()["slot_id"]


async def test_an_inactive_service_refuses_the_portal_request_and_notifies_the_facility(clinic: Clinic) -> None:
    off = await clinic.client.put("/api/v1/prescriptions/settings", json={"mode": "off"}, headers=clinic.admin)
    assert off.json()["active"] is False

    answer = await clinic.request(DOCTOR)

    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert "no active online prescription-ordering service" in answer.json()["detail"]
    assert len(await clinic.events("prescriptions.problem.raised")) == 1


async def test_drug_scope_patient_account_takes_only_drugs_prescribed_here(clinic: Clinic) -> None:
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "09:00")
    scoped = await clinic.client.put(
        "/api/v1/prescriptions/settings",
        json={"mode": "full", "activated_on": _day(0), "drug_scope": "patient_account"},
        headers=clinic.admin,
    )
    assert scoped.status_code == 200

    refused = await clinic.request(DOCTOR, "Metformax 500", "Xanax 1")
    assert refused.status_code == 422
    assert {e["field"] for e in refused.json()["errors"]} == {"body.items.0.drug", "body.items.1.drug"}

    recorded = await clinic.post(
        f"/api/v1/prescriptions/patients/{PATIENT}/account-drugs", {"drug": "metformax  500"}, clinic.desk
    )
    assert recorded.status_code == 201
    assert (await clinic.request(DOCTOR, "Metformax 500")).status_code == 201
    still = await clinic.request(DOCTOR, "Metformax 500", "Xanax 1")
    assert [e["field"] for e in still.json()["errors"]] == ["body.items.1.drug"]


async def test_bad_input_and_other_tenants(clinic: Clinic) -> None:
    bad = await clinic.post(
        "/api/v1/prescriptions/requests",
        {"patient_pesel": "44051401358", "practitioner_npwz": "123", "location_id": "x", "items": []},
        clinic.desk,
    )
    assert bad.status_code == 422
    fields = {e["field"] for e in bad.json()["errors"]}
    assert {"body.patient_pesel", "body.practitioner_npwz", "body.location_id", "body.items"} <= fields
    settings = await clinic.client.put(
        "/api/v1/prescriptions/settings", json={"mode": "demo", "activated_on": _day(1)}, headers=clinic.admin
    )
    assert [e["field"] for e in settings.json()["errors"]] == ["body.activated_on"]  # only today's date

    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "09:00")
    mine = (await clinic.request(DOCTOR)).json()
    elsewhere = await clinic.token(sub="x", role="registrar", facility_id="other-clinic")
    assert (
        await clinic.client.get(f"/api/v1/prescriptions/requests/{mine['id']}", headers=elsewhere)
    ).status_code == 404
    other_patient = await clinic.token(sub="p", role="patient", pesel=PATIENT_2, facility_id=FACILITY)
    assert (
        await clinic.client.get(f"/api/v1/prescriptions/requests/{mine['id']}", headers=other_patient)
    ).status_code == 404
    patient = await clinic.token(sub="p", role="patient", pesel=PATIENT, facility_id=FACILITY)
    assert (await clinic.client.get(f"/api/v1/prescriptions/requests/{mine['id']}", headers=patient)).status_code == 200
    for_someone_else = await clinic.post(
        "/api/v1/prescriptions/requests",
        {
            "patient_pesel": PATIENT_2,
            "practitioner_npwz": DOCTOR,
            "location_id": clinic.ids["A"],
            "items": [{"drug": "X"}],
        },
        patient,
    )
    assert for_someone_else.status_code == 403
    nowhere = await clinic.request(DOCTOR, location_id="00000000-0000-0000-0000-000000000000")
    assert nowhere.status_code == 422
    assert [e["field"] for e in nowhere.json()["errors"]] == ["body.location_id"]


def _rx(**overrides: Any) -> dict[str, Any]:
    return {"drug": "Metformax 500", "packages": 2, "units_per_package": "30", "daily_dose_units": "1", **overrides}


async def test_issuing_a_package_registers_it_in_p1_and_cancelling_follows(clinic: Clinic) -> None:
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "09:00")
    request = (await clinic.request(DOCTOR)).json()
    doctor = await clinic.token(sub="dr", role="practitioner", facility_id=FACILITY, npwz=DOCTOR)
    body = {
        "issuer_npwz": DOCTOR,
        "issuer_profession": "doctor",
        "prescriptions": [_rx(), _rx(drug="Amotaks 1g", kind="antibiotic", packages=1, units_per_package="16")],
    }

    issued = await clinic.post(f"/api/v1/prescriptions/requests/{request['id']}/issue", body, doctor)

    assert issued.status_code == 201, issued.text
    package = issued.json()
    assert len(package["package_key"]) == 44 and len(package["access_code"]) == 4
    assert {p["access_code"] for p in package["prescriptions"]} == {package["access_code"]}
    today = dt.date.fromisoformat(_day(0))
    windows = [(p["valid_from"], p["valid_until"]) for p in package["prescriptions"]]
    assert windows == [
        (today.isoformat(), (today + dt.timedelta(days=30)).isoformat()),
        (today.isoformat(), (today + dt.timedelta(days=7)).isoformat()),
    ]
    events = await clinic.events("prescriptions.prescription.issued")
    assert len(events) == 1 and package["access_code"] in events[0]

    sandbox = clinic.client

    async def registered() -> bool:  # the integration service forwards it through its queue
        return package["package_key"] in str((await sandbox.get("/sandbox/p1/received")).json())

    await eventually(registered, what="the package registered in P1")

    async def queue_settled() -> bool:  # P1 has it: the queue keeps no copy of the code
        async with clinic.service("integration").state.ctx.sessions() as session:
            rows = (await session.execute(sa.select(P1Outgoing.status, P1Outgoing.payload))).all()
        return bool(rows) and all(status == "sent" for status, _ in rows)

    await eventually(queue_settled, what="the P1 queue settled")
    async with clinic.service("integration").state.ctx.sessions() as session:
        payloads = (await session.scalars(sa.select(P1Outgoing.payload))).all()
    assert any(package["package_key"] in p for p in payloads)
    assert all("access_code" not in json.loads(p) for p in payloads)  # (4 digits may occur in a key)
    found = await sandbox.post(
        "/sandbox/p1/packages/lookup", json={"access_code": package["access_code"], "pesel": PATIENT}
    )
    assert found.status_code == 200
    assert sorted(p["drug"] for p in found.json()["prescriptions"]) == ["Amotaks 1g", "Metformax 500"]

    account = await clinic.client.get(f"/api/v1/prescriptions/patients/{PATIENT}/account-drugs", headers=clinic.desk)
    assert sorted(d["drug"] for d in account.json()) == ["Amotaks 1g", "Metformax 500"]

    key = package["prescriptions"][0]["key"]
    colleague = await clinic.token(sub="dr2", role="practitioner", facility_id=FACILITY, npwz=DUTY)
    assert (await clinic.post(f"/api/v1/prescriptions/prescriptions/{key}/cancel", {}, colleague)).status_code == 404
    cancelled = await clinic.post(f"/api/v1/prescriptions/prescriptions/{key}/cancel", {}, doctor)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"

    async def cancelled_in_p1() -> bool:
        return bool((await sandbox.get(f"/sandbox/p1/prescriptions/{key}")).json()["status"] == "cancelled")

    await eventually(cancelled_in_p1, what="the cancellation registered in P1")


async def test_issuing_limits_and_package_size(clinic: Clinic) -> None:
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "09:00")
    request = (await clinic.request(DOCTOR)).json()
    path = f"/api/v1/prescriptions/requests/{request['id']}/issue"
    doctor = await clinic.token(sub="dr", role="practitioner", facility_id=FACILITY, npwz=DOCTOR)
    nurse = await clinic.token(sub="n", role="practitioner", facility_id=FACILITY, npwz=NURSE)

    def issue(npwz: str, profession: str, *prescriptions: dict[str, Any]) -> dict[str, Any]:
        return {"issuer_npwz": npwz, "issuer_profession": profession, "prescriptions": list(prescriptions)}

    assert (await clinic.post(path, issue(DOCTOR, "doctor", _rx(packages=12)), doctor)).status_code == 201
    over = await clinic.post(path, issue(DOCTOR, "doctor", _rx(packages=12, daily_dose_units="0.9972")), doctor)
    assert over.status_code == 422 and over.json()["errors"][0]["field"] == "body.prescriptions.0.packages"
    nurse_over = await clinic.post(path, issue(NURSE, "nurse", _rx(packages=7)), nurse)
    assert nurse_over.status_code == 422
    assert (await clinic.post(path, issue(NURSE, "nurse", _rx(packages=6)), nurse)).status_code == 201
    six = await clinic.post(path, issue(DOCTOR, "doctor", *[_rx(drug=f"Lek {i}") for i in range(6)]), doctor)
    assert six.status_code == 422 and "at most 5" in six.json()["detail"]
    narcotic_later = await clinic.post(
        path, issue(DOCTOR, "doctor", _rx(kind="narcotic", realise_from=_day(3))), doctor
    )
    assert narcotic_later.status_code == 422
    assert narcotic_later.json()["errors"][0]["field"] == "body.prescriptions.0.realise_from"
    narcotic_90 = await clinic.post(path, issue(DOCTOR, "doctor", _rx(kind="narcotic", packages=4)), doctor)
    assert narcotic_90.status_code == 422  # 120 days of use over the 90-day limit of group I-N
    impostor = await clinic.post(path, issue(DUTY, "doctor", _rx()), doctor)
    assert impostor.status_code == 403
    desk = await clinic.post(path, issue(DOCTOR, "doctor", _rx()), clinic.desk)
    assert desk.status_code == 403


async def _ikp_ready(clinic: Clinic) -> None:
    """IKP enabled (confirmed by the P1 sandbox) with DOCTOR polling from location A."""
    await clinic.settle()  # the integration service has heard that ordering is active
    await clinic.schedule(DOCTOR, "A", "visit", 1, "08:00", "09:00")
    enabled = await clinic.post("/api/v1/integration/ikp/enable", {})
    assert enabled.status_code == 200, enabled.text
    assert enabled.json()["status"] == "pending"
    assert (await clinic.client.post(f"/sandbox/p1/ikp/{FACILITY}/confirm")).status_code == 200
    status = await clinic.client.get("/api/v1/integration/ikp/status", headers=clinic.admin)
    assert status.json()["status"] == "enabled"
    poller = await clinic.client.put(
        "/api/v1/integration/ikp/poller", json={"practitioner_npwz": DOCTOR}, headers=clinic.admin
    )
    assert poller.status_code == 200, poller.text
    assert (poller.json()["location_id"], poller.json()["polling"]) == (clinic.ids["A"], True)


async def _poll_and_seal(clinic: Clinic) -> list[dict[str, Any]]:
    integration = clinic.service("integration").state.ctx
    prescriptions = clinic.service("prescriptions").state.ctx
    await integration.extras["poller"].poll_all()
    await clinic.settle()
    # As the background pass would once the grace period (30 s) after the last item has passed.
    await prescriptions.extras["sealer"].seal_due(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1))
    answer = await clinic.client.get("/api/v1/prescriptions/requests", headers=clinic.desk)
    requests: list[dict[str, Any]] = answer.json()
    return requests


async def test_ikp_needs_its_prerequisites_and_a_poller_with_npwz_and_department_code(clinic: Clinic) -> None:
    await clinic.client.put("/api/v1/prescriptions/settings", json={"mode": "off"}, headers=clinic.admin)
    await clinic.settle()
    refused = await clinic.post("/api/v1/integration/ikp/enable", {})
    assert refused.status_code == 422
    assert [e["field"] for e in refused.json()["errors"]] == ["prescription_ordering"]
    status = await clinic.client.get("/api/v1/integration/ikp/status", headers=clinic.admin)
    assert status.json()["status"] == "off"

    nobody = await clinic.client.put(
        "/api/v1/integration/ikp/poller", json={"practitioner_npwz": "1855252"}, headers=clinic.admin
    )
    assert nobody.status_code == 422 and "no practitioner with NPWZ 1855252" in nobody.json()["detail"]
    await clinic.schedule(OTHER, "B", "visit", 1, "08:00", "09:00")  # B has no department code
    uncoded = await clinic.client.put(
        "/api/v1/integration/ikp/poller", json={"practitioner_npwz": OTHER}, headers=clinic.admin
    )
    assert uncoded.status_code == 422 and "department code" in uncoded.json()["detail"]
    candidates = await clinic.client.get("/api/v1/integration/ikp/poller/candidates", headers=clinic.admin)
    assert candidates.json()["candidates"] == [] and "department code" in candidates.json()["missing"]


async def test_an_ikp_order_is_grouped_routed_to_the_duty_doctor_elsewhere_issued_and_registered_in_p1(
    clinic: Clinic,
) -> None:
    await _ikp_ready(clinic)
    await clinic.schedule(DUTY, "B", "rx", 1, "10:00", "11:00")  # the only prescription slots: duty, at B
    for drug in ("Metformax 500", "Bisocard 5", "Polpril 5"):
        await clinic.post(f"/api/v1/prescriptions/patients/{PATIENT}/account-drugs", {"drug": drug}, clinic.desk)
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    one_go = [
        {"drug": "Metformax 500", "packages": 2, "comment": "jak zwykle", "submitted_at": at.isoformat()},
        {
            "drug": "Bisocard 5",
            "packages": 1,
            "comment": "jak zwykle",
            "submitted_at": (at + dt.timedelta(seconds=40)).isoformat(),
        },
        {
            "drug": "Nieznany lek",
            "packages": 1,
            "comment": "jak zwykle",
            "submitted_at": (at + dt.timedelta(seconds=80)).isoformat(),
        },
    ]
    later = [{"drug": "Polpril 5", "packages": 1, "submitted_at": (at + dt.timedelta(minutes=10)).isoformat()}]
    for items in (one_go, later):
        played = await clinic.client.post(
            "/sandbox/p1/ikp/requests",
            json={"facility_id": FACILITY, "patient_pesel": PATIENT, "doctor_npwz": DOCTOR, "items": items},
        )
        assert played.status_code == 201, played.text

    requests = await _poll_and_seal(clinic)
    again = await _poll_and_seal(clinic)  # polled twice, sealed twice: still two requests

    assert len(requests) == 2 and len(again) == 2
    grouped = next(r for r in requests if len(r["items"]) == 3)
    single = next(r for r in requests if len(r["items"]) == 1)
    assert grouped["source"] == "ikp" and grouped["comment"] == "jak zwykle"
    assert [i["comment"] for i in grouped["items"]] == [None, None, None]
    # "Nieznany lek" is on no account here: P1 sends only drugs of the patient's history, so it is taken.
    assert [i["refused_reason"] for i in grouped["items"]] == [None, None, None]
    assert (grouped["routed_to"], grouped["assigned_npwz"], grouped["problems"]) == ("duty", DUTY, [3])
    assert grouped["location_id"] == clinic.ids["A"]
    slot = next(
        s
        for s in (await clinic.client.get("/api/v1/scheduling/slots", headers=clinic.desk)).json()
        if s["id"] == grouped["slot_id"]
    )
    assert slot["location_id"] == clinic.ids["B"] and slot["status"] == "booked"
    assert single["items"][0]["drug"] == "Polpril 5" and single["slot_id"] != grouped["slot_id"]

    duty = await clinic.token(sub="duty", role="practitioner", facility_id=FACILITY, npwz=DUTY)
    issued = await clinic.post(
        f"/api/v1/prescriptions/requests/{grouped['id']}/issue",
        {"issuer_npwz": DUTY, "issuer_profession": "doctor", "prescriptions": [_rx(), _rx(drug="Bisocard 5")]},
        duty,
    )
    assert issued.status_code == 201, issued.text
    package = issued.json()
    event = (await clinic.events("prescriptions.prescription.issued"))[0]
    assert package["access_code"] in event and package["package_key"] in event
    forwarder = clinic.service("integration").state.ctx.extras["forwarder"]
    await clinic.settle()
    await forwarder.forward_pending()
    lookup = await clinic.client.post(
        "/sandbox/p1/packages/lookup", json={"access_code": package["access_code"], "pesel": PATIENT}
    )
    assert lookup.status_code == 200
    assert {p["key"] for p in lookup.json()["prescriptions"]} == {p["key"] for p in package["prescriptions"]}


async def test_issued_prescriptions_wait_while_p1_is_down_and_arrive_in_order(clinic: Clinic) -> None:
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "09:00")
    doctor = await clinic.token(sub="dr", role="practitioner", facility_id=FACILITY, npwz=DOCTOR)
    forwarder = clinic.service("integration").state.ctx.extras["forwarder"]
    assert (await clinic.client.post("/sandbox/p1/down")).status_code == 200
    keys = []
    for _ in range(3):
        request = (await clinic.request(DOCTOR)).json()
        issued = await clinic.post(
            f"/api/v1/prescriptions/requests/{request['id']}/issue",
            {"issuer_npwz": DOCTOR, "issuer_profession": "doctor", "prescriptions": [_rx()]},
            doctor,
        )
        keys.append(issued.json()["package_key"])
    await clinic.settle()
    assert await forwarder.forward_pending() == 0
    waiting = await clinic.client.get("/api/v1/integration/p1/outgoing", headers=clinic.admin)
    assert [w["status"] for w in waiting.json()] == ["pending"] * 3
    assert waiting.json()[-1]["attempts"] >= 1 and "503" in (waiting.json()[-1]["last_error"] or "503")

    assert (await clinic.client.post("/sandbox/p1/up")).status_code == 200
    # The background forwarder may take some of them meanwhile; together they send all three, in order.
    await forwarder.forward_pending(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))

    assert (await clinic.client.get("/sandbox/p1/received")).json()[-3:] == keys
    done = await clinic.client.get("/api/v1/integration/p1/outgoing", headers=clinic.admin)
    assert [w["status"] for w in done.json()] == ["sent"] * 3

"""The access audit end to end (embedded gateway): bookings, cancellations, booking reads and contact
changes become append-only audit rows that a facility's administrator, the operator and the patient
can list, each seeing only what is theirs."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

from services.audit.models import AccessEvent
from services.scheduling.models import Outbox as SchedulingOutbox
from shared.audit import ACCESS_RECORDED
from shared.events import Envelope
from tests.e2e import test_prescriptions_flow as flow
from tests.e2e.test_prescriptions_flow import DOCTOR, FACILITY, PATIENT, PATIENT_2, Clinic

clinic = flow.clinic  # the prescriptions flow's facility fixture, used here by name

EVENTS = "/api/v1/audit/events"
ME = "/api/v1/audit/me"
MASKED = PATIENT[:2] + "*" * 9


async def _settle(clinic: Clinic) -> None:
    """Every service's outbox published and every event consumed (the audit's rows written)."""
    gateway = clinic.app.state.gateway
    for _ in range(2):
        for upstream in gateway.upstreams.values():
            if upstream.app is not None:
                await upstream.app.state.ctx.relay.publish_pending()
        await gateway.bus.drain()


async def _free_slots(clinic: Clinic, count: int) -> list[str]:
    await clinic.schedule(DOCTOR, "A", "visit", 1, "08:00", "09:00")
    answer = await clinic.client.get("/api/v1/scheduling/slots", params={"status": "free"}, headers=clinic.desk)
    assert answer.status_code == 200, answer.text
    return [s["id"] for s in answer.json()][:count]


async def _book(clinic: Clinic, slot: str, pesel: str = PATIENT) -> dict[str, Any]:
    answer = await clinic.post("/api/v1/scheduling/bookings", {"slot_id": slot, "patient_pesel": pesel}, clinic.desk)
    assert answer.status_code == 201, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def _listed(clinic: Clinic, path: str, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    answer = await clinic.client.get(path, params=params, headers=headers)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


async def test_a_desk_booking_shows_in_the_facility_audit_and_the_patients_own_but_nowhere_else(
    clinic: Clinic,
) -> None:
    (slot,) = await _free_slots(clinic, 1)
    booking = await _book(clinic, slot)
    await _settle(clinic)

    rows = await _listed(clinic, EVENTS, clinic.admin, action="scheduling.booking.create")
    assert [(r["actor"], r["role"], r["tenant"], r["resource"], r["patient"]) for r in rows] == [
        ("desk", "registrar", FACILITY, f"booking/{booking['id']}", MASKED)
    ]
    assert rows[0]["request_id"]
    assert PATIENT not in str(rows)

    patient = await clinic.token(sub="pacjent", role="patient", pesel=PATIENT, facility_id=FACILITY)
    mine = await _listed(clinic, ME, patient)
    assert [(r["actor_role"], r["tenant"], r["action"], r["resource"]) for r in mine] == [
        ("registrar", FACILITY, "scheduling.booking.create", f"booking/{booking['id']}")
    ]
    assert "actor" not in mine[0]
    other_patient = await clinic.token(sub="inny", role="patient", pesel=PATIENT_2, facility_id=FACILITY)
    assert await _listed(clinic, ME, other_patient) == []

    elsewhere = await clinic.token(sub="admin-b", role="facility_admin", facility_id="clinic-other")
    assert await _listed(clinic, EVENTS, elsewhere) == []
    # A's row id as another facility's cursor: as unknown as an id that never existed.
    foreign = await clinic.client.get(EVENTS, params={"before": rows[0]["id"]}, headers=elsewhere)
    assert foreign.status_code == 422 and foreign.json()["errors"][0]["field"] == "query.before"
    operator = await clinic.token(sub="ops", role="operator")
    everything = await _listed(clinic, EVENTS, operator, patient_pesel=PATIENT)
    assert f"booking/{booking['id']}" in {r["resource"] for r in everything}

    for role in ("registrar", "practitioner", "partner"):
        staff = await clinic.token(sub=role, role=role, facility_id=FACILITY, npwz=DOCTOR)
        refused = await clinic.client.get(EVENTS, headers=staff)
        assert refused.status_code == 403, (role, refused.text)
    refused = await clinic.client.get(ME, headers=clinic.admin)
    assert refused.status_code == 403


async def test_reads_and_cancellations_are_audited_one_row_per_patient_shown(clinic: Clinic) -> None:
    first, second = await _free_slots(clinic, 2)
    one = await _book(clinic, first, PATIENT)
    two = await _book(clinic, second, PATIENT_2)
    listed = await clinic.client.get("/api/v1/scheduling/bookings", headers=clinic.desk)
    assert listed.status_code == 200 and len(listed.json()) == 2
    patient = await clinic.token(sub="pacjent", role="patient", pesel=PATIENT, facility_id=FACILITY)
    seen = await clinic.client.get(f"/api/v1/scheduling/bookings/{one['id']}", headers=patient)
    assert seen.status_code == 200
    # Another patient's booking: 404, nothing shown, nothing audited.
    hidden = await clinic.client.get(f"/api/v1/scheduling/bookings/{two['id']}", headers=patient)
    assert hidden.status_code == 404
    cancelled = await clinic.post(f"/api/v1/scheduling/bookings/{one['id']}/cancel", {}, clinic.desk)
    assert cancelled.status_code == 200, cancelled.text
    await _settle(clinic)

    listing = await _listed(clinic, EVENTS, clinic.admin, action="scheduling.booking.list")
    assert sorted(r["resource"] for r in listing) == sorted([f"booking/{one['id']}", f"booking/{two['id']}"])
    assert {r["patient"] for r in listing} == {MASKED, PATIENT_2[:2] + "*" * 9}
    assert len({r["request_id"] for r in listing}) == 1  # one list answer, one request

    mine = await _listed(clinic, ME, patient)
    assert [(r["actor_role"], r["action"]) for r in mine] == [
        ("registrar", "scheduling.booking.cancel"),
        ("patient", "scheduling.booking.read"),
        ("registrar", "scheduling.booking.list"),
        ("registrar", "scheduling.booking.create"),
    ]
    assert all(r["resource"] == f"booking/{one['id']}" for r in mine)

    # Paging: newest first, `before` the last id of the previous page.
    page = await _listed(clinic, ME, patient, limit=2)
    rest = await _listed(clinic, ME, patient, limit=2, before=page[-1]["id"])
    assert [r["action"] for r in page + rest] == [r["action"] for r in mine]


async def test_contact_changes_are_audited_and_only_the_patient_and_the_desk_may_make_them(clinic: Clinic) -> None:
    contact = {"phone": "+48600100200", "channels": ["sms"]}
    path = f"/api/v1/notifications/patients/{PATIENT}/contact"
    for role in ("partner", "practitioner"):
        who = await clinic.token(sub=role, role=role, facility_id=FACILITY, npwz=DOCTOR)
        refused = await clinic.client.put(path, json=contact, headers=who)
        assert refused.status_code == 403, (role, refused.text)
    saved = await clinic.client.put(path, json=contact, headers=clinic.desk)
    assert saved.status_code == 200, saved.text
    patient = await clinic.token(sub="pacjent", role="patient", pesel=PATIENT, facility_id=FACILITY)
    assert (await clinic.client.put(path, json={"channels": []}, headers=patient)).status_code == 200
    doctor = await clinic.token(sub="dr", role="practitioner", facility_id=FACILITY, npwz=DOCTOR)
    assert (await clinic.client.get(path, headers=doctor)).status_code == 200  # a read: audited too
    await _settle(clinic)

    rows = await _listed(clinic, EVENTS, clinic.admin, action="notifications.contact.update")
    assert [(r["actor"], r["role"], r["patient"]) for r in rows] == [
        ("pacjent", "patient", MASKED),
        ("desk", "registrar", MASKED),
    ]
    by_desk = await _listed(clinic, EVENTS, clinic.admin, actor="desk")
    assert {r["action"] for r in by_desk} == {"notifications.contact.update"}
    read = await _listed(clinic, EVENTS, clinic.admin, action="notifications.contact.read")
    assert [(r["actor"], r["role"], r["patient"]) for r in read] == [("dr", "practitioner", MASKED)]


async def test_a_redelivered_audit_event_writes_its_rows_once(clinic: Clinic) -> None:
    (slot,) = await _free_slots(clinic, 1)
    await _book(clinic, slot)
    await _settle(clinic)
    sessions = clinic.service("scheduling").state.ctx.sessions
    async with sessions() as session:
        raw = await session.scalar(
            sa.select(SchedulingOutbox.envelope).where(SchedulingOutbox.event_type == ACCESS_RECORDED)
        )
    assert raw is not None
    envelope = Envelope.model_validate_json(raw)
    bus = clinic.app.state.gateway.bus
    await bus.publish(envelope)
    await bus.publish(envelope)
    await bus.drain()

    audit = clinic.service("audit").state.ctx.sessions

    async def count() -> int:
        async with audit() as session:
            found = await session.scalar(
                sa.select(sa.func.count()).select_from(AccessEvent).where(AccessEvent.event_id == envelope.id)
            )
            return int(found or 0)

    # Stored once by the first delivery (_settle); the two redeliveries were consumed by drain().
    assert await count() == 1
    # Append-only on SQLite too (the embedded default): a trigger refuses to rewrite a row.
    async with audit() as session, session.begin():
        with pytest.raises(sa.exc.IntegrityError, match="append-only"):
            await session.execute(sa.update(AccessEvent).values(actor="someone-else"))


async def test_bad_audit_queries_are_422_naming_the_field(clinic: Clinic) -> None:
    cases = {
        "query.patient_pesel": {"patient_pesel": "12345678901"},
        "query.date_to": {"date_from": "2030-01-02", "date_to": "2030-01-01"},
        "query.limit": {"limit": "0"},
        "query.before": {"before": "999999"},
        "query.action": {"action": "DROP TABLE"},
    }
    for field, params in cases.items():
        answer = await clinic.client.get(EVENTS, params=params, headers=clinic.admin)
        assert answer.status_code == 422, (field, answer.text)
        assert field in [e["field"] for e in answer.json()["errors"]], (field, answer.text)

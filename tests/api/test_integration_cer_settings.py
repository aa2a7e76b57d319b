"""CeR settings through the gateway: the secret is kept to verify signatures, never returned."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from services.integration.domain import sign
from services.integration.models import CerOutgoing, CerSettings, Outbox
from services.scheduling.models import Outbox as SchedulingOutbox
from shared.clock import FixedClock
from tests.e2e import test_prescriptions_flow as flow
from tests.e2e.test_prescriptions_flow import FACILITY, PATIENT, PATIENT_2, Clinic

clinic = flow.clinic  # the e2e flow's facility fixture, used here by name

SETTINGS = {
    "endpoint": "https://gateway.clinic.example/webhooks/cer/clinic-rx",
    "email": "cer@clinic.example",
    "secret": "s3cr3t-shared-with-CeR-0123456789",
}


async def test_the_cer_secret_is_stored_but_never_returned(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    saved = await clinic.client.put("/api/v1/integration/cer/settings", json=SETTINGS, headers=clinic.admin)
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"endpoint": SETTINGS["endpoint"], "email": SETTINGS["email"], "secret_set": True}
    read = await clinic.client.get("/api/v1/integration/cer/settings", headers=clinic.admin)
    assert read.json()["secret_set"] is True and SETTINGS["secret"] not in read.text
    # The settings reach CeR (the administrator's entry there); once sent, the queue keeps no copy.
    integration = clinic.service("integration").state.ctx
    await integration.extras["cer_forwarder"].forward_pending()  # unless the background pass was first
    assert clinic.app.state.gateway.sandbox.app.state.cer.endpoints[FACILITY].endpoint.host == "gateway.clinic.example"
    async with integration.sessions() as session:
        queued = (await session.execute(sa.select(CerOutgoing.status, CerOutgoing.payload))).all()
    assert [status for status, _ in queued] == ["sent"]
    assert SETTINGS["endpoint"] in queued[0][1] and SETTINGS["secret"] not in queued[0][1]
    # At rest the secret is sealed: a copy of the database does not sign CeR notifications.
    async with integration.sessions() as session:
        stored = await session.scalar(sa.select(CerSettings.secret))
    assert stored is not None and stored.startswith("fernet:") and SETTINGS["secret"] not in stored
    output = capsys.readouterr()
    assert SETTINGS["secret"] not in output.out + output.err


async def test_bad_cer_settings_name_the_field_and_only_an_admin_sets_them(clinic: Clinic) -> None:
    bad = await clinic.client.put(
        "/api/v1/integration/cer/settings",
        json={"endpoint": "not a url", "email": "nope", "secret": "Xq7-tiny"},
        headers=clinic.admin,
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"body.endpoint", "body.email", "body.secret"}
    assert "Xq7-tiny" not in bad.text  # a secret that is refused is not echoed back either
    desk = await clinic.client.put("/api/v1/integration/cer/settings", json=SETTINGS, headers=clinic.desk)
    assert desk.status_code == 403
    other = await clinic.token(sub="a", role="facility_admin", facility_id="another-clinic")
    missing = await clinic.client.get("/api/v1/integration/cer/settings", headers=other)
    assert missing.status_code == 404
    assert FACILITY not in missing.text


# ----------------------------------------------------------------------------- the signed webhook


def _signed(body: bytes, *, secret: str = SETTINGS["secret"], at: int | None = None) -> dict[str, str]:
    when = int(time.time()) if at is None else at
    return {
        "X-CeR-Timestamp": str(when),
        "X-CeR-Signature": sign(secret, when, body),
        "Content-Type": "application/json",
    }


def _notification(event_id: str = "cer-1", **extra: Any) -> bytes:
    body = {
        "event_id": event_id,
        "event_type": "booking_created_ikp",
        "occurred_at": "2026-11-24T10:00:00+01:00",
        "slot_id": str(uuid.uuid4()),
        "patient_pesel": PATIENT,
        **extra,
    }
    return json.dumps(body).encode()


async def _received(clinic: Clinic) -> list[str]:
    sessions = clinic.service("integration").state.ctx.sessions
    async with sessions() as session:
        rows = await session.scalars(
            sa.select(Outbox.envelope).where(Outbox.event_type == "integration.cer.notification_received")
        )
        return [json.loads(r)["payload"]["cer_event_id"] for r in rows]


async def test_a_signed_notification_is_accepted_once(clinic: Clinic) -> None:
    await clinic.client.put("/api/v1/integration/cer/settings", json=SETTINGS, headers=clinic.admin)
    body = _notification()
    first = await clinic.client.post(f"/webhooks/cer/{FACILITY}", content=body, headers=_signed(body))
    again = await clinic.client.post(f"/webhooks/cer/{FACILITY}", content=body, headers=_signed(body))
    assert (first.status_code, again.status_code) == (204, 204)
    assert await _received(clinic) == ["cer-1"]


async def test_forged_stale_future_missing_or_foreign_signatures_are_refused_and_apply_nothing(clinic: Clinic) -> None:
    await clinic.client.put("/api/v1/integration/cer/settings", json=SETTINGS, headers=clinic.admin)
    # The service's clock stands still, so the 300-second window is tested to the second on any machine.
    now = 1_796_000_000
    clinic.service("integration").state.ctx.clock = FixedClock(dt.datetime.fromtimestamp(now, dt.UTC))
    body = _notification()
    cases = {
        "forged": _signed(body, secret="not-the-facility-secret-0123456", at=now),
        "stale": _signed(body, at=now - 301),
        "future": _signed(body, at=now + 301),
        "missing": {"Content-Type": "application/json"},
        "body changed": _signed(_notification(event_id="cer-2"), at=now),
    }
    for name, headers in cases.items():
        answer = await clinic.client.post(f"/webhooks/cer/{FACILITY}", content=body, headers=headers)
        assert answer.status_code == 401, name
        assert answer.headers["content-type"] == "application/problem+json", name
    elsewhere = await clinic.client.post("/webhooks/cer/another-clinic", content=body, headers=_signed(body, at=now))
    assert elsewhere.status_code == 401  # a facility without CeR settings: nothing revealed
    assert await _received(clinic) == []
    # The edges of the window are inside it: 300 s either way is accepted.
    for event_id, at in (("cer-early", now - 300), ("cer-late", now + 300)):
        edge = _notification(event_id=event_id)
        accepted = await clinic.client.post(f"/webhooks/cer/{FACILITY}", content=edge, headers=_signed(edge, at=at))
        assert accepted.status_code == 204, event_id
    assert sorted(await _received(clinic)) == ["cer-early", "cer-late"]


async def test_a_malformed_or_oversized_notification_is_refused(clinic: Clinic) -> None:
    await clinic.client.put("/api/v1/integration/cer/settings", json=SETTINGS, headers=clinic.admin)
    broken = b'{"event_id": "cer-9", "event_type":'
    bad_json = await clinic.client.post(f"/webhooks/cer/{FACILITY}", content=broken, headers=_signed(broken))
    assert bad_json.status_code == 422
    wrong = _notification(event_type="booking_deleted", patient_pesel="44051401358")
    invalid = await clinic.client.post(f"/webhooks/cer/{FACILITY}", content=wrong, headers=_signed(wrong))
    assert invalid.status_code == 422
    assert {e["field"] for e in invalid.json()["errors"]} == {"body.event_type", "body.patient_pesel"}
    huge = _notification(padding="x" * 70_000)
    too_big = await clinic.client.post(f"/webhooks/cer/{FACILITY}", content=huge, headers=_signed(huge))
    assert too_big.status_code == 413
    assert await _received(clinic) == []


# ----------------------------------------------------------------------------- applied to the local schedule


async def _slot(clinic: Clinic) -> str:
    await clinic.schedule(flow.DOCTOR, "A", "visit", 1, "08:00", "08:15")
    slots = (await clinic.client.get("/api/v1/scheduling/slots", headers=clinic.desk)).json()
    slot_id: str = slots[0]["id"]
    return slot_id


async def _notify(clinic: Clinic, slot_id: str, event_id: str, event_type: str, at: str) -> None:
    body = _notification(event_id=event_id, event_type=event_type, slot_id=slot_id, occurred_at=at)
    answer = await clinic.client.post(f"/webhooks/cer/{FACILITY}", content=body, headers=_signed(body))
    assert answer.status_code == 204, answer.text
    await clinic.settle()
    await clinic.service("scheduling").state.ctx.relay.publish_pending()
    await clinic.app.state.gateway.bus.drain()


async def _status(clinic: Clinic, slot_id: str) -> str:
    slots = (await clinic.client.get("/api/v1/scheduling/slots", headers=clinic.desk)).json()
    status: str = next(s["status"] for s in slots if s["id"] == slot_id)
    return status


async def test_cer_bookings_and_cancellations_reach_the_slot_once_and_in_the_right_order(clinic: Clinic) -> None:
    await clinic.client.put("/api/v1/integration/cer/settings", json=SETTINGS, headers=clinic.admin)
    slot = await _slot(clinic)

    await _notify(clinic, slot, "c1", "booking_created_ikp", "2026-11-24T10:00:00+01:00")
    await _notify(clinic, slot, "c1", "booking_created_ikp", "2026-11-24T10:00:00+01:00")  # twice
    assert await _status(clinic, slot) == "booked"
    await _notify(clinic, slot, "c2", "booking_cancelled_ikp", "2026-11-24T11:00:00+01:00")
    assert await _status(clinic, slot) == "free"

    other = await _slot_b(clinic)
    # Out of order: the cancellation (11:00) arrives before its booking (10:00).
    await _notify(clinic, other, "c4", "booking_cancelled_ikp", "2026-11-24T11:00:00+01:00")
    await _notify(clinic, other, "c3", "booking_created_ikp", "2026-11-24T10:00:00+01:00")
    assert await _status(clinic, other) == "free"


async def test_a_booking_and_its_cancellation_at_the_same_instant_leave_the_slot_free_in_either_order(
    clinic: Clinic,
) -> None:
    await clinic.client.put("/api/v1/integration/cer/settings", json=SETTINGS, headers=clinic.admin)
    slot = await _slot(clinic)
    at = "2026-11-24T10:00:00+01:00"
    await _notify(clinic, slot, "t1", "booking_created_ikp", at)
    assert await _status(clinic, slot) == "booked"
    await _notify(clinic, slot, "t2", "booking_cancelled_ikp", at)
    assert await _status(clinic, slot) == "free"  # the cancellation wins its tie

    other = await _slot_b(clinic)
    await _notify(clinic, other, "t3", "booking_cancelled_ikp", at)
    await _notify(clinic, other, "t4", "booking_created_ikp", at)
    assert await _status(clinic, other) == "free"  # the booking it cancelled cannot come after it


async def _slot_b(clinic: Clinic) -> str:
    await clinic.schedule(flow.DUTY, "A", "visit", 2, "08:00", "08:15")
    slots = (await clinic.client.get("/api/v1/scheduling/slots", headers=clinic.desk)).json()
    slot_id: str = next(s["id"] for s in slots if s["practitioner_id"] == clinic.ids[flow.DUTY])
    return slot_id


async def test_a_cer_booking_of_a_slot_the_desk_took_first_is_a_conflict_reported_to_the_facility(
    clinic: Clinic,
) -> None:
    await clinic.client.put("/api/v1/integration/cer/settings", json=SETTINGS, headers=clinic.admin)
    slot = await _slot(clinic)
    desk = await clinic.client.post(
        "/api/v1/scheduling/bookings", json={"slot_id": slot, "patient_pesel": PATIENT_2}, headers=clinic.desk
    )
    assert desk.status_code == 201

    await _notify(clinic, slot, "c9", "booking_created_other_entity", "2026-11-24T10:00:00+01:00")
    await clinic.settle()
    notifications = clinic.service("notifications").state.ctx
    await clinic.app.state.gateway.bus.drain()
    await notifications.extras["sender"].send_due()

    booked = (await clinic.client.get("/api/v1/scheduling/slots", headers=clinic.desk)).json()
    assert [s["status"] for s in booked if s["id"] == slot] == ["booked"]  # still the desk's patient only
    for _ in range(100):
        mails = (await clinic.client.get("/sandbox/mail/messages", params={"to": SETTINGS["email"]})).json()
        if mails:
            break
        await notifications.extras["sender"].send_due()
        await asyncio.sleep(0.02)
    assert len(mails) == 1
    body = (await clinic.client.get(f"/sandbox/mail/messages/{mails[0]['id']}")).json()["text"]
    assert "Rezerwacja z CeR nie mogła zostać zapisana" in body


async def test_what_cer_applies_is_audited_as_cer_in_the_facility(clinic: Clinic) -> None:
    await clinic.client.put("/api/v1/integration/cer/settings", json=SETTINGS, headers=clinic.admin)
    slot = await _slot(clinic)
    await _notify(clinic, slot, "a1", "booking_created_ikp", "2026-11-24T10:00:00+01:00")
    await _notify(clinic, slot, "a2", "booking_cancelled_ikp", "2026-11-24T11:00:00+01:00")
    gateway = clinic.app.state.gateway
    for upstream in gateway.upstreams.values():  # the audit events through every outbox to the audit
        if upstream.app is not None:
            await upstream.app.state.ctx.relay.publish_pending()
    await gateway.bus.drain()
    answer = await clinic.client.get("/api/v1/audit/events", params={"actor": "system:cer"}, headers=clinic.admin)
    assert answer.status_code == 200, answer.text
    assert sorted((r["action"], r["role"], r["tenant"]) for r in answer.json()) == [
        ("scheduling.booking.cancel", "system", FACILITY),
        ("scheduling.booking.create", "system", FACILITY),
    ]
    assert PATIENT not in answer.text


async def test_a_notification_naming_another_facilitys_slot_learns_nothing_of_its_patient(clinic: Clinic) -> None:
    slot = await _slot(clinic)  # this clinic's slot, booked at its desk
    desk = await clinic.client.post(
        "/api/v1/scheduling/bookings", json={"slot_id": slot, "patient_pesel": PATIENT_2}, headers=clinic.desk
    )
    assert desk.status_code == 201
    other = "clinic-elsewhere"
    other_admin = await clinic.token(sub="admin-b", role="facility_admin", facility_id=other)
    saved = await clinic.client.put("/api/v1/integration/cer/settings", json=SETTINGS, headers=other_admin)
    assert saved.status_code == 200, saved.text
    body = _notification(event_id="x1", slot_id=slot, event_type="booking_created_other_entity")
    answer = await clinic.client.post(f"/webhooks/cer/{other}", content=body, headers=_signed(body))
    assert answer.status_code == 204, answer.text
    await clinic.settle()
    await clinic.service("integration").state.ctx.relay.publish_pending()
    await clinic.app.state.gateway.bus.drain()

    async with clinic.service("scheduling").state.ctx.sessions() as session:
        rows = (await session.scalars(sa.select(SchedulingOutbox.envelope))).all()
    conflicts = [e for e in map(json.loads, rows) if e["type"] == "scheduling.cer.conflict"]
    assert conflicts, "the other facility's notification was settled as a conflict"
    for conflict in conflicts:
        assert conflict["facility_id"] == other
        assert conflict["payload"]["held_by_pesel"] is None and conflict["payload"]["held_by_booking_id"] is None
        assert PATIENT_2 not in json.dumps(conflict)
    slots = (await clinic.client.get("/api/v1/scheduling/slots", headers=clinic.desk)).json()
    assert [s["status"] for s in slots if s["id"] == slot] == ["booked"]  # still this clinic's patient


async def test_an_unknown_facility_answers_every_bad_call_exactly_as_a_configured_one(clinic: Clinic) -> None:
    await clinic.client.put("/api/v1/integration/cer/settings", json=SETTINGS, headers=clinic.admin)
    now = 1_796_000_000
    clinic.service("integration").state.ctx.clock = FixedClock(dt.datetime.fromtimestamp(now, dt.UTC))
    body = _notification()
    cases = {
        "no headers": {"Content-Type": "application/json"},
        "not unix seconds": {**_signed(body, at=now), "X-CeR-Timestamp": "yesterday"},
        "malformed signature": {**_signed(body, at=now), "X-CeR-Signature": "md5=abc"},
        "stale": _signed(body, at=now - 301),
        "forged": _signed(body, secret="not-the-facility-secret-0123456789", at=now),
    }
    for name, headers in cases.items():
        known = await clinic.client.post(f"/webhooks/cer/{FACILITY}", content=body, headers=headers)
        unknown = await clinic.client.post("/webhooks/cer/no-such-clinic", content=body, headers=headers)
        assert known.status_code == unknown.status_code == 401, name
        assert known.json()["detail"] == unknown.json()["detail"], name

"""Notifications end to end (embedded gateway): an issued prescription reaches the patient by SMS
(the access code) and by e-mail (a PDF whose QR code is the key), through the sandbox's SMS
provider and its real SMTP mail catcher; once per event, retried, dead and replayed."""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import pypdf
import pytest
import sqlalchemy as sa
import zxingcpp

from services.integration.events import CerSyncFailed
from services.notifications.models import Message
from shared.events import Envelope
from tests.e2e import test_prescriptions_flow as flow
from tests.e2e.test_prescriptions_flow import DOCTOR, FACILITY, PATIENT, PATIENT_2, Clinic, _rx
from tests.e2e.test_realisation_flow import _issued
from tests.support.waiting import eventually

clinic = flow.clinic  # the prescriptions flow's facility fixture, used here by name

CONTACT = {"email": "jan.kowalski@example.pl", "phone": "+48600100200", "channels": ["email", "sms"]}


async def _deliver(clinic: Clinic) -> None:
    """Every outbox published, every event consumed, every due message sent once. The background
    pass may hold a message (claimed) while this one looks: wait until nothing is left queued."""
    await clinic.settle()
    await clinic.service("notifications").state.ctx.relay.publish_pending()
    await clinic.app.state.gateway.bus.drain()
    sender = clinic.service("notifications").state.ctx.extras["sender"]

    async def nothing_queued() -> bool:
        await sender.send_due()
        return all(m["status"] != "queued" for m in await _messages(clinic))

    await eventually(nothing_queued, what="every due message sent")


async def _messages(clinic: Clinic, **query: str) -> list[dict[str, Any]]:
    answer = await clinic.client.get("/api/v1/notifications/messages", params=query, headers=clinic.admin)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


async def test_an_issued_prescription_reaches_the_patient_by_sms_and_by_email_with_a_scannable_pdf(
    clinic: Clinic,
) -> None:
    saved = await clinic.client.put(
        f"/api/v1/notifications/patients/{PATIENT}/contact", json=CONTACT, headers=clinic.desk
    )
    assert saved.status_code == 200, saved.text
    package = await _issued(clinic, _rx(drug="Żółć wołowa 200 mg", packages=2, dosage="1 tabletka 2 razy dziennie"))
    key = package["prescriptions"][0]["key"]

    await _deliver(clinic)

    sms = (await clinic.client.get("/sandbox/sms/messages", params={"to": "+48600100200"})).json()
    assert len(sms) == 1 and package["access_code"] in sms[0]["text"] and "Żółć" in sms[0]["text"]
    assert PATIENT not in sms[0]["text"]
    mails = (await clinic.client.get("/sandbox/mail/messages", params={"to": CONTACT["email"]})).json()
    assert len(mails) == 1 and mails[0]["attachments"][0]["content_type"] == "application/pdf"
    pdf_bytes = (await clinic.client.get(f"/sandbox/mail/messages/{mails[0]['id']}/attachments/0")).content
    page = pypdf.PdfReader(io.BytesIO(pdf_bytes)).pages[0]
    text = page.extract_text()
    assert "Żółć wołowa 200 mg" in text and key in text.replace(" ", "")
    assert "1 tabletka 2 razy dziennie" in text and "2 op. po 30" in text
    assert f"doctor {DOCTOR}" in text  # the issuer's name on the practitioner's record
    decoded = {r.text for image in page.images for r in zxingcpp.read_barcodes(image.image)}
    assert key in decoded

    listed = await _messages(clinic, event_type="prescriptions.prescription.issued")
    assert sorted((m["channel"], m["status"], m["attempts"]) for m in listed) == [
        ("email", "sent", 1),
        ("sms", "sent", 1),
    ]
    assert package["access_code"] not in json.dumps(listed)  # never the body of an SMS with the code
    # Delivered, the messages keep no copy of the code that opens the package with a PESEL.
    async with clinic.service("notifications").state.ctx.sessions() as session:
        stored = (await session.scalars(sa.select(Message.context))).all()
    assert len(stored) == 2 and all("access_code" not in json.loads(context) for context in stored)
    assert all(key in context for context in stored)  # what a reader of the record needs stays


async def test_the_same_event_twice_sends_once_and_no_channel_is_visible(clinic: Clinic) -> None:
    await clinic.client.put(f"/api/v1/notifications/patients/{PATIENT}/contact", json=CONTACT, headers=clinic.desk)
    envelope = Envelope(
        type="reimbursement.order.number_issued",
        facility_id=FACILITY,
        payload={
            "number": "ZWM-1",
            "patient_pesel": PATIENT,
            "channel": "teleconsultation",
            "verification": "positive",
        },
    )
    bus = clinic.app.state.gateway.bus
    for _ in range(2):
        await bus.publish(envelope)
    silent = Envelope(
        type="reimbursement.order.number_issued",
        facility_id=FACILITY,
        payload={
            "number": "ZWM-2",
            "patient_pesel": PATIENT_2,
            "channel": "teleconsultation",
            "verification": "negative",
        },
    )
    await bus.publish(silent)
    await _deliver(clinic)

    mine = await _messages(clinic, event_type="reimbursement.order.number_issued")
    assert sorted((m["channel"], m["status"]) for m in mine) == [
        ("email", "sent"),
        ("none", "no_channel"),
        ("sms", "sent"),
    ]
    sms = (await clinic.client.get("/sandbox/sms/messages", params={"to": "+48600100200"})).json()
    assert len(sms) == 1 and "ZWM-1" in sms[0]["text"]


async def test_a_provider_down_for_a_while_then_up_delivers_everything_and_a_dead_message_is_replayed(
    clinic: Clinic,
) -> None:
    await clinic.client.put(
        f"/api/v1/notifications/patients/{PATIENT}/contact",
        json={"phone": "+48600100200", "channels": ["sms"]},
        headers=clinic.desk,
    )
    extras = clinic.service("notifications").state.ctx.extras
    await extras["sending"].stop()  # the test runs the passes itself, counting attempts
    sender = extras["sender"]
    sender.max_attempts, sender.retry_base_seconds = 3, 0.0  # no waiting between attempts in the test
    await clinic.client.post("/sandbox/sms/down")
    numbers = [f"ZWM-{n}" for n in range(5)]
    for number in numbers:
        await clinic.app.state.gateway.bus.publish(
            Envelope(
                type="reimbursement.order.number_issued",
                facility_id=FACILITY,
                payload={"number": number, "patient_pesel": PATIENT, "channel": "visit", "verification": "positive"},
            )
        )
    await _deliver(clinic)
    await sender.send_due()
    assert {m["status"] for m in await _messages(clinic)} == {"failed"}

    await clinic.client.post("/sandbox/sms/up")
    await sender.send_due()
    texts = [m["text"] for m in (await clinic.client.get("/sandbox/sms/messages")).json()]
    assert sorted(n for n in numbers if any(n in t for t in texts)) == numbers  # all five, nothing lost
    assert {m["status"] for m in await _messages(clinic)} == {"sent"}

    await clinic.client.post("/sandbox/sms/down")
    await clinic.app.state.gateway.bus.publish(
        Envelope(
            type="reimbursement.order.number_issued",
            facility_id=FACILITY,
            payload={"number": "ZWM-dead", "patient_pesel": PATIENT, "channel": "visit", "verification": "positive"},
        )
    )
    await _deliver(clinic)
    for _ in range(3):
        await sender.send_due()
    dead = await _messages(clinic, status="dead")
    assert len(dead) == 1 and dead[0]["attempts"] == 3 and "503" in (dead[0]["last_error"] or "")
    desk_try = await clinic.client.post(f"/api/v1/notifications/messages/{dead[0]['id']}/replay", headers=clinic.desk)
    assert desk_try.status_code == 403
    await clinic.client.post("/sandbox/sms/up")
    replayed = await clinic.client.post(f"/api/v1/notifications/messages/{dead[0]['id']}/replay", headers=clinic.admin)
    assert replayed.status_code == 200 and replayed.json()["status"] == "queued"
    await sender.send_due()
    assert (await _messages(clinic, status="dead")) == []
    again = await clinic.client.post(f"/api/v1/notifications/messages/{dead[0]['id']}/replay", headers=clinic.admin)
    assert again.status_code == 409
    # The replay is audited (in its own transaction), the refused ones are not.
    await clinic.service("notifications").state.ctx.relay.publish_pending()
    await clinic.app.state.gateway.bus.drain()
    audited = await clinic.client.get(
        "/api/v1/audit/events", params={"action": "notifications.message.replay"}, headers=clinic.admin
    )
    assert [(r["actor"], r["role"], r["resource"]) for r in audited.json()] == [
        ("admin", "facility_admin", f"message/{dead[0]['id']}")
    ]


async def test_a_problem_notification_is_emailed_to_the_facility_in_the_words_of_the_source(clinic: Clinic) -> None:
    off = await clinic.client.put("/api/v1/prescriptions/settings", json={"mode": "off"}, headers=clinic.admin)
    assert off.status_code == 200
    await clinic.client.put(
        "/api/v1/prescriptions/settings",
        json={"mode": "off", "problem_email": "problemy@clinic.example"},
        headers=clinic.admin,
    )
    refused = await clinic.request(DOCTOR)
    assert refused.status_code == 422

    await _deliver(clinic)

    mails = (await clinic.client.get("/sandbox/mail/messages", params={"to": "problemy@clinic.example"})).json()
    assert len(mails) == 1
    body = (await clinic.client.get(f"/sandbox/mail/messages/{mails[0]['id']}")).json()["text"]
    assert "Placówka nie posiada aktywowanej usługi Zamawiania recept on-line." in body
    assert "włączenie usługi Zamawiania recept on-line w ustawieniach placówki" in body


async def test_a_refused_portal_request_is_emailed_to_the_facility_naming_what_was_refused(clinic: Clinic) -> None:
    scoped = await clinic.client.put(
        "/api/v1/prescriptions/settings",
        json={"mode": "demo", "drug_scope": "patient_account", "problem_email": "problemy@clinic.example"},
        headers=clinic.admin,
    )
    assert scoped.status_code == 200, scoped.text
    refused = await clinic.request(DOCTOR, "Xanax 1")
    assert refused.status_code == 422

    await _deliver(clinic)

    mails = (await clinic.client.get("/sandbox/mail/messages", params={"to": "problemy@clinic.example"})).json()
    assert len(mails) == 1
    body = (await clinic.client.get(f"/sandbox/mail/messages/{mails[0]['id']}")).json()["text"]
    assert "Odrzucono zamówienie na receptę" in body
    assert "Szczegóły:\n- Lek Xanax 1 nie był wcześniej przepisany pacjentowi w tej placówce" in body
    assert PATIENT not in body


async def test_bad_contact_input_is_refused_naming_the_field(clinic: Clinic) -> None:
    bad = await clinic.client.put(
        f"/api/v1/notifications/patients/{PATIENT}/contact",
        json={"email": "not-an-email", "phone": "600100200", "channels": ["pigeon"]},
        headers=clinic.desk,
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"body.email", "body.phone", "body.channels.0"}
    wrong_pesel = await clinic.client.put(
        "/api/v1/notifications/patients/44051401358/contact", json=CONTACT, headers=clinic.desk
    )
    assert wrong_pesel.status_code == 422
    patient = await clinic.token(sub="p", role="patient", pesel=PATIENT_2, facility_id=FACILITY)
    other = await clinic.client.put(f"/api/v1/notifications/patients/{PATIENT}/contact", json=CONTACT, headers=patient)
    assert other.status_code == 404


@pytest.mark.parametrize("sensitive", ["pesel", "access_code"])
async def test_no_log_line_carries_a_whole_pesel_or_an_access_code(
    clinic: Clinic, capsys: pytest.CaptureFixture[str], sensitive: str
) -> None:
    await clinic.client.put(f"/api/v1/notifications/patients/{PATIENT}/contact", json=CONTACT, headers=clinic.desk)
    await clinic.client.post("/sandbox/sms/fail-next", json={"count": 1, "status": 500})
    package = await _issued(clinic, _rx())
    await _deliver(clinic)
    await asyncio.sleep(0)
    logged = capsys.readouterr()
    secret = PATIENT if sensitive == "pesel" else package["access_code"]
    lines = [line for line in (logged.out + logged.err).splitlines() if secret in line]
    assert lines == []


async def test_a_cer_synchronisation_failure_is_emailed_to_the_facilitys_cer_address(clinic: Clinic) -> None:
    failure = CerSyncFailed(
        failure="Pacjent potwierdzony w CeR nie ma wizyty w placówce.", email="cer@clinic.example", slot_id=None
    )
    await clinic.app.state.gateway.bus.publish(
        Envelope(type=failure.event_type, facility_id=FACILITY, payload=failure.model_dump(mode="json"))
    )
    await _deliver(clinic)

    mails = (await clinic.client.get("/sandbox/mail/messages", params={"to": "cer@clinic.example"})).json()
    assert len(mails) == 1
    body = (await clinic.client.get(f"/sandbox/mail/messages/{mails[0]['id']}")).json()["text"]
    assert "Pacjent potwierdzony w CeR nie ma wizyty w placówce." in body

"""CeR synchronisation through the gateway (embedded, with the CeR simulator of the sandbox): what is
published, what is sent and what is not, CeR's bookings applied here, absences and moves, the conflict
of a desk booking and a CeR booking of one slot, reconciliation, the compliance report, the settings
and the queue's signs in /readyz."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import httpx
from fastapi import FastAPI

from services.integration.cer import CerClient
from services.integration.cer_service import cer_forwarder
from tests.e2e import test_cer_flow as cer_flow
from tests.e2e import test_prescriptions_flow as flow
from tests.e2e.test_cer_flow import CER, SECRET, _cer_bookings, _cer_connected, _settle, _slot_status, eventually
from tests.e2e.test_prescriptions_flow import FACILITY, PATIENT, PATIENT_2, WARSAW, Clinic

clinic = cer_flow.clinic  # the e2e flow's facility fixture, used here by name

PATIENT_3 = "90010112318"  # a valid PESEL (stdnum.pl.pesel)
EMAIL = "cer@clinic.example"  # the facility's CeR address, as _cer_connected sets it
OTHER_FACILITY = "another-clinic"
SCHEDULES_DUE = dt.date(2026, 5, 31)
CER_BOOKINGS_ONLY_FROM = dt.date(2026, 7, 1)


def _day(offset: int) -> str:
    return (dt.datetime.now(WARSAW).date() + dt.timedelta(days=offset)).isoformat()


# ----------------------------------------------------------------------------- helpers


async def _work(clinic: Clinic, specialty: str | None, name: str = "Praca") -> str:
    body: dict[str, Any] = {"name": name, "visible_online": True, "cer_specialty": specialty}
    work_id: str = (await clinic.created("/api/v1/scheduling/work-types", body))["id"]
    return work_id


async def _schedule(
    clinic: Clinic,
    who: str,
    work_id: str,
    *,
    where: str = "A",
    day: int = 3,
    count: int = 3,
    **extra: Any,
) -> tuple[dict[str, Any], list[str]]:
    """A schedule of ``count`` 15-minute slots from 08:00; its slot ids, earliest first."""
    end = (dt.datetime(2000, 1, 1, 8, 0) + dt.timedelta(minutes=15 * count)).strftime("%H:%M")
    location = clinic.ids.get(where, where)
    body = {
        "practitioner_id": clinic.ids[who],
        "location_id": location,
        "work_type_id": work_id,
        "date": _day(day),
        "start_time": "08:00",
        "end_time": end,
        "visit_minutes": 15,
        **extra,
    }
    schedule = await clinic.created("/api/v1/scheduling/schedules", body)
    params = {"practitioner_id": clinic.ids[who], "work_type_id": work_id, "date_from": _day(day), "date_to": _day(day)}
    slots = (await clinic.client.get("/api/v1/scheduling/slots", params=params, headers=clinic.desk)).json()
    assert len(slots) == count, slots
    return schedule, [s["id"] for s in slots]


async def _cer_slots(clinic: Clinic) -> dict[str, dict[str, Any]]:
    answer = await clinic.client.get(f"{CER}/facilities/{FACILITY}/slots")
    assert answer.status_code == 200, answer.text
    return {s["slot_id"]: s for s in answer.json()}


async def _in_cer(clinic: Clinic, slots: list[str]) -> None:
    async def published() -> bool:
        return set(slots) <= set(await _cer_slots(clinic))

    await eventually(published, "the schedule's slots in CeR", clinic)


async def _outgoing(clinic: Clinic) -> list[dict[str, Any]]:
    """The facility's CeR queue, oldest first."""
    answer = await clinic.client.get("/api/v1/integration/cer/outgoing", headers=clinic.admin)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return list(reversed(found))


async def _nothing_pending(clinic: Clinic, *kinds: str) -> bool:
    """Nothing waits in the queue (and changes of these kinds are in it: queued and then settled)."""
    queue = await _outgoing(clinic)
    present = [q["kind"] for q in queue]
    return all(present.count(k) >= kinds.count(k) for k in kinds) and all(q["status"] != "pending" for q in queue)


async def _book(clinic: Clinic, slot_id: str, pesel: str) -> str:
    answer = await clinic.client.post(
        "/api/v1/scheduling/bookings", json={"slot_id": slot_id, "patient_pesel": pesel}, headers=clinic.desk
    )
    assert answer.status_code == 201, answer.text
    booking_id: str = answer.json()["id"]
    return booking_id


async def _bookings(clinic: Clinic, headers: dict[str, str] | None = None, **params: str) -> list[dict[str, Any]]:
    answer = await clinic.client.get("/api/v1/scheduling/bookings", params=params, headers=headers or clinic.desk)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found


async def _booked_on(clinic: Clinic, slot_id: str) -> list[tuple[str, str]]:
    """(patient, source) of every active booking of one local slot."""
    return [
        (b["patient_pesel"], b["source"]) for b in await _bookings(clinic, status="booked") if b["slot_id"] == slot_id
    ]


async def _play(clinic: Clinic, slot_id: str, pesel: str, channel: str = "ikp", notify: bool = True) -> dict[str, Any]:
    """A patient books the slot in CeR (IKP, another entity, the waiting list)."""
    body = {"facility_id": FACILITY, "slot_id": slot_id, "patient_pesel": pesel, "channel": channel, "notify": notify}
    answer = await clinic.client.post(f"{CER}/patients/bookings", json=body)
    assert answer.status_code == 201, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def _changes(clinic: Clinic) -> list[tuple[str, str]]:
    """The facility's changes in the order CeR received them."""
    answer = await clinic.client.get(f"{CER}/facilities/{FACILITY}/changes")
    assert answer.status_code == 200, answer.text
    return [(c["kind"], c["reference"]) for c in answer.json()]


async def _reconcile(clinic: Clinic, headers: dict[str, str] | None = None) -> httpx.Response:
    return await clinic.client.post("/api/v1/integration/cer/reconcile", headers=headers or clinic.admin)


async def _reconciled(clinic: Clinic) -> dict[str, Any]:
    answer = await _reconcile(clinic)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


async def _mails(clinic: Clinic) -> list[str]:
    """Subject and text of every e-mail the facility's CeR address received, oldest first."""
    await clinic.service("notifications").state.ctx.extras["sender"].send_due()
    listed = await clinic.client.get("/sandbox/mail/messages", params={"to": EMAIL})
    assert listed.status_code == 200, listed.text
    texts = []
    for mail in listed.json():
        detail = (await clinic.client.get(f"/sandbox/mail/messages/{mail['id']}")).json()
        texts.append(f"{detail['subject']}\n{detail['text']}")
    return texts


async def _await_mail(clinic: Clinic, containing: str) -> list[str]:
    async def arrived() -> bool:
        return any(containing in m for m in await _mails(clinic))

    await eventually(arrived, f"an e-mail to {EMAIL} saying {containing!r}", clinic)
    return await _mails(clinic)


async def _quiet(clinic: Clinic, rounds: int = 5) -> None:
    """Give every queue a fair chance to do what it would (for checks that something did NOT happen)."""
    for _ in range(rounds):
        await _settle(clinic)
        await clinic.service("notifications").state.ctx.extras["sender"].send_due()


async def _down(clinic: Clinic) -> None:
    assert (await clinic.client.post(f"{CER}/down")).status_code == 200


async def _up(clinic: Clinic) -> None:
    assert (await clinic.client.post(f"{CER}/up")).status_code == 200


# ----------------------------------------------------------------------------- 1. what is published


async def test_a_cer_specialty_of_the_work_or_the_location_or_asking_publishes_an_ordinary_schedule_stays_home(
    clinic: Clinic,
) -> None:
    await _cer_connected(clinic)
    mammo = await clinic.created(
        "/api/v1/scheduling/locations", {"name": "Pracownia mammografii", "cer_specialty": "mammography"}
    )
    assert mammo["cer_specialty"] == "mammography"
    cardiology, cytology = await _work(clinic, "cardiology", "Kardiologia"), await _work(clinic, "hpv_cytology", "HPV")
    ordinary = clinic.ids["visit"]

    plain, plain_slots = await _schedule(clinic, flow.DOCTOR, ordinary, day=2)
    by_work, work_slots = await _schedule(clinic, flow.DOCTOR, cardiology, day=3, cer_published=False)
    by_location, location_slots = await _schedule(clinic, flow.DUTY, ordinary, where=mammo["id"], day=3)
    by_cytology, cytology_slots = await _schedule(clinic, flow.NURSE, cytology, where="B", day=3)
    asked, asked_slots = await _schedule(clinic, flow.OTHER, ordinary, day=3, cer_published=True)

    assert (plain["cer_published"], plain["cer_specialty"]) == (False, None)
    assert (by_work["cer_published"], by_work["cer_specialty"]) == (True, "cardiology")  # a must, even unasked
    assert (by_location["cer_published"], by_location["cer_specialty"]) == (True, "mammography")
    assert (by_cytology["cer_published"], by_cytology["cer_specialty"]) == (True, "hpv_cytology")
    assert (asked["cer_published"], asked["cer_specialty"]) == (True, None)

    published = work_slots + location_slots + cytology_slots + asked_slots
    await _in_cer(clinic, published)
    await _settle(clinic)
    in_cer = await _cer_slots(clinic)
    expected = {
        by_work["id"]: (work_slots, "cardiology"),
        by_location["id"]: (location_slots, "mammography"),
        by_cytology["id"]: (cytology_slots, "hpv_cytology"),
        asked["id"]: (asked_slots, None),
    }
    for schedule_id, (slots, specialty) in expected.items():
        found = {i: s for i, s in in_cer.items() if s["schedule_id"] == schedule_id}
        assert set(found) == set(slots), schedule_id
        assert {(s["specialty"], s["withdrawn"], s["booked"]) for s in found.values()} == {(specialty, False, False)}
    assert set(in_cer) == set(published)  # nothing of the ordinary schedule
    assert not set(plain_slots) & set(in_cer)
    sent = [q["reference"] for q in await _outgoing(clinic) if q["kind"] == "publish_schedule"]
    assert sorted(sent) == sorted(expected)


# ----------------------------------------------------------------------------- 2. desk bookings out


async def test_a_desk_booking_of_a_published_slot_reaches_cer_and_one_of_an_ordinary_slot_never_does(
    clinic: Clinic,
) -> None:
    await _cer_connected(clinic)
    _, ordinary = await _schedule(clinic, flow.DOCTOR, clinic.ids["visit"], day=2)
    _, cardiology = await _schedule(clinic, flow.DUTY, await _work(clinic, "cardiology"), day=3)
    await _in_cer(clinic, cardiology)

    unpublished = await _book(clinic, ordinary[0], PATIENT_2)
    cancelled = await clinic.client.post(f"/api/v1/scheduling/bookings/{unpublished}/cancel", headers=clinic.desk)
    assert cancelled.status_code == 200, cancelled.text
    await _book(clinic, ordinary[1], PATIENT_3)
    desk = await _book(clinic, cardiology[1], PATIENT)

    async def in_cer() -> bool:
        return len(await _cer_bookings(clinic)) > 0

    await eventually(in_cer, "the desk booking in CeR", clinic)
    await _quiet(clinic)
    found = await _cer_bookings(clinic)
    assert [(b["slot_id"], b["patient_pesel"], b["channel"], b["local_booking_id"]) for b in found] == [
        (cardiology[1], PATIENT, "facility", desk)
    ]
    assert (await _cer_slots(clinic))[cardiology[1]]["booked"] is True
    kinds = [q["kind"] for q in await _outgoing(clinic)]
    assert kinds == ["register_endpoint", "publish_schedule", "book"]  # no book nor cancel of the ordinary slots
    assert [k for k, _ in await _changes(clinic) if k in ("book", "cancel")] == ["book"]


# ----------------------------------------------------------------------------- 3. CeR bookings in


async def test_bookings_made_in_cer_are_applied_here_with_their_channel_and_never_echoed_back(clinic: Clinic) -> None:
    await _cer_connected(clinic)
    _, slots = await _schedule(clinic, flow.DUTY, await _work(clinic, "cardiology"))
    await _in_cer(clinic, slots)

    plays = list(zip(slots, (PATIENT, PATIENT_2, PATIENT_3), ("ikp", "other_entity", "waiting_list"), strict=True))
    for slot_id, pesel, channel in plays:
        await _play(clinic, slot_id, pesel, channel)

    async def all_booked_here() -> bool:
        return all([await _slot_status(clinic, s) == "booked" for s in slots])

    await eventually(all_booked_here, "the three CeR bookings on the local slots", clinic)
    for slot_id, pesel, channel in plays:
        assert await _booked_on(clinic, slot_id) == [(pesel, f"cer_{channel}")]
    await _quiet(clinic)
    assert "book" not in [q["kind"] for q in await _outgoing(clinic)]
    assert "book" not in [k for k, _ in await _changes(clinic)]
    in_cer = await _cer_bookings(clinic)
    assert sorted((b["slot_id"], b["channel"], b["local_booking_id"]) for b in in_cer) == sorted(
        (s, c, None) for s, _, c in plays
    )


# ----------------------------------------------------------------------------- 4. absences and moves


async def test_an_absence_withdraws_the_slots_in_cer_and_a_moved_visit_is_cancelled_there_then_booked_anew(
    clinic: Clinic,
) -> None:
    await _cer_connected(clinic)
    cardiology = await _work(clinic, "cardiology")
    _, absent = await _schedule(clinic, flow.DUTY, cardiology)
    _, colleague = await _schedule(clinic, flow.DOCTOR, cardiology)
    await _in_cer(clinic, absent + colleague)
    booking = await _book(clinic, absent[1], PATIENT)

    async def booked_in_cer() -> bool:
        return [b["local_booking_id"] for b in await _cer_bookings(clinic)] == [booking]

    await eventually(booked_in_cer, "the desk booking in CeR", clinic)

    answer = await clinic.client.post(
        f"/api/v1/scheduling/practitioners/{clinic.ids[flow.DUTY]}/absences",
        json={"date_from": _day(3), "date_to": _day(3)},
        headers=clinic.admin,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "reassigned": [{"booking_id": booking, "new_slot_id": colleague[1]}],
        "needs_rescheduling": [],
    }

    async def moved_in_cer() -> bool:
        active = await _cer_bookings(clinic)
        withdrawn = [s["withdrawn"] for i, s in (await _cer_slots(clinic)).items() if i in absent]
        return [b["slot_id"] for b in active] == [colleague[1]] and withdrawn == [True, True, True]

    await eventually(moved_in_cer, "the absent doctor's slots withdrawn and the visit moved in CeR", clinic)
    in_cer = await _cer_slots(clinic)
    assert [in_cer[s]["withdrawn"] for s in colleague] == [False, False, False]
    assert [in_cer[s]["booked"] for s in colleague] == [False, True, False]
    active = await _cer_bookings(clinic)
    assert [(b["patient_pesel"], b["channel"], b["local_booking_id"]) for b in active] == [
        (PATIENT, "facility", booking)
    ]
    old = await _cer_bookings(clinic, "cancelled")
    assert [(b["slot_id"], b["local_booking_id"]) for b in old] == [(absent[1], booking)]
    visit = [(k, r) for k, r in await _changes(clinic) if k in ("book", "cancel")]
    assert visit == [("book", booking), ("cancel", booking), ("book", booking)]  # cancel the old one, then book
    assert await _booked_on(clinic, colleague[1]) == [(PATIENT, "desk")]


# ----------------------------------------------------------------------------- 5. one slot, two patients


async def test_a_cer_booking_of_a_slot_the_desk_took_first_is_refused_in_cer_and_reported_by_mail(
    clinic: Clinic,
) -> None:
    await _cer_connected(clinic)
    _, slots = await _schedule(clinic, flow.DUTY, await _work(clinic, "cardiology"))
    await _in_cer(clinic, slots)

    await _down(clinic)  # the desk's booking waits in the queue: CeR still offers the slot
    desk = await _book(clinic, slots[0], PATIENT_2)
    await _settle(clinic)
    await _play(clinic, slots[0], PATIENT, "other_entity")

    async def conflict_seen() -> bool:
        return "refuse" in [q["kind"] for q in await _outgoing(clinic)]

    await eventually(conflict_seen, "the CeR booking refused here", clinic)
    assert await _booked_on(clinic, slots[0]) == [(PATIENT_2, "desk")]  # the desk's patient only
    mails = await _await_mail(clinic, "Rezerwacja z CeR nie mogła zostać zapisana")
    assert sum("Rezerwacja z CeR nie mogła zostać zapisana" in m for m in mails) == 1

    await _up(clinic)
    await eventually(lambda: _nothing_pending(clinic), "the queue sent once CeR is back", clinic)
    active = await _cer_bookings(clinic)
    assert [(b["slot_id"], b["patient_pesel"], b["channel"], b["local_booking_id"]) for b in active] == [
        (slots[0], PATIENT_2, "facility", desk)
    ]
    refused = await _cer_bookings(clinic, "refused")
    assert [(b["slot_id"], b["patient_pesel"], b["channel"]) for b in refused] == [(slots[0], PATIENT, "other_entity")]
    assert await _booked_on(clinic, slots[0]) == [(PATIENT_2, "desk")]
    assert [q["status"] for q in await _outgoing(clinic) if q["status"] != "sent"] == []  # nothing left to a person


# ----------------------------------------------------------------------------- 6. reconciliation


async def test_reconciliation_is_for_the_admin_of_a_facility_with_cer_and_answers_503_while_cer_is_down(
    clinic: Clinic,
) -> None:
    unconfigured = await _reconcile(clinic)
    assert unconfigured.status_code == 404, unconfigured.text
    assert unconfigured.headers["content-type"] == "application/problem+json"
    await _cer_connected(clinic)
    assert (await _reconcile(clinic, clinic.desk)).status_code == 403
    await _down(clinic)
    down = await _reconcile(clinic)
    assert down.status_code == 503, down.text
    assert down.headers["content-type"] == "application/problem+json"
    assert down.json()["status"] == 503
    await _up(clinic)
    found = await _reconciled(clinic)
    assert (found["missing_locally"], found["missing_in_cer"], found["repaired"]) == ([], [], 0)


async def test_a_lost_cer_notification_is_repaired_by_reconciliation_once(clinic: Clinic) -> None:
    await _cer_connected(clinic)
    _, slots = await _schedule(clinic, flow.DUTY, await _work(clinic, "cardiology"))
    await _in_cer(clinic, slots)
    played = await _play(clinic, slots[1], PATIENT, "ikp", notify=False)  # the notification is lost
    await _quiet(clinic)
    assert await _slot_status(clinic, slots[1]) == "free"

    found = await _reconciled(clinic)
    assert found["repaired"] == 1
    assert found["missing_in_cer"] == []
    assert [
        (i["slot_id"], i["patient_pesel"], i["channel"], i["reference"], i["repaired"])
        for i in found["missing_locally"]
    ] == [(slots[1], PATIENT, "ikp", played["cer_booking_id"], True)]
    assert await _booked_on(clinic, slots[1]) == [(PATIENT, "cer_ikp")]

    again = await _reconciled(clinic)
    assert (again["missing_locally"], again["missing_in_cer"], again["repaired"]) == ([], [], 0)
    await _quiet(clinic)
    assert "book" not in [q["kind"] for q in await _outgoing(clinic)]  # CeR's own booking is not sent back
    assert await _booked_on(clinic, slots[1]) == [(PATIENT, "cer_ikp")]


async def test_a_local_booking_cer_lost_is_reported_and_mailed_once_however_often_reconciliation_runs(
    clinic: Clinic,
) -> None:
    cer = await _cer_connected(clinic)
    _, slots = await _schedule(clinic, flow.DUTY, await _work(clinic, "cardiology"))
    await _in_cer(clinic, slots)
    booking = await _book(clinic, slots[2], PATIENT_2)

    async def in_cer() -> bool:
        return [b["local_booking_id"] for b in await _cer_bookings(clinic)] == [booking]

    await eventually(in_cer, "the desk booking in CeR", clinic)
    for held in list(cer.bookings.values()):  # CeR loses it on its side
        cer.set_status(held, "cancelled")
    assert await _cer_bookings(clinic) == []

    first = await _reconciled(clinic)
    assert first["missing_locally"] == [] and first["repaired"] == 0
    assert [(i["slot_id"], i["patient_pesel"], i["reference"], i["repaired"]) for i in first["missing_in_cer"]] == [
        (slots[2], PATIENT_2, booking, False)
    ]
    assert first["missing_in_cer"][0]["reason"]
    mails = await _await_mail(clinic, "brak w CeR")
    assert len(mails) == 1, mails

    second = await _reconciled(clinic)
    assert [i["reference"] for i in second["missing_in_cer"]] == [booking]  # still a difference, still shown
    await _quiet(clinic)
    assert len(await _mails(clinic)) == 1  # but mailed once
    assert await _booked_on(clinic, slots[2]) == [(PATIENT_2, "desk")]  # reported, never cancelled here


async def test_a_cer_booking_of_a_slot_taken_here_is_not_repaired_and_nothing_is_double_booked(clinic: Clinic) -> None:
    await _cer_connected(clinic)
    _, slots = await _schedule(clinic, flow.DUTY, await _work(clinic, "cardiology"))
    await _in_cer(clinic, slots)
    played = await _play(clinic, slots[0], PATIENT, "ikp", notify=False)  # lost: the desk sees a free slot
    desk = await _book(clinic, slots[0], PATIENT_2)
    await eventually(lambda: _nothing_pending(clinic, "book"), "the desk booking offered to CeR", clinic)
    assert [q["status"] for q in await _outgoing(clinic) if q["kind"] == "book"] == ["rejected"]  # CeR: slot taken
    ready = (await clinic.client.get("/readyz")).json()
    assert ready["services"]["integration"]["checks"]["cer_rejected"] == 1, ready

    found = await _reconciled(clinic)
    assert found["repaired"] == 0
    [missing] = found["missing_locally"]
    assert (missing["slot_id"], missing["patient_pesel"], missing["reference"]) == (
        slots[0],
        PATIENT,
        played["cer_booking_id"],
    )
    assert missing["repaired"] is False and "taken" in missing["reason"]
    assert [(i["patient_pesel"], i["reference"]) for i in found["missing_in_cer"]] == [(PATIENT_2, desk)]
    assert await _booked_on(clinic, slots[0]) == [(PATIENT_2, "desk")]  # never two patients on one slot

    # The desk settles it: its patient takes another visit; the next reconciliation books CeR's patient.
    cancelled = await clinic.client.post(f"/api/v1/scheduling/bookings/{desk}/cancel", headers=clinic.desk)
    assert cancelled.status_code == 200, cancelled.text
    await eventually(lambda: _nothing_pending(clinic, "cancel"), "the cancellation offered to CeR", clinic)
    after = await _reconciled(clinic)
    assert [(i["reference"], i["repaired"]) for i in after["missing_locally"]] == [(played["cer_booking_id"], True)], (
        after
    )
    assert await _booked_on(clinic, slots[0]) == [(PATIENT, "cer_ikp")]


async def test_slots_with_changes_still_queued_for_cer_are_not_drift(clinic: Clinic) -> None:
    await _cer_connected(clinic)
    _, slots = await _schedule(clinic, flow.DUTY, await _work(clinic, "cardiology"))
    await _in_cer(clinic, slots)
    sent = await _book(clinic, slots[1], PATIENT)

    async def in_cer() -> bool:
        return [b["local_booking_id"] for b in await _cer_bookings(clinic)] == [sent]

    await eventually(in_cer, "the first desk booking in CeR", clinic)
    forwarder = clinic.service("integration").state.ctx.extras["cer_forwarder"]
    forwarder.retry_seconds = 60.0  # after the outage CeR is offered the queue again only in a minute
    await _down(clinic)
    queued = await _book(clinic, slots[0], PATIENT_2)
    cancelled = await clinic.client.post(f"/api/v1/scheduling/bookings/{sent}/cancel", headers=clinic.desk)
    assert cancelled.status_code == 200, cancelled.text
    await _settle(clinic)
    pending = [q["kind"] for q in await _outgoing(clinic) if q["status"] == "pending"]
    assert pending == ["book", "cancel"]
    await _up(clinic)

    found = await _reconciled(clinic)  # CeR has the cancelled visit, not the new one: both still on their way
    assert (found["missing_locally"], found["missing_in_cer"], found["repaired"]) == ([], [], 0)
    assert await _booked_on(clinic, slots[1]) == []  # the cancelled visit is not booked back
    assert [q["kind"] for q in await _outgoing(clinic) if q["status"] == "pending"] == ["book", "cancel"]

    await eventually(lambda: _nothing_pending(clinic), "the queue sent", clinic)
    assert [b["local_booking_id"] for b in await _cer_bookings(clinic)] == [queued]
    after = await _reconciled(clinic)
    assert (after["missing_locally"], after["missing_in_cer"]) == ([], [])


# ----------------------------------------------------------------------------- 7. compliance


def _risks(specialty: dict[str, Any]) -> dict[str, str]:
    return {r["date"]: r["status"] for r in specialty["payment_risks"]}


async def _compliance(clinic: Clinic, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    answer = await clinic.client.get("/api/v1/integration/cer/compliance", headers=headers)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["today"] == _day(0)
    return {s["specialty"]: s for s in body["specialties"]}


async def test_the_compliance_report_follows_the_cardiology_schedule_into_cer_and_the_unsent_changes(
    clinic: Clinic,
) -> None:
    today = dt.datetime.now(WARSAW).date()
    before = await _compliance(clinic, clinic.desk)
    assert list(before)[:3] == ["cardiology", "mammography", "hpv_cytology"]  # then the later steps
    assert len(before) == 12
    for found in before.values():  # no NFZ contract declared: nothing applies
        assert (found["schedules"], found["published"], found["first_published_on"]) == (0, False, None)
        assert (found["contracted"], found["status"]) == (False, "not_applicable")
        assert set(_risks(found).values()) == {"not_applicable"}
    practitioner = await clinic.token(sub="dr", role="practitioner", facility_id=FACILITY, npwz=flow.DOCTOR)
    assert (await clinic.client.get("/api/v1/integration/cer/compliance", headers=practitioner)).status_code == 403

    # A cardiology contract with nothing published: never "not applicable" (at risk, then breached).
    declared = await clinic.client.put(
        "/api/v1/integration/cer/contracts", json={"specialties": ["cardiology"]}, headers=clinic.admin
    )
    assert declared.status_code == 200, declared.text
    unpublished = (await _compliance(clinic, clinic.desk))["cardiology"]
    assert unpublished["contracted"] is True
    assert "not_applicable" not in _risks(unpublished).values()
    assert _risks(unpublished)["2026-05-31"] == ("breached" if today > SCHEDULES_DUE else "at_risk")

    await _cer_connected(clinic)
    _, slots = await _schedule(clinic, flow.DUTY, await _work(clinic, "cardiology"))
    await _in_cer(clinic, slots)
    await eventually(lambda: _nothing_pending(clinic), "the publication accepted", clinic)
    late = "breached" if today > SCHEDULES_DUE else "ok"  # published today: late once the deadline passed
    report = await _compliance(clinic, clinic.admin)
    cardiology = report["cardiology"]
    assert (cardiology["schedules"], cardiology["published"], cardiology["unsent_changes"]) == (1, True, 0)
    assert cardiology["first_published_on"] == today.isoformat()
    assert _risks(cardiology) == {"2026-05-31": late, "2026-06-01": late, "2026-07-01": "ok"}
    for other in ("mammography", "hpv_cytology"):
        assert set(_risks(report[other]).values()) == {"not_applicable"}

    await _down(clinic)
    await _book(clinic, slots[0], PATIENT)
    await _settle(clinic)
    cardiology = (await _compliance(clinic, clinic.desk))["cardiology"]
    assert cardiology["unsent_changes"] == 1
    unpaid = "breached" if today >= CER_BOOKINGS_ONLY_FROM else "at_risk"
    assert _risks(cardiology)["2026-07-01"] == unpaid

    await _up(clinic)
    await eventually(lambda: _nothing_pending(clinic), "the booking in CeR", clinic)
    cardiology = (await _compliance(clinic, clinic.desk))["cardiology"]
    assert (cardiology["unsent_changes"], _risks(cardiology)["2026-07-01"]) == (0, "ok")


# ----------------------------------------------------------------------------- 8. settings


async def test_the_settings_reach_cer_which_then_signs_with_the_newest_secret_and_the_secret_is_never_shown(
    clinic: Clinic,
) -> None:
    new_secret = "the-second-cer-secret-9876543210"
    await _cer_connected(clinic)
    _, slots = await _schedule(clinic, flow.DUTY, await _work(clinic, "cardiology"))
    await _in_cer(clinic, slots)
    settings = {"endpoint": f"http://gateway/webhooks/cer/{FACILITY}", "email": EMAIL, "secret": new_secret}
    await _down(clinic)
    changed = await clinic.client.put("/api/v1/integration/cer/settings", json=settings, headers=clinic.admin)
    assert changed.status_code == 200, changed.text
    await _settle(clinic)
    queue = await _outgoing(clinic)
    assert [(q["kind"], q["status"]) for q in queue] == [
        ("register_endpoint", "sent"),
        ("publish_schedule", "sent"),
        ("register_endpoint", "pending"),
    ]
    assert queue[-1]["attempts"] >= 1 and queue[-1]["last_error"]

    shown = [
        changed.text,
        (await clinic.client.get("/api/v1/integration/cer/settings", headers=clinic.admin)).text,
        (await clinic.client.get("/api/v1/integration/cer/outgoing", headers=clinic.admin)).text,
        (await clinic.client.get("/readyz")).text,
    ]
    await _up(clinic)
    await eventually(lambda: _nothing_pending(clinic), "the new settings in CeR", clinic)
    shown.append((await clinic.client.get("/api/v1/integration/cer/outgoing", headers=clinic.admin)).text)
    shown.append((await clinic.client.get(f"{CER}/facilities/{FACILITY}/changes")).text)
    assert [k for k, _ in await _changes(clinic) if k == "register_endpoint"] == ["register_endpoint"] * 2

    played = await _play(clinic, slots[0], PATIENT)  # CeR signs with the secret it was given last

    async def delivered() -> bool:
        found = (await clinic.client.get(f"{CER}/deliveries", params={"facility_id": FACILITY})).json()
        return [(d["event_id"], d["status"], d["last_status"]) for d in found] == [
            (played["event_id"], "delivered", 204)
        ]

    await eventually(delivered, "the notification delivered to the registered endpoint", clinic)
    await eventually(lambda: _slot_is(clinic, slots[0], "booked"), "the CeR booking applied here", clinic)
    for text in shown:
        assert SECRET not in text and new_secret not in text


async def _slot_is(clinic: Clinic, slot_id: str, status: str) -> bool:
    return await _slot_status(clinic, slot_id) == status


# ----------------------------------------------------------------------------- 9. bookings of published slots


async def test_the_bookings_of_published_slots_are_listed_apart_and_only_to_their_facility(clinic: Clinic) -> None:
    await _cer_connected(clinic)
    _, ordinary = await _schedule(clinic, flow.DOCTOR, clinic.ids["visit"], day=2)
    _, cardiology = await _schedule(clinic, flow.DUTY, await _work(clinic, "cardiology"))
    plain = await _book(clinic, ordinary[0], PATIENT)
    published = await _book(clinic, cardiology[0], PATIENT_2)
    gone = await _book(clinic, cardiology[1], PATIENT_3)
    assert (
        await clinic.client.post(f"/api/v1/scheduling/bookings/{gone}/cancel", headers=clinic.desk)
    ).status_code == 200

    found = await _bookings(clinic, cer_published="true", status="booked")
    assert [(b["id"], b["slot_id"]) for b in found] == [(published, cardiology[0])]
    others = await _bookings(clinic, cer_published="false", status="booked")
    assert [b["id"] for b in others] == [plain]
    assert {b["id"] for b in await _bookings(clinic, cer_published="true")} == {published, gone}

    elsewhere = await clinic.token(sub="desk-2", role="registrar", facility_id=OTHER_FACILITY)
    assert await _bookings(clinic, elsewhere, cer_published="true", status="booked") == []
    assert await _bookings(clinic, elsewhere) == []
    foreign = await clinic.client.get(f"/api/v1/scheduling/bookings/{published}", headers=elsewhere)
    assert foreign.status_code == 404


# ----------------------------------------------------------------------------- 10. readiness


async def test_readyz_shows_the_cer_and_p1_queues_and_an_outage_as_a_waiting_backlog(clinic: Clinic) -> None:
    await _cer_connected(clinic)
    _, slots = await _schedule(clinic, flow.DUTY, await _work(clinic, "cardiology"))
    await _in_cer(clinic, slots)
    await eventually(lambda: _nothing_pending(clinic), "the schedule sent", clinic)

    async def checks() -> dict[str, Any]:
        answer = await clinic.client.get("/readyz")
        found: dict[str, Any] = answer.json()["services"]["integration"]["checks"]
        return found

    calm = await checks()
    for system in ("cer", "p1"):
        assert (calm[f"{system}_backlog"], calm[f"{system}_oldest_pending_seconds"], calm[f"{system}_rejected"]) == (
            0,
            None,
            0,
        ), calm

    await _down(clinic)
    await _book(clinic, slots[0], PATIENT)
    await _book(clinic, slots[1], PATIENT_2)
    await _settle(clinic)
    waiting = await checks()
    assert (waiting["cer_backlog"], waiting["cer_rejected"], waiting["p1_backlog"]) == (2, 0, 0), waiting
    assert isinstance(waiting["cer_oldest_pending_seconds"], int | float) and waiting["cer_oldest_pending_seconds"] >= 0

    await _up(clinic)
    await eventually(lambda: _nothing_pending(clinic), "the backlog sent", clinic)
    after = await checks()
    assert (after["cer_backlog"], after["cer_oldest_pending_seconds"], after["cer_rejected"]) == (0, None, 0)


# ----------------------------------------------------------------------------- two replicas, one queue


class _FartherFromCer(httpx.AsyncBaseTransport):
    """A replica on a slower path to CeR: its requests arrive a moment later."""

    def __init__(self, app: FastAPI, delay: float) -> None:
        self.inner = httpx.ASGITransport(app=app)
        self.delay = delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(self.delay)
        return await self.inner.handle_async_request(request)


async def test_two_replicas_forwarding_one_queue_send_each_change_once_and_in_order(clinic: Clinic) -> None:
    await _cer_connected(clinic)
    _, slots = await _schedule(clinic, flow.DUTY, await _work(clinic, "cardiology"), count=1)
    await _in_cer(clinic, slots)
    await eventually(lambda: _nothing_pending(clinic, "publish_schedule"), "the schedule accepted", clinic)
    ctx = clinic.service("integration").state.ctx
    await ctx.extras["cer_forwarding"].stop()  # the two replicas below are the only senders
    booking = await _book(clinic, slots[0], PATIENT)
    cancelled = await clinic.client.post(f"/api/v1/scheduling/bookings/{booking}/cancel", headers=clinic.desk)
    assert cancelled.status_code == 200, cancelled.text
    for _ in range(100):
        if [q["kind"] for q in await _outgoing(clinic) if q["status"] == "pending"] == ["book", "cancel"]:
            break
        for name in ("scheduling", "integration"):
            await clinic.service(name).state.ctx.relay.publish_pending()
        await clinic.app.state.gateway.bus.drain()
        await asyncio.sleep(0.02)
    else:
        raise AssertionError("the booking and its cancellation were never queued")

    base = f"http://gateway{CER}"
    near = CerClient(base, transport=httpx.ASGITransport(app=clinic.app))
    far = CerClient(base, transport=_FartherFromCer(clinic.app, 0.2))
    replicas = [cer_forwarder(ctx.sessions, ctx.uow, client, 2.0, 300.0) for client in (near, far)]
    try:
        for _ in range(10):
            await asyncio.gather(*(r.forward_pending() for r in replicas))
            if await _nothing_pending(clinic):
                break
        else:
            raise AssertionError("the two replicas left changes unsent")
    finally:
        await near.aclose()
        await far.aclose()
    assert [c for c in await _changes(clinic) if c[0] in ("book", "cancel")] == [("book", booking), ("cancel", booking)]
    assert await _cer_bookings(clinic) == []  # not booked again in CeR by a late second copy

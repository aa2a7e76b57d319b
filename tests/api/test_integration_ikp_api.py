"""The IKP part of the integration API through the gateway (embedded), with the P1 sandbox as gabinet.gov.pl.

Enabling (prerequisites named, P1 down answers 503 and changes nothing, pending until P1 confirms),
disabling (off at once, P1 told through the queue, also after an outage), the poller's designation
and candidates, the queue to P1, roles; and the IKP poll end to end: polled items become requests
exactly once, grouped by the 120 s gap (a gap equal to it joins), sealed only when the patient can
no longer be adding items.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from typing import Any

import httpx

from shared.clock import Clock, FixedClock
from tests.e2e import test_prescriptions_flow as flow
from tests.e2e.test_prescriptions_flow import (
    DOCTOR,
    DUTY,
    FACILITY,
    OTHER,
    PATIENT,
    PATIENT_2,
    Clinic,
    _day,
    _ikp_ready,
)

clinic = flow.clinic  # the e2e flow's facility fixture, used here by name

IKP = "/api/v1/integration/ikp"
OUTGOING = "/api/v1/integration/p1/outgoing"
RX = "/api/v1/prescriptions"
P1 = "/sandbox/p1"
ROLES = ("patient", "registrar", "practitioner", "pharmacist", "facility_admin", "partner")


# ----------------------------------------------------------------------------- helpers


def _later() -> dt.datetime:
    """A sealing pass once the grace period after the last item received has passed."""
    return dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)


def _problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = answer.json()
    assert body["status"] == status and body["title"]
    return body


def _fields(answer: httpx.Response) -> list[str]:
    return [e["field"] for e in _problem(answer, 422).get("errors", [])]


async def _token(clinic: Clinic, role: str, facility: str = FACILITY) -> dict[str, str]:
    claims: dict[str, str] = {"sub": f"test-{role}", "role": role}
    if role == "pharmacist":
        claims["pharmacy_id"] = "apteka-1"
    else:
        claims["facility_id"] = facility
    if role == "patient":
        claims["pesel"] = PATIENT
    if role == "practitioner":
        claims["npwz"] = DOCTOR
    return await clinic.token(**claims)


async def _status(clinic: Clinic, headers: dict[str, str] | None = None) -> dict[str, Any]:
    answer = await clinic.client.get(f"{IKP}/status", headers=headers or clinic.admin)
    assert answer.status_code == 200, answer.text
    status: dict[str, Any] = answer.json()
    return status


async def _p1_status(clinic: Clinic, facility: str = FACILITY) -> str:
    answer = await clinic.client.get(f"{P1}/ikp/status/{facility}")
    assert answer.status_code == 200, answer.text
    status: str = answer.json()["status"]
    return status


async def _outgoing(clinic: Clinic, query: str = "") -> list[dict[str, Any]]:
    answer = await clinic.client.get(f"{OUTGOING}{query}", headers=clinic.admin)
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()
    return rows


async def _enabled(clinic: Clinic) -> None:
    """Enabled and confirmed by P1, no poller designated."""
    await clinic.settle()  # the integration service has heard that ordering is active
    await clinic.schedule(DOCTOR, "A", "visit", 1, "08:00", "09:00")
    assert (await clinic.post(f"{IKP}/enable", {})).json()["status"] == "pending"
    assert (await clinic.client.post(f"{P1}/ikp/{FACILITY}/confirm")).status_code == 200
    assert (await _status(clinic))["status"] == "enabled"


def _forwarder(clinic: Clinic) -> Any:
    return clinic.service("integration").state.ctx.extras["forwarder"]


async def _stop_background_passes(clinic: Clinic) -> None:
    """The test drives polling, forwarding and sealing itself, at the moments it chooses."""
    await clinic.service("integration").state.ctx.extras["polling"].stop()
    await clinic.service("integration").state.ctx.extras["forwarding"].stop()
    await clinic.service("prescriptions").state.ctx.extras["sealing"].stop()


async def _prescriptions_ikp_flag(clinic: Clinic) -> bool:
    await clinic.settle()
    flag: bool = (await clinic.client.get(f"{RX}/settings", headers=clinic.admin)).json()["ikp_enabled"]
    return flag


# ----------------------------------------------------------------------------- enabling


async def test_enabling_names_each_missing_prerequisite_and_changes_nothing(clinic: Clinic) -> None:
    # The fixture's facility: ordering active, a work type visible online - but ordering switched off now.
    off = await clinic.client.put(f"{RX}/settings", json={"mode": "off"}, headers=clinic.admin)
    assert off.status_code == 200
    await clinic.settle()
    refused = await clinic.post(f"{IKP}/enable", {})
    assert _fields(refused) == ["prescription_ordering"]
    assert "activate it in the prescriptions settings" in _problem(refused, 422)["detail"]

    # Bought 400 days ago (the prescriptions service's clock then), so expired today.
    prescriptions = clinic.service("prescriptions").state.ctx
    prescriptions.clock = FixedClock(dt.datetime.now(dt.UTC) - dt.timedelta(days=400))
    bought = await clinic.client.put(f"{RX}/settings", json={"mode": "full"}, headers=clinic.admin)
    assert bought.status_code == 200, bought.text
    prescriptions.clock = Clock()
    expired = await clinic.client.get(f"{RX}/settings", headers=clinic.admin)
    assert expired.json()["active"] is False
    await clinic.settle()
    assert _fields(await clinic.post(f"{IKP}/enable", {})) == ["prescription_ordering"]
    assert (await _status(clinic))["status"] == "off"
    assert await _p1_status(clinic) == "off"  # P1 was never asked

    # A facility with nothing at all: both prerequisites are named.
    bare = await _token(clinic, "facility_admin", "clinic-bare")
    both = await clinic.post(f"{IKP}/enable", {}, bare)
    assert sorted(_fields(both)) == ["online_registration", "prescription_ordering"]
    detail = _problem(both, 422)["detail"]
    assert "prescription ordering is not active" in detail and "no work type is visible online" in detail

    # Ordering active, but no work type visible online: only online registration is missing.
    offline = await _token(clinic, "facility_admin", "clinic-offline")
    activated = await clinic.client.put(f"{RX}/settings", json={"mode": "full"}, headers=offline)
    assert activated.status_code == 200
    hidden = await clinic.post("/api/v1/scheduling/work-types", {"name": "Recepty", "visible_online": False}, offline)
    assert hidden.status_code == 201
    await clinic.settle()
    only_online = await clinic.post(f"{IKP}/enable", {}, offline)
    assert _fields(only_online) == ["online_registration"]
    assert (await _status(clinic, offline))["status"] == "off"

    visible = await clinic.post("/api/v1/scheduling/work-types", {"name": "Wizyta", "visible_online": True}, offline)
    assert visible.status_code == 201
    now_ok = await clinic.post(f"{IKP}/enable", {}, offline)
    assert (now_ok.status_code, now_ok.json()["status"]) == (200, "pending")


async def test_enabling_while_p1_is_down_answers_503_and_stays_off(clinic: Clinic) -> None:
    await clinic.settle()
    assert (await clinic.client.post(f"{P1}/down")).status_code == 200

    down = await clinic.post(f"{IKP}/enable", {})
    body = _problem(down, 503)
    assert "P1" in body["detail"] and "try again later" in body["detail"]
    status = await _status(clinic)
    assert (status["status"], status["requested_at"], status["polling"]) == ("off", None, False)
    assert await _prescriptions_ikp_flag(clinic) is False

    assert (await clinic.client.post(f"{P1}/up")).status_code == 200
    assert await _p1_status(clinic) == "off"
    retried = await clinic.post(f"{IKP}/enable", {})
    assert (retried.status_code, retried.json()["status"]) == (200, "pending")
    assert await _p1_status(clinic) == "pending"


async def test_the_status_is_pending_until_p1_confirms_then_enabled(clinic: Clinic) -> None:
    await clinic.settle()
    enabled = await clinic.post(f"{IKP}/enable", {})
    assert enabled.status_code == 200
    pending = enabled.json()
    assert (pending["status"], pending["enabled_at"], pending["polling"]) == ("pending", None, False)
    assert pending["requested_at"] is not None
    assert await _p1_status(clinic) == "pending"
    assert (await _status(clinic, clinic.desk))["status"] == "pending"

    # Asking again while pending does not send P1 a second request.
    p1_before = (await clinic.client.get(f"{P1}/ikp/status/{FACILITY}")).json()
    again = await clinic.post(f"{IKP}/enable", {})
    assert (again.json()["status"], again.json()["requested_at"]) == ("pending", pending["requested_at"])
    assert (await clinic.client.get(f"{P1}/ikp/status/{FACILITY}")).json() == p1_before

    # P1 unreachable while pending: the status stays pending, no error for the reader.
    await clinic.client.post(f"{P1}/down")
    assert (await _status(clinic))["status"] == "pending"
    await clinic.client.post(f"{P1}/up")

    confirmed = await clinic.client.post(f"{P1}/ikp/{FACILITY}/confirm")
    assert confirmed.json()["status"] == "enabled"
    status = await _status(clinic)
    assert status["status"] == "enabled" and status["enabled_at"] is not None
    assert status["polling"] is False  # no poller designated yet
    assert await _prescriptions_ikp_flag(clinic) is True
    assert (await clinic.post(f"{IKP}/enable", {})).json()["status"] == "enabled"

    elsewhere = await _token(clinic, "registrar", "clinic-elsewhere")
    assert (await _status(clinic, elsewhere))["status"] == "off"


# ----------------------------------------------------------------------------- disabling


async def test_disabling_is_off_at_once_and_p1_is_told(clinic: Clinic) -> None:
    await _enabled(clinic)
    assert await _prescriptions_ikp_flag(clinic) is True

    disabled = await clinic.post(f"{IKP}/disable", {})
    assert disabled.status_code == 200
    assert (disabled.json()["status"], disabled.json()["enabled_at"], disabled.json()["polling"]) == (
        "off",
        None,
        False,
    )
    assert (await _status(clinic))["status"] == "off"
    assert await _prescriptions_ikp_flag(clinic) is False

    await _forwarder(clinic).forward_pending()
    assert await _p1_status(clinic) == "off"
    sent = await _outgoing(clinic)
    assert [(o["kind"], o["status"]) for o in sent] == [("disable_ikp", "sent")]

    again = await clinic.post(f"{IKP}/disable", {})
    assert again.json()["status"] == "off"
    assert len(await _outgoing(clinic)) == 1  # nothing more to tell P1

    never_enabled = await _token(clinic, "facility_admin", "clinic-never")
    assert (await clinic.post(f"{IKP}/disable", {}, never_enabled)).json()["status"] == "off"
    assert (await clinic.client.get(OUTGOING, headers=never_enabled)).json() == []


async def test_disabling_while_p1_is_down_is_off_locally_and_delivered_after_the_outage(clinic: Clinic) -> None:
    await _enabled(clinic)
    await clinic.client.post(f"{P1}/down")

    disabled = await clinic.post(f"{IKP}/disable", {})
    assert (disabled.status_code, disabled.json()["status"]) == (200, "off")
    assert await _forwarder(clinic).forward_pending() == 0
    waiting = await _outgoing(clinic)
    assert [(o["kind"], o["status"]) for o in waiting] == [("disable_ikp", "pending")]
    assert waiting[0]["attempts"] >= 1 and waiting[0]["last_error"]
    assert [o["kind"] for o in await _outgoing(clinic, "?status=pending")] == ["disable_ikp"]
    assert await _outgoing(clinic, "?status=sent") == []
    assert (await _status(clinic))["status"] == "off"

    await clinic.client.post(f"{P1}/up")
    assert await _p1_status(clinic) == "enabled"  # P1 has not heard yet
    await _forwarder(clinic).forward_pending(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert await _p1_status(clinic) == "off"
    assert [(o["kind"], o["status"]) for o in await _outgoing(clinic)] == [("disable_ikp", "sent")]
    assert await _outgoing(clinic, "?status=pending") == []


async def test_enabling_again_after_a_queued_disable_leaves_p1_and_the_facility_agreeing(clinic: Clinic) -> None:
    await _enabled(clinic)
    await _stop_background_passes(clinic)
    await clinic.client.post(f"{P1}/down")
    assert (await clinic.post(f"{IKP}/disable", {})).json()["status"] == "off"
    assert await _forwarder(clinic).forward_pending() == 0  # P1 down: the disable waits
    await clinic.client.post(f"{P1}/up")

    again = await clinic.post(f"{IKP}/enable", {})
    assert again.status_code == 200
    await _forwarder(clinic).forward_pending(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))

    local = (await _status(clinic))["status"]
    p1 = await _p1_status(clinic)
    assert local != "off"
    assert (local == "enabled") == (p1 == "enabled"), (local, p1)


async def _issue_and_register(clinic: Clinic, doctor: dict[str, str]) -> str:
    """A request issued by DOCTOR and its package registered in P1: the first prescription's key."""
    request = await clinic.request(DOCTOR)
    assert request.status_code == 201, request.text
    issued = await clinic.post(
        f"{RX}/requests/{request.json()['id']}/issue",
        {
            "issuer_npwz": DOCTOR,
            "issuer_profession": "doctor",
            "prescriptions": [
                {"drug": "Metformax 500", "packages": 1, "units_per_package": "30", "daily_dose_units": "1"}
            ],
        },
        doctor,
    )
    assert issued.status_code == 201, issued.text
    await clinic.settle()
    await _forwarder(clinic).forward_pending(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))
    assert issued.json()["package_key"] in (await clinic.client.get(f"{P1}/received")).json()
    key: str = issued.json()["prescriptions"][0]["key"]
    return key


async def test_a_change_p1_refuses_is_marked_rejected_and_does_not_block_the_queue(clinic: Clinic) -> None:
    await clinic.service("integration").state.ctx.extras["forwarding"].stop()
    await clinic.schedule(DOCTOR, "A", "rx", 1, "08:00", "09:00")
    doctor = await clinic.token(sub="dr", role="practitioner", facility_id=FACILITY, npwz=DOCTOR)
    key = await _issue_and_register(clinic, doctor)
    # A pharmacy realises it in P1 before our service hears of it; the issuer then cancels here.
    realised = await clinic.client.post(
        f"{P1}/prescriptions/{key}/realisations",
        json={
            "realisation_id": "7d8f5a52-3f0e-4e61-9a51-0c3f1e2d4b6a",
            "pharmacy_id": "apteka-1",
            "packages": 1,
            "realised_on": _day(0),
        },
    )
    assert realised.status_code == 201, realised.text
    assert (await clinic.post(f"{RX}/prescriptions/{key}/cancel", {}, doctor)).status_code == 200
    await clinic.settle()
    # P1 refuses the cancellation (409: realised). The background pass swallows errors and runs again.
    for _ in range(2):
        with contextlib.suppress(Exception):
            await _forwarder(clinic).forward_pending(dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))

    rejected = await _outgoing(clinic, "?status=rejected")
    assert [(o["kind"], o["reference"]) for o in rejected] == [("cancel_prescription", key)]
    assert rejected[0]["last_error"]
    # A later change still reaches P1.
    later = await _issue_and_register(clinic, doctor)
    assert later != key


# ----------------------------------------------------------------------------- the poller


async def test_the_poller_is_one_of_the_candidates_with_npwz_and_a_coded_location(clinic: Clinic) -> None:
    none_yet = await clinic.client.get(f"{IKP}/poller/candidates", headers=clinic.admin)
    assert none_yet.status_code == 200
    assert none_yet.json()["candidates"] == []
    assert "schedule at a location with a department code" in none_yet.json()["missing"]

    await clinic.schedule(DOCTOR, "A", "visit", 1, "08:00", "09:00")  # A has department code 0010
    await clinic.schedule(OTHER, "B", "visit", 1, "08:00", "09:00")  # B has none
    candidates = (await clinic.client.get(f"{IKP}/poller/candidates", headers=clinic.admin)).json()
    assert candidates["missing"] is None
    assert [(c["npwz"], c["location_id"], c["department_code"]) for c in candidates["candidates"]] == [
        (DOCTOR, clinic.ids["A"], "0010")
    ]
    assert candidates["candidates"][0]["practitioner_id"] == clinic.ids[DOCTOR]

    bad = await clinic.client.put(f"{IKP}/poller", json={"practitioner_npwz": "1047515"}, headers=clinic.admin)
    assert _fields(bad) == ["body.practitioner_npwz"]
    for body in ({}, {"practitioner_npwz": ""}, {"practitioner_npwz": DOCTOR, "location_id": clinic.ids["A"]}):
        answer = await clinic.client.put(f"{IKP}/poller", json=body, headers=clinic.admin)
        assert _problem(answer, 422)["errors"], body
    unknown = await clinic.client.put(f"{IKP}/poller", json={"practitioner_npwz": "1855252"}, headers=clinic.admin)
    assert _fields(unknown) == ["body.practitioner_npwz"]
    assert "no practitioner with NPWZ 1855252" in _problem(unknown, 422)["detail"]
    uncoded = await clinic.client.put(f"{IKP}/poller", json={"practitioner_npwz": OTHER}, headers=clinic.admin)
    assert _fields(uncoded) == ["body.practitioner_npwz"]
    assert (await _status(clinic))["poller_npwz"] is None  # nothing was designated by the refusals

    chosen = await clinic.client.put(f"{IKP}/poller", json={"practitioner_npwz": DOCTOR}, headers=clinic.admin)
    assert chosen.status_code == 200
    assert (chosen.json()["poller_npwz"], chosen.json()["location_id"], chosen.json()["department_code"]) == (
        DOCTOR,
        clinic.ids["A"],
        "0010",
    )
    assert (chosen.json()["status"], chosen.json()["polling"]) == ("off", False)  # designated, not yet polling

    await clinic.settle()
    await clinic.post(f"{IKP}/enable", {})
    await clinic.client.post(f"{P1}/ikp/{FACILITY}/confirm")
    status = await _status(clinic)
    assert (status["status"], status["poller_npwz"], status["polling"]) == ("enabled", DOCTOR, True)

    elsewhere = await _token(clinic, "facility_admin", "clinic-elsewhere")
    theirs = (await clinic.client.get(f"{IKP}/poller/candidates", headers=elsewhere)).json()
    assert theirs["candidates"] == [] and "NPWZ" in theirs["missing"]


async def test_the_p1_queue_listing_validates_its_filters(clinic: Clinic) -> None:
    assert _fields(await clinic.client.get(f"{OUTGOING}?status=bogus", headers=clinic.admin)) == ["query.status"]
    assert _fields(await clinic.client.get(f"{OUTGOING}?status=SENT", headers=clinic.admin)) == ["query.status"]
    assert _fields(await clinic.client.get(f"{OUTGOING}?limit=0", headers=clinic.admin)) == ["query.limit"]
    assert _fields(await clinic.client.get(f"{OUTGOING}?limit=many", headers=clinic.admin)) == ["query.limit"]
    for status in ("pending", "sent", "rejected"):
        assert await _outgoing(clinic, f"?status={status}") == []


# ----------------------------------------------------------------------------- roles and tokens


async def test_every_ikp_endpoint_refuses_a_missing_token_and_each_role_it_does_not_admit(clinic: Clinic) -> None:
    admin_only = {"facility_admin"}
    clinic_roles = {"facility_admin", "registrar", "practitioner", "partner"}
    matrix: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
        ("POST", f"{IKP}/enable", None, admin_only),
        ("POST", f"{IKP}/disable", None, admin_only),
        ("GET", f"{IKP}/status", None, clinic_roles),
        ("GET", f"{IKP}/poller/candidates", None, admin_only),
        ("PUT", f"{IKP}/poller", {"practitioner_npwz": DOCTOR}, admin_only),
        ("GET", OUTGOING, None, admin_only),
    ]
    tokens = {role: await _token(clinic, role) for role in ROLES}
    for method, path, body, allowed in matrix:
        anonymous = await clinic.client.request(method, path, json=body)
        assert "token" in _problem(anonymous, 401)["detail"], (method, path)
        expired_or_forged = {"Authorization": "Bearer not.a.token"}
        _problem(await clinic.client.request(method, path, json=body, headers=expired_or_forged), 401)
        for role in sorted(set(ROLES) - allowed):
            answer = await clinic.client.request(method, path, json=body, headers=tokens[role])
            assert f"role {role} may not do this" in _problem(answer, 403)["detail"], (method, path, role)
    for role in sorted(clinic_roles):
        assert (await _status(clinic, tokens[role]))["status"] == "off", role
    # The refused calls changed nothing.
    assert (await _status(clinic))["poller_npwz"] is None
    assert await _p1_status(clinic) == "off"


# ----------------------------------------------------------------------------- the IKP poll, grouped and sealed


async def _play(clinic: Clinic, pesel: str, *items: tuple[str, dt.datetime | None, str | None]) -> None:
    """A patient orders on IKP: (drug, submitted_at or None for "now", comment)."""
    body = {
        "facility_id": FACILITY,
        "patient_pesel": pesel,
        "doctor_npwz": DOCTOR,
        "items": [
            {"drug": drug, "packages": 1, "comment": comment}
            | ({"submitted_at": at.isoformat()} if at is not None else {})
            for drug, at, comment in items
        ],
    }
    played = await clinic.client.post(f"{P1}/ikp/requests", json=body)
    assert played.status_code == 201, played.text


async def _requests(clinic: Clinic, pesel: str | None = None) -> list[dict[str, Any]]:
    query = f"?patient_pesel={pesel}" if pesel else ""
    answer = await clinic.client.get(f"{RX}/requests{query}", headers=clinic.desk)
    assert answer.status_code == 200, answer.text
    rows: list[dict[str, Any]] = answer.json()
    return sorted(rows, key=lambda r: r["items"][0]["drug"])


async def _ikp_with_account(clinic: Clinic) -> None:
    """IKP enabled with DOCTOR polling, prescription slots, and the drugs on both patients' accounts."""
    await _ikp_ready(clinic)
    await _stop_background_passes(clinic)
    await clinic.schedule(DOCTOR, "A", "rx", 2, "08:00", "10:00")
    for pesel in (PATIENT, PATIENT_2):
        for drug in ("Metformax 500", "Bisocard 5", "Polpril 5"):
            path = f"{RX}/patients/{pesel}/account-drugs"
            assert (await clinic.post(path, {"drug": drug}, clinic.desk)).status_code == 201


async def test_polling_three_times_turns_each_ikp_item_into_a_request_exactly_once(clinic: Clinic) -> None:
    await _ikp_with_account(clinic)
    poller = clinic.service("integration").state.ctx.extras["poller"]
    sealer = clinic.service("prescriptions").state.ctx.extras["sealer"]
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    await _play(
        clinic,
        PATIENT,
        ("Metformax 500", at, "jak zwykle"),
        ("Bisocard 5", at + dt.timedelta(seconds=40), "jak zwykle"),
    )
    await _play(clinic, PATIENT, ("Polpril 5", at + dt.timedelta(minutes=10), None))

    received = [await poller.poll_all() for _ in range(3)]
    await clinic.settle()
    assert received == [3, 0, 0]
    assert await sealer.seal_due(_later()) == 2
    for _ in range(2):  # polled and sealed again: nothing new
        await poller.poll_all()
        await clinic.settle()
        assert await sealer.seal_due(_later()) == 0

    requests = await _requests(clinic)
    assert [[i["drug"] for i in r["items"]] for r in requests] == [["Metformax 500", "Bisocard 5"], ["Polpril 5"]]
    one_go, later = requests
    assert (one_go["source"], one_go["comment"], [i["comment"] for i in one_go["items"]]) == (
        "ikp",
        "jak zwykle",
        [None, None],
    )
    assert (one_go["status"], one_go["routed_to"], one_go["assigned_npwz"]) == ("booked", "own", DOCTOR)
    assert later["status"] == "booked" and later["slot_id"] != one_go["slot_id"]
    assert (await _status(clinic))["last_polled_at"] is not None

    # The same order played again on IKP is a new order (new P1 items): one more request, once.
    await _play(clinic, PATIENT, ("Polpril 5", at + dt.timedelta(minutes=20), None))
    assert [await poller.poll_all() for _ in range(3)] == [1, 0, 0]
    await clinic.settle()
    await sealer.seal_due(_later())
    await sealer.seal_due(_later())
    assert len(await _requests(clinic)) == 3


async def test_items_120_seconds_apart_join_one_request_121_seconds_apart_make_two(clinic: Clinic) -> None:
    await _ikp_with_account(clinic)
    poller = clinic.service("integration").state.ctx.extras["poller"]
    sealer = clinic.service("prescriptions").state.ctx.extras["sealer"]
    at = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
    await _play(clinic, PATIENT, ("Metformax 500", at, "rano"), ("Bisocard 5", at + dt.timedelta(seconds=120), None))
    await _play(
        clinic, PATIENT_2, ("Metformax 500", at, "rano"), ("Bisocard 5", at + dt.timedelta(seconds=121), "rano")
    )
    # Chained: each pause counts from the previous item, so 3 items 120 s apart are still one go.
    chained = [at + dt.timedelta(hours=-2, seconds=s) for s in (0, 120, 240)]
    await _play(
        clinic,
        PATIENT,
        *((d, t, None) for d, t in zip(("Polpril 5", "Bisocard 5", "Metformax 500"), chained, strict=True)),
    )

    await poller.poll_all()
    await clinic.settle()
    await sealer.seal_due(_later())

    first = await _requests(clinic, PATIENT)
    assert sorted([i["drug"] for i in r["items"]] for r in first) == [
        ["Metformax 500", "Bisocard 5"],
        ["Polpril 5", "Bisocard 5", "Metformax 500"],
    ]
    joined = next(r for r in first if len(r["items"]) == 2)
    assert (joined["comment"], [i["comment"] for i in joined["items"]]) == (None, ["rano", None])
    second = await _requests(clinic, PATIENT_2)
    assert [[i["drug"] for i in r["items"]] for r in second] == [["Bisocard 5"], ["Metformax 500"]]
    assert all(r["comment"] == "rano" for r in second)  # one item each: its comment is the request's


async def test_an_item_submitted_just_now_waits_for_the_gap_and_grace_before_it_is_sealed(clinic: Clinic) -> None:
    await _ikp_with_account(clinic)
    poller = clinic.service("integration").state.ctx.extras["poller"]
    sealer = clinic.service("prescriptions").state.ctx.extras["sealer"]
    await _play(clinic, PATIENT, ("Metformax 500", None, None))  # submitted now (P1's clock)
    recent = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=100)  # within 120 s gap + 30 s grace
    await _play(clinic, PATIENT_2, ("Bisocard 5", recent, None))
    old = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    await _play(clinic, PATIENT_2, ("Polpril 5", old, None))  # complete long ago: sealed at once

    assert await poller.poll_all() == 3
    await clinic.settle()
    # Just received: the rest of the same poll may still be on its way, so nothing is sealed yet.
    assert await sealer.seal_due(dt.datetime.now(dt.UTC)) == 0
    assert await sealer.seal_due(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=40)) == 1
    assert [[i["drug"] for i in r["items"]] for r in await _requests(clinic)] == [["Polpril 5"]]

    assert await sealer.seal_due(dt.datetime.now(dt.UTC) + dt.timedelta(minutes=3)) == 2
    sealed = await _requests(clinic)
    assert [[i["drug"] for i in r["items"]] for r in sealed] == [["Bisocard 5"], ["Metformax 500"], ["Polpril 5"]]
    assert {r["patient_pesel"] for r in sealed if r["items"][0]["drug"] == "Metformax 500"} == {PATIENT}
    assert all(r["source"] == "ikp" for r in sealed)


async def test_a_disabled_integration_fetches_no_more_ikp_items(clinic: Clinic) -> None:
    await _ikp_with_account(clinic)
    poller = clinic.service("integration").state.ctx.extras["poller"]
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    await _play(clinic, PATIENT, ("Metformax 500", at, None))
    assert (await clinic.post(f"{IKP}/disable", {})).json()["polling"] is False
    assert await poller.poll_all() == 0  # off here at once: nothing is fetched any more
    await clinic.settle()
    await clinic.service("prescriptions").state.ctx.extras["sealer"].seal_due(_later())
    assert await _requests(clinic) == []


async def test_the_duty_doctor_search_starts_at_the_location_the_ikp_order_was_addressed_to(clinic: Clinic) -> None:
    # C (department 0020) has OTHER as its duty doctor; the poller, DOCTOR, polls from A (0010),
    # whose duty doctor is DUTY. DOCTOR has no prescription slot: every order goes to a duty doctor.
    await _ikp_ready(clinic)
    await _stop_background_passes(clinic)
    north = await clinic.created("/api/v1/scheduling/locations", {"name": "C", "department_code": "0020"})
    duty_c = await clinic.client.put(
        f"/api/v1/scheduling/locations/{north['id']}/duty-practitioner",
        json={"practitioner_id": clinic.ids[OTHER]},
        headers=clinic.admin,
    )
    assert duty_c.status_code == 200, duty_c.text
    clinic.ids["C"] = north["id"]
    await clinic.schedule(DUTY, "A", "rx", 2, "07:00", "07:15")  # the earliest slot of all, but A's duty doctor
    await clinic.schedule(OTHER, "A", "rx", 2, "08:00", "08:15")  # C's duty doctor at another location
    await clinic.schedule(OTHER, "C", "rx", 3, "08:00", "08:15")  # C's duty doctor at C: later, yet first
    poller = clinic.service("integration").state.ctx.extras["poller"]
    sealer = clinic.service("prescriptions").state.ctx.extras["sealer"]
    at = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)

    async def ordered(pesel: str, department_code: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "facility_id": FACILITY,
            "patient_pesel": pesel,
            "doctor_npwz": DOCTOR,
            "items": [{"drug": "Metformax 500", "packages": 1, "submitted_at": at.isoformat()}],
        }
        if department_code is not None:
            body["department_code"] = department_code
        assert (await clinic.client.post(f"{P1}/ikp/requests", json=body)).status_code == 201
        assert await poller.poll_all() == 1
        await clinic.settle()
        assert await sealer.seal_due(_later()) == 1
        (request,) = await _requests(clinic, pesel)
        return request

    async def slot_location(request: dict[str, Any]) -> str:
        slots = (await clinic.client.get("/api/v1/scheduling/slots", headers=clinic.desk)).json()
        location: str = next(s["location_id"] for s in slots if s["id"] == request["slot_id"])
        return location

    to_c = await ordered(PATIENT, "0020")
    assert (to_c["location_id"], to_c["routed_to"], to_c["assigned_npwz"]) == (north["id"], "duty", OTHER)
    assert await slot_location(to_c) == north["id"] and to_c["slot_start"].startswith(_day(3))

    # C's duty doctor has no slot left at C: then that duty doctor elsewhere, never A's duty doctor.
    c_elsewhere = await ordered(PATIENT_2, "0020")
    assert (c_elsewhere["location_id"], c_elsewhere["assigned_npwz"]) == (north["id"], OTHER)
    assert await slot_location(c_elsewhere) == clinic.ids["A"]

    # Not addressed to any department: the poller's location A, so A's duty doctor.
    unaddressed = await ordered("92010100010", None)
    assert (unaddressed["location_id"], unaddressed["assigned_npwz"]) == (clinic.ids["A"], DUTY)

"""The dated CeR table through the gateway (issue 15): what CeR covers from when, the operator's
corrections and their history, schedules judged by the law on their own day, the NFZ contracts
behind the compliance report, and the screening ages' warning on a desk booking."""

from __future__ import annotations

import datetime as dt
from typing import Any

from services.integration.cer_scope import CerSpecialty
from services.integration.events import CerCoverageChanged
from services.scheduling import cer as scheduling_cer
from shared.clock import FixedClock
from shared.events import Envelope
from tests.api.test_integration_cer_sync import _outgoing, _work
from tests.e2e import test_cer_flow as cer_flow
from tests.e2e import test_prescriptions_flow as flow
from tests.e2e.test_cer_flow import _cer_connected, _settle, eventually
from tests.e2e.test_prescriptions_flow import WARSAW, Clinic

clinic = cer_flow.clinic  # the e2e flow's facility fixture, used here by name

INTEG = "/api/v1/integration"
TABLE = f"{INTEG}/cer/specialties"
SECOND_STEP = [
    "vascular_diseases",
    "infectious_diseases",
    "endocrinology",
    "hepatology",
    "immunology",
    "nephrology",
    "neonatology",
    "pulmonology_tuberculosis",
]
MAN_1944 = "44051401359"
WOMAN_1976 = "76051512344"
WOMAN_2002 = "02270803624"


def _at(day: dt.date) -> FixedClock:
    return FixedClock(dt.datetime.combine(day, dt.time(9, 0), tzinfo=WARSAW))


def _today_is(clinic: Clinic, day: dt.date) -> None:
    for name in ("scheduling", "integration"):
        clinic.service(name).state.ctx.clock = _at(day)


async def _operator(clinic: Clinic, sub: str = "ops-anna") -> dict[str, str]:
    return await clinic.token(sub=sub, role="operator")


async def _table(clinic: Clinic, headers: dict[str, str]) -> dict[str, dict[str, Any]]:
    answer = await clinic.client.get(TABLE, headers=headers)
    assert answer.status_code == 200, answer.text
    return {e["specialty"]: e for e in answer.json()}


async def _schedule_on(clinic: Clinic, who: str, work_id: str, day: dt.date) -> dict[str, Any]:
    body = {
        "practitioner_id": clinic.ids[who],
        "location_id": clinic.ids["A"],
        "work_type_id": work_id,
        "date": day.isoformat(),
        "start_time": "08:00",
        "end_time": "08:30",
        "visit_minutes": 15,
    }
    return await clinic.created("/api/v1/scheduling/schedules", body)


def _errors(answer: Any) -> set[str]:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    return {e["field"] for e in answer.json()["errors"]}


# ----------------------------------------------------------------------------- the table


async def test_the_seeded_table_is_read_by_staff_and_marks_the_august_step_as_a_draft(clinic: Clinic) -> None:
    table = await _table(clinic, clinic.desk)
    assert list(table) == list(CerSpecialty)
    for name in ("cardiology", "mammography", "hpv_cytology"):
        assert (table[name]["covered_from"], table[name]["draft"], table[name]["origin"]) == (
            "2026-01-01",
            False,
            "seed",
        )
    for name in SECOND_STEP:
        assert (table[name]["covered_from"], table[name]["draft"]) == ("2026-08-01", True)
        assert "projekt rozporządzenia" in table[name]["source"]
    assert table["other_outpatient_specialist"]["covered_from"] == "2029-12-31"
    assert await _table(clinic, await _operator(clinic)) == table
    patient = await clinic.token(sub="p", role="patient", pesel=WOMAN_1976)
    assert (await clinic.client.get(TABLE, headers=patient)).status_code == 403


async def test_only_an_operator_corrects_the_table_and_a_bad_entry_is_refused_naming_its_field(
    clinic: Clinic,
) -> None:
    entry = {"specialty": "endocrinology", "covered_from": "2026-09-01", "source": "rozporządzenie MZ", "draft": False}
    for headers in (clinic.admin, clinic.desk):
        assert (await clinic.client.put(TABLE, json=[entry], headers=headers)).status_code == 403
    operator = await _operator(clinic)
    bad = [
        ({**entry, "specialty": "dermatology"}, "body.0.specialty"),
        ({**entry, "specialty": "Endocrinology"}, "body.0.specialty"),
        ({**entry, "covered_from": "2026-02-30"}, "body.0.covered_from"),
        ({**entry, "covered_from": "0226-08-01"}, "body.0.covered_from"),
        ({**entry, "covered_from": "soon"}, "body.0.covered_from"),
        ({**entry, "source": ""}, "body.0.source"),
    ]
    for body, field in bad:
        assert _errors(await clinic.client.put(TABLE, json=[body], headers=operator)) == {field}, body
    twice = await clinic.client.put(TABLE, json=[entry, {**entry, "draft": True}], headers=operator)
    assert _errors(twice) == {"body.1.specialty"}
    assert _errors(await clinic.client.put(TABLE, json=[], headers=operator)) == {"body"}
    # Nothing of it changed the table or its history.
    assert (await _table(clinic, operator))["endocrinology"]["origin"] == "seed"
    assert (await clinic.client.get(f"{TABLE}/history", headers=operator)).json() == []


async def test_each_correction_is_kept_with_who_when_and_the_old_and_new_values(clinic: Clinic) -> None:
    _today_is(clinic, dt.date(2026, 7, 10))
    anna, piotr = await _operator(clinic, "ops-anna"), await _operator(clinic, "ops-piotr")
    first = {"specialty": "endocrinology", "covered_from": "2026-09-01", "source": "rozporządzenie MZ", "draft": False}
    answer = await clinic.client.put(TABLE, json=[first], headers=anna)
    assert answer.status_code == 200, answer.text
    endo = {e["specialty"]: e for e in answer.json()}["endocrinology"]
    assert (endo["covered_from"], endo["draft"], endo["origin"], endo["revision"], endo["changed_by"]) == (
        "2026-09-01",
        False,
        "operator",
        1,
        "ops-anna",
    )
    # The same values again change nothing; a second operator's correction is a second revision.
    assert (await clinic.client.put(TABLE, json=[first], headers=piotr)).status_code == 200
    second = {**first, "covered_from": "2026-10-01"}
    added = {"specialty": "nephrology", "covered_from": "2026-08-01", "source": "Dz.U. 2026 poz. 1", "draft": False}
    assert (await clinic.client.put(TABLE, json=[second, added], headers=piotr)).status_code == 200

    history = (await clinic.client.get(f"{TABLE}/history", headers=anna)).json()
    assert [(h["specialty"], h["revision"], h["changed_by"], h["changed_role"]) for h in history] == [
        ("nephrology", 1, "ops-piotr", "operator"),
        ("endocrinology", 2, "ops-piotr", "operator"),
        ("endocrinology", 1, "ops-anna", "operator"),
    ]
    oldest = history[-1]
    assert oldest["old_origin"] == "seed"
    assert oldest["old"] == {"covered_from": "2026-08-01", "source": oldest["old"]["source"], "draft": True}
    assert oldest["new"] == {"covered_from": "2026-09-01", "source": "rozporządzenie MZ", "draft": False}
    assert oldest["changed_at"].startswith("2026-07-10T07:00:00")
    assert history[1]["old_origin"] == "operator" and history[1]["old"]["covered_from"] == "2026-09-01"
    assert history[0]["old"]["draft"] is True and history[0]["new"]["draft"] is False  # from a draft to law
    assert (await clinic.client.get(f"{TABLE}/history", headers=clinic.admin)).status_code == 403


# ----------------------------------------------------------------------------- the schedule's own day


async def test_an_endocrinology_schedule_is_cers_from_august_1_and_follows_an_operators_correction(
    clinic: Clinic,
) -> None:
    _today_is(clinic, dt.date(2026, 7, 1))
    await _cer_connected(clinic)
    endocrinology = await _work(clinic, "endocrinology", "Poradnia endokrynologiczna")
    july = await _schedule_on(clinic, flow.DOCTOR, endocrinology, dt.date(2026, 7, 31))
    august = await _schedule_on(clinic, flow.DOCTOR, endocrinology, dt.date(2026, 8, 1))
    assert (july["cer_covered"], july["cer_published"], july["cer_specialty"]) == (False, False, "endocrinology")
    assert (august["cer_covered"], august["cer_published"], august["cer_specialty"]) == (True, True, "endocrinology")

    async def published() -> bool:
        return any(q["kind"] == "publish_schedule" for q in await _outgoing(clinic))

    await eventually(published, "the August schedule queued for CeR", clinic)
    sent = [q["reference"] for q in await _outgoing(clinic) if q["kind"] == "publish_schedule"]
    assert sent == [august["id"]]  # the July one stays home

    # The final regulation moves the step to September: schedules made from now on follow it.
    correction = {"specialty": "endocrinology", "covered_from": "2026-09-01", "source": "Dz.U.", "draft": False}
    operator = await _operator(clinic)
    assert (await clinic.client.put(TABLE, json=[correction], headers=operator)).status_code == 200
    await _settle(clinic)
    after_august = await _schedule_on(clinic, flow.DOCTOR, endocrinology, dt.date(2026, 8, 31))
    september = await _schedule_on(clinic, flow.DOCTOR, endocrinology, dt.date(2026, 9, 1))
    assert (after_august["cer_covered"], after_august["cer_published"]) == (False, False)
    assert (september["cer_covered"], september["cer_published"]) == (True, True)
    # Asking still publishes a schedule the law does not (yet) cover.
    asked = await clinic.created(
        "/api/v1/scheduling/schedules",
        {
            "practitioner_id": clinic.ids[flow.DUTY],
            "location_id": clinic.ids["A"],
            "work_type_id": endocrinology,
            "date": "2026-08-03",
            "start_time": "08:00",
            "end_time": "08:30",
            "visit_minutes": 15,
            "cer_published": True,
        },
    )
    assert (asked["cer_covered"], asked["cer_published"]) == (False, True)


def _correction(revision: int, covered_from: str) -> Envelope:
    change = CerCoverageChanged(
        specialty="nephrology",
        covered_from=dt.date.fromisoformat(covered_from),
        source=f"korekta {revision}",
        draft=False,
        revision=revision,
    )
    return Envelope(type=change.event_type, payload=change.model_dump(mode="json"))


async def test_scheduling_keeps_the_newest_correction_whatever_order_or_how_often_they_arrive(clinic: Clinic) -> None:
    _today_is(clinic, dt.date(2026, 7, 1))
    ctx = clinic.service("scheduling").state.ctx
    nephrology = await _work(clinic, "nephrology", "Poradnia nefrologiczna")
    newest, older = _correction(2, "2026-10-01"), _correction(1, "2026-09-01")
    for envelope in (newest, older, newest):  # the older one late, the newest twice
        await scheduling_cer.replicate_coverage(ctx.uow, ctx.inbox_model, envelope)
    september = await _schedule_on(clinic, flow.DOCTOR, nephrology, dt.date(2026, 9, 15))
    october = await _schedule_on(clinic, flow.DOCTOR, nephrology, dt.date(2026, 10, 1))
    assert (september["cer_covered"], october["cer_covered"]) == (False, True)


async def test_a_location_and_a_work_type_accept_every_name_of_the_table_and_nothing_else(clinic: Clinic) -> None:
    for name in CerSpecialty:
        work = await clinic.post("/api/v1/scheduling/work-types", {"name": f"Praca {name}", "cer_specialty": str(name)})
        assert work.status_code == 201 and work.json()["cer_specialty"] == name, work.text
    bad = await clinic.post("/api/v1/scheduling/locations", {"name": "Poradnia", "cer_specialty": "dermatology"})
    assert _errors(bad) == {"body.cer_specialty"}


# ----------------------------------------------------------------------------- contracts and compliance


async def _compliance(clinic: Clinic) -> dict[str, dict[str, Any]]:
    answer = await clinic.client.get(f"{INTEG}/cer/compliance", headers=clinic.desk)
    assert answer.status_code == 200, answer.text
    return {s["specialty"]: s for s in answer.json()["specialties"]}


def _dates(found: dict[str, Any]) -> list[tuple[str, str]]:
    return [(r["date"], r["status"]) for r in found["payment_risks"]]


async def test_contracts_are_declared_by_the_admin_and_an_unknown_specialty_is_named(clinic: Clinic) -> None:
    path = f"{INTEG}/cer/contracts"
    assert (await clinic.client.get(path, headers=clinic.desk)).json()["specialties"] == []
    bad = await clinic.client.put(path, json={"specialties": ["cardiology", "dermatology"]}, headers=clinic.admin)
    assert _errors(bad) == {"body.specialties.1"}
    assert (await clinic.client.put(path, json={"specialties": []}, headers=clinic.desk)).status_code == 403
    body = {"specialties": ["nephrology", "cardiology", "nephrology"]}
    declared = await clinic.client.put(path, json=body, headers=clinic.admin)
    assert declared.status_code == 200, declared.text
    assert declared.json()["specialties"] == ["cardiology", "nephrology"]  # once each, in the table's order
    assert (await clinic.client.get(path, headers=clinic.desk)).json()["specialties"] == ["cardiology", "nephrology"]
    other = await clinic.token(sub="b", role="facility_admin", facility_id="another-clinic")
    assert (await clinic.client.get(path, headers=other)).json()["specialties"] == []
    emptied = await clinic.client.put(path, json={"specialties": []}, headers=clinic.admin)
    assert emptied.json()["specialties"] == []


async def test_a_facility_with_an_endocrinology_contract_sees_its_own_dates_from_the_draft(clinic: Clinic) -> None:
    declared = await clinic.client.put(
        f"{INTEG}/cer/contracts", json={"specialties": ["endocrinology"]}, headers=clinic.admin
    )
    assert declared.status_code == 200, declared.text

    _today_is(clinic, dt.date(2026, 7, 31))
    report = await _compliance(clinic)
    endo = report["endocrinology"]
    assert (endo["contracted"], endo["covered_from"], endo["draft"], endo["status"]) == (
        True,
        "2026-08-01",
        True,
        "at_risk",
    )
    assert _dates(endo) == [("2026-07-31", "at_risk"), ("2026-08-01", "at_risk"), ("2026-08-01", "at_risk")]
    assert endo["payment_risks"][0]["detail"] == "not yet accepted by CeR; 0 days left"
    for name in ("cardiology", "nephrology", "hepatology"):  # no contract: nothing applies
        assert (report[name]["contracted"], report[name]["status"]) == (False, "not_applicable")

    _today_is(clinic, dt.date(2026, 8, 1))
    endo = (await _compliance(clinic))["endocrinology"]
    assert endo["status"] == "breached"
    assert _dates(endo) == [("2026-07-31", "breached"), ("2026-08-01", "breached"), ("2026-08-01", "breached")]


async def test_an_endocrinology_schedule_published_in_july_keeps_the_facility_in_time(clinic: Clinic) -> None:
    _today_is(clinic, dt.date(2026, 7, 20))
    await _cer_connected(clinic)
    await clinic.client.put(f"{INTEG}/cer/contracts", json={"specialties": ["endocrinology"]}, headers=clinic.admin)
    endocrinology = await _work(clinic, "endocrinology", "Poradnia endokrynologiczna")
    august = await _schedule_on(clinic, flow.DOCTOR, endocrinology, dt.date(2026, 8, 3))
    assert august["cer_published"] is True

    async def accepted() -> bool:
        return (await _compliance(clinic))["endocrinology"]["published"] is True

    await eventually(accepted, "CeR accepted the schedule", clinic)
    endo = (await _compliance(clinic))["endocrinology"]
    assert (endo["schedules"], endo["first_published_on"], endo["status"]) == (1, "2026-07-20", "ok")
    _today_is(clinic, dt.date(2026, 8, 1))  # in time: nothing is breached when the step comes into force
    endo = (await _compliance(clinic))["endocrinology"]
    assert _dates(endo) == [("2026-07-31", "ok"), ("2026-08-01", "ok"), ("2026-08-01", "ok")]


# ----------------------------------------------------------------------------- the screening ages


async def test_a_desk_booking_outside_the_screening_ages_is_booked_with_a_warning(clinic: Clinic) -> None:
    mammography = await _work(clinic, "mammography", "Mammografia")
    day = dt.datetime.now(WARSAW).date() + dt.timedelta(days=3)
    await _schedule_on(clinic, flow.DOCTOR, mammography, day)
    slots = (
        await clinic.client.get("/api/v1/scheduling/slots", params={"work_type_id": mammography}, headers=clinic.desk)
    ).json()
    answers = {}
    for slot, pesel in zip(slots, (WOMAN_1976, WOMAN_2002), strict=True):
        answer = await clinic.client.post(
            "/api/v1/scheduling/bookings", json={"slot_id": slot["id"], "patient_pesel": pesel}, headers=clinic.desk
        )
        assert answer.status_code == 201, answer.text
        answers[pesel] = answer.json()
    assert answers[WOMAN_1976]["warnings"] == []  # 50 on the visit day: in the programme
    too_young = answers[WOMAN_2002]["warnings"]
    assert len(too_young) == 1 and "women aged 45-74" in too_young[0] and "is 24" in too_young[0]
    assert answers[WOMAN_2002]["status"] == "booked"  # a warning, not a refusal


async def test_a_man_booked_for_cytology_is_warned_and_a_cardiology_booking_never_is(clinic: Clinic) -> None:
    cytology = await _work(clinic, "hpv_cytology", "Cytologia")
    cardiology = await _work(clinic, "cardiology", "Kardiologia")
    day = dt.datetime.now(WARSAW).date() + dt.timedelta(days=4)
    await _schedule_on(clinic, flow.DOCTOR, cytology, day)
    await _schedule_on(clinic, flow.DUTY, cardiology, day)
    found = {}
    for work in (cytology, cardiology):
        slot = (
            await clinic.client.get("/api/v1/scheduling/slots", params={"work_type_id": work}, headers=clinic.desk)
        ).json()[0]
        answer = await clinic.client.post(
            "/api/v1/scheduling/bookings", json={"slot_id": slot["id"], "patient_pesel": MAN_1944}, headers=clinic.desk
        )
        assert answer.status_code == 201, answer.text
        found[work] = answer.json()["warnings"]
    assert len(found[cytology]) == 1 and "cytology/HPV" in found[cytology][0] and "a man's" in found[cytology][0]
    assert found[cardiology] == []

"""The reimbursement service over HTTP (ASGI), with its in-process eZWM sandbox.

One app serves the whole module (its start and migrations dominate a test's time); every test
issues its own orders and uses its own pharmacy where the lock or a settlement could leak between
tests. "Today" is pinned by fixing the service's clock (``ctx.clock``) so months and dates are fixed.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
import sqlalchemy as sa
from fastapi import FastAPI

from services.reimbursement.app import create_app
from services.reimbursement.models import Outbox, Realisation
from services.reimbursement.settings import ReimbursementSettings
from shared.app import ServiceContext
from shared.clock import FixedClock
from shared.settings import Settings
from tests.api.test_scheduling_api import assert_problem
from tests.conftest import FACILITY, OTHER_FACILITY, OTHER_PESEL, PESEL, make_settings, token_for
from tests.support.waiting import eventually

pytestmark = pytest.mark.asyncio(loop_scope="module")

API = "/api/v1/reimbursement"
EZWM = "/sandbox/ezwm"
TODAY = dt.date(2030, 3, 15)
PESEL_BIRTH_DATE = "1944-05-14"  # encoded in PESEL
Headers = dict[str, str]


WARSAW = ZoneInfo("Europe/Warsaw")


def noon(day: dt.date) -> FixedClock:
    return FixedClock(dt.datetime.combine(day, dt.time(12), tzinfo=WARSAW))


@dataclass
class Suite:
    """The running service, its sandbox, a clock, and tokens for every role."""

    client: httpx.AsyncClient
    sandbox: httpx.AsyncClient
    app: FastAPI
    settings: Settings

    def set_today(self, day: dt.date) -> None:
        self.ctx.clock = noon(day)

    def auth(self, role: str, **claims: Any) -> Headers:
        return {"Authorization": f"Bearer {token_for(self.settings, role, **claims)}"}

    @property
    def doctor(self) -> Headers:
        return self.auth("practitioner")

    def pharmacist(self, pharmacy_id: str) -> Headers:
        return self.auth("pharmacist", pharmacy_id=pharmacy_id)

    @property
    def ctx(self) -> ServiceContext:
        ctx: ServiceContext = self.app.state.ctx
        return ctx

    async def order(self, headers: Headers | None = None, **changes: Any) -> dict[str, Any]:
        answer = await self.client.post(f"{API}/orders", json=an_order(**changes), headers=headers or self.doctor)
        assert answer.status_code == 201, answer.text
        body: dict[str, Any] = answer.json()
        return body

    async def realise(self, number: str, pharmacy_id: str, **changes: Any) -> httpx.Response:
        return await self.client.post(
            f"{API}/orders/{number}/realizations", json=a_realisation(**changes), headers=self.pharmacist(pharmacy_id)
        )

    async def realised(self, number: str, pharmacy_id: str, **changes: Any) -> dict[str, Any]:
        answer = await self.realise(number, pharmacy_id, **changes)
        assert answer.status_code == 201, answer.text
        body: dict[str, Any] = answer.json()
        return body


def an_order(**changes: Any) -> dict[str, Any]:
    return {
        "patient_pesel": PESEL,
        "code": "P.100",
        "group": "MCH1",
        "pieces_per_month": 90,
        "months": 6,
        "start_month": "2030-03",
        "entitlements": [],
        "channel": "visit",
        **changes,
    }


def a_realisation(**changes: Any) -> dict[str, Any]:
    # No realized_on: a realisation is dated today, by the service's (fixed) clock.
    return {"months": ["2030-03"], "pieces": 90, "unit_price": "1.50", **changes}


def pharmacy() -> str:
    return f"pharmacy-{uuid.uuid4().hex[:8]}"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Suite]:
    shared = make_settings(tmp_path_factory.mktemp("reimbursement"))
    # Offline realisations are offered to eZWM again every 50 ms instead of every 30 s.
    settings = ReimbursementSettings(**shared.model_dump(), ezwm_retry_seconds=0.05)
    app = create_app(settings)
    sandbox = httpx.AsyncClient(transport=httpx.ASGITransport(app=app.state.ezwm_sandbox), base_url="http://sandbox")
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
        sandbox,
    ):
        suite = Suite(client, sandbox, app, settings)
        suite.set_today(TODAY)
        yield suite


@pytest.fixture
def suite(running: Suite) -> Iterator[Suite]:
    running.set_today(TODAY)
    yield running
    running.set_today(TODAY)
    running.app.state.ezwm_sandbox.state.ezwm.up = True


# ----------------------------------------------------------------------------- issuing orders


async def test_a_doctor_issues_an_order_that_ezwm_verifies_and_numbers(suite: Suite) -> None:
    order = await suite.order(entitlements=["47zn"], code="P.101", group="PM2")
    assert order["verification"] == "positive"
    assert order["reasons"] == []
    assert order["number"]
    assert order["status"] == "active"
    assert order["locked_by_pharmacy"] is None
    assert order["months_realized"] == []
    assert order["group_code"] == "P.101.PM2"
    assert (order["start_month"], order["valid_until"]) == ("2030-03", "2030-08")
    assert order["entitlements"] == ["47ZN"]
    in_ezwm = await suite.sandbox.get(f"{EZWM}/orders/{order['number']}")
    assert in_ezwm.json()["verification"] == "positive"


async def test_a_facility_admin_may_issue_too(suite: Suite) -> None:
    assert (await suite.order(headers=suite.auth("facility_admin")))["verification"] == "positive"


async def test_a_negatively_verified_order_has_a_number_and_says_why(suite: Suite) -> None:
    await suite.sandbox.post(f"{EZWM}/patients", json={"pesel": OTHER_PESEL, "insured": False})
    order = await suite.order(patient_pesel=OTHER_PESEL)
    assert order["verification"] == "negative"
    assert order["status"] == "negative"
    assert order["number"]
    assert any("not insured" in reason for reason in order["reasons"])

    refused = assert_problem(await suite.realise(order["number"], pharmacy()), 422, "path.number")
    assert "not insured" in refused["detail"]


async def test_a_teleconsultation_order_announces_its_number_through_the_outbox(suite: Suite) -> None:
    tele = await suite.order(channel="teleconsultation")
    visit = await suite.order(channel="visit")
    async with suite.ctx.sessions() as session:
        rows = (await session.scalars(sa.select(Outbox).where(Outbox.event_type.like("reimbursement.%")))).all()
    payloads = [json.loads(row.envelope) for row in rows]
    announced = [p for p in payloads if p["payload"]["number"] in (tele["number"], visit["number"])]
    assert len(announced) == 1
    envelope = announced[0]
    assert envelope["type"] == "reimbursement.order.number_issued"
    assert envelope["facility_id"] == FACILITY
    assert envelope["payload"] == {
        "number": tele["number"],
        "patient_pesel": PESEL,
        "channel": "teleconsultation",
        "verification": "positive",
    }


async def test_an_idempotent_retry_issues_nothing_new(suite: Suite) -> None:
    headers = {**suite.doctor, "Idempotency-Key": uuid.uuid4().hex}
    first = await suite.client.post(f"{API}/orders", json=an_order(), headers=headers)
    again = await suite.client.post(f"{API}/orders", json=an_order(), headers=headers)
    assert first.status_code == again.status_code == 201
    assert first.json()["number"] == again.json()["number"]


async def test_while_ezwm_is_down_no_order_is_issued(suite: Suite) -> None:
    await suite.sandbox.post(f"{EZWM}/down")
    body = assert_problem(await suite.client.post(f"{API}/orders", json=an_order(), headers=suite.doctor), 503)
    assert "eZWM is unavailable" in body["detail"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"patient_pesel": "44051401358"}, "body.patient_pesel"),
        ({"patient_pesel": "1" * 200}, "body.patient_pesel"),
        ({"code": "P.102"}, "body.code"),
        ({"group": "XL"}, "body.group"),
        ({"pieces_per_month": 0}, "body.pieces_per_month"),
        ({"pieces_per_month": 1.5}, "body.pieces_per_month"),
        ({"months": 0}, "body.months"),
        ({"months": 13}, "body.months"),
        ({"start_month": "2030-3"}, "body.start_month"),
        ({"start_month": "2030-13"}, "body.start_month"),
        ({"entitlements": ["47 ZN"]}, "body.entitlements.0"),
        ({"entitlements": "47ZN"}, "body.entitlements"),
        ({"channel": "phone"}, "body.channel"),
        ({"short_form": "perhaps"}, "body.short_form"),
        ({"colour": "blue"}, "body.colour"),
    ],
)
async def test_bad_orders_are_refused_naming_the_field(suite: Suite, changes: dict[str, Any], field: str) -> None:
    answer = await suite.client.post(f"{API}/orders", json=an_order(**changes), headers=suite.doctor)
    assert_problem(answer, 422, field)


@pytest.mark.parametrize(("today", "start_month"), [(dt.date(2030, 4, 1), "2030-03"), (TODAY, "2029-12")])
async def test_an_order_for_months_that_have_passed_is_refused(suite: Suite, today: dt.date, start_month: str) -> None:
    suite.set_today(today)
    answer = await suite.client.post(f"{API}/orders", json=an_order(start_month=start_month), headers=suite.doctor)
    body = assert_problem(answer, 422, "body.start_month")
    assert f"{start_month} has already passed" in body["detail"]


async def test_an_order_may_start_on_the_last_day_of_its_first_month(suite: Suite) -> None:
    suite.set_today(dt.date(2030, 3, 31))
    assert (await suite.order(start_month="2030-03"))["start_month"] == "2030-03"


async def test_a_body_that_is_not_json_is_a_400(suite: Suite) -> None:
    answer = await suite.client.post(
        f"{API}/orders", content=b"{nope", headers={**suite.doctor, "content-type": "application/json"}
    )
    assert_problem(answer, 400)


@pytest.mark.parametrize("role", ["pharmacist", "registrar", "patient", "partner"])
async def test_only_doctors_and_admins_issue_orders(suite: Suite, role: str) -> None:
    answer = await suite.client.post(f"{API}/orders", json=an_order(), headers=suite.auth(role))
    assert_problem(answer, 403)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/orders"),
        ("GET", "/orders/1?pesel=44051401359"),
        ("POST", "/orders/1/realizations"),
        ("POST", "/orders/1/end"),
        ("GET", "/settlements?month=2030-03"),
    ],
)
async def test_every_endpoint_needs_a_token(suite: Suite, method: str, path: str) -> None:
    assert_problem(await suite.client.request(method, API + path, json={}), 401)
    bad = {"Authorization": "Bearer not-a-token"}
    assert_problem(await suite.client.request(method, API + path, json={}, headers=bad), 401)


# ----------------------------------------------------------------------------- finding orders


async def test_a_pharmacist_finds_an_order_by_number_and_pesel_or_birth_date(suite: Suite) -> None:
    number = (await suite.order())["number"]
    headers = suite.pharmacist(pharmacy())
    by_pesel = await suite.client.get(f"{API}/orders/{number}", params={"pesel": PESEL}, headers=headers)
    by_birth = await suite.client.get(
        f"{API}/orders/{number}", params={"birth_date": PESEL_BIRTH_DATE}, headers=headers
    )
    assert by_pesel.status_code == by_birth.status_code == 200, by_pesel.text
    assert by_pesel.json() == by_birth.json()
    assert by_pesel.json()["patient_age"] == 85


@pytest.mark.parametrize(
    "params",
    [{"pesel": OTHER_PESEL}, {"birth_date": "1944-05-15"}, {"pesel": PESEL, "birth_date": "1944-05-15"}],
)
async def test_a_number_with_the_wrong_patient_is_not_found(suite: Suite, params: dict[str, str]) -> None:
    number = (await suite.order())["number"]
    answer = await suite.client.get(f"{API}/orders/{number}", params=params, headers=suite.pharmacist(pharmacy()))
    assert_problem(answer, 404)


async def test_an_unknown_number_is_not_found(suite: Suite) -> None:
    answer = await suite.client.get(f"{API}/orders/0000", params={"pesel": PESEL}, headers=suite.pharmacist("p"))
    assert_problem(answer, 404)


@pytest.mark.parametrize(
    ("params", "field"),
    [({}, "query.pesel"), ({"pesel": "123"}, "query.pesel"), ({"birth_date": "14.05.1944"}, "query.birth_date")],
)
async def test_a_pharmacist_must_identify_the_patient(suite: Suite, params: dict[str, str], field: str) -> None:
    answer = await suite.client.get(f"{API}/orders/1", params=params, headers=suite.pharmacist("p"))
    assert_problem(answer, 422, field)


async def test_the_issuing_facility_sees_its_order_and_another_facility_does_not(suite: Suite) -> None:
    number = (await suite.order())["number"]
    own = await suite.client.get(f"{API}/orders/{number}", headers=suite.doctor)
    assert own.status_code == 200, own.text
    other = suite.auth("practitioner", facility_id=OTHER_FACILITY)
    assert_problem(await suite.client.get(f"{API}/orders/{number}", headers=other), 404)
    assert_problem(await suite.client.get(f"{API}/orders/{number}", headers=suite.auth("patient")), 403)


# ----------------------------------------------------------------------------- realising: money


@pytest.mark.parametrize(
    ("order", "realisation", "expected"),
    [
        # The source's example: 180 pieces at 1.50 in MCH1 (limit 1.70): 70 % of 270.00.
        (
            {"group": "MCH1"},
            {"months": ["2030-03", "2030-04"], "pieces": 180, "unit_price": "1.50"},
            ("1.70", "0.70", "189.00", "81.00"),
        ),
        # 0.80 a piece below the PW limit: 0.56 a piece subsidised.
        ({"group": "PW"}, {"pieces": 10, "unit_price": "0.80"}, ("1.00", "0.70", "5.60", "2.40")),
        # Above the limit the patient pays all that is over it: 60 x (2.00 - 1.70) + 30 % of 60 x 1.70.
        ({"group": "PP"}, {"pieces": 60, "unit_price": "2.00"}, ("1.70", "0.70", "71.40", "48.60")),
        # A 100 % entitlement: nothing to pay up to the limit.
        (
            {"group": "MCH2", "entitlements": ["47OR"]},
            {"pieces": 30, "unit_price": "2.30"},
            ("2.30", "1.00", "69.00", "0.00"),
        ),
        # Rounded once at the end: 3 x 0.75 x 70 % = 1.575 -> 1.58.
        ({"group": "PM2", "code": "P.101"}, {"pieces": 3, "unit_price": "0.75"}, ("2.30", "0.70", "1.58", "0.67")),
    ],
)
async def test_a_realisation_is_priced_by_the_rules_of_its_date(
    suite: Suite, order: dict[str, Any], realisation: dict[str, Any], expected: tuple[str, str, str, str]
) -> None:
    number = (await suite.order(**order))["number"]
    done = await suite.realised(number, pharmacy(), **realisation)
    assert (done["per_piece_limit"], done["rate"], done["subsidy"], done["patient_share"]) == expected
    assert done["rules_valid_from"] == "2023-01-01"
    assert done["months"] == realisation.get("months", ["2030-03"])
    assert done["ezwm_status"] == "registered"
    assert done["ezwm_registration_number"]


async def test_a_realisation_dated_before_2023_is_refused_until_the_old_limits_are_loaded(suite: Suite) -> None:
    # Orders and realisations are never back-dated, so the service's own clock stands in 2022.
    suite.set_today(dt.date(2022, 3, 10))
    number = (await suite.order(start_month="2022-03"))["number"]
    answer = await suite.realise(number, pharmacy(), months=["2022-03"], realized_on="2022-03-10")
    body = assert_problem(answer, 422, "body.realized_on")
    assert "loaded" in body["detail"]


async def test_entitlements_are_updated_to_the_facts_of_the_realisation_day(suite: Suite) -> None:
    number = (await suite.order(entitlements=["47ZN"]))["number"]
    shop = pharmacy()
    expired = {"code": "47OR", "valid_until": "2030-03-14"}
    done = await suite.realised(number, shop, pieces=10, unit_price="1.00", entitlements=[expired, "47ZN"])
    assert done["rate"] == "0.70"
    assert done["entitlements_in_force"] == ["47ZN"]
    assert done["entitlements_dropped"] == [{"code": "47OR", "reason": "47OR expired on 2030-03-14"}]
    assert done["patient_age"] == 85

    suite.set_today(dt.date(2030, 4, 2))
    renewed = {"code": "47or", "valid_from": "2030-04-01"}
    later = await suite.realised(
        number, shop, months=["2030-04"], realized_on="2030-04-02", pieces=10, unit_price="1.00", entitlements=[renewed]
    )
    assert (later["rate"], later["subsidy"], later["patient_share"]) == ("1.00", "10.00", "0.00")
    assert later["continuation"] is True
    order = await suite.client.get(f"{API}/orders/{number}", params={"pesel": PESEL}, headers=suite.pharmacist(shop))
    assert order.json()["entitlements"] == ["47OR"]


# ----------------------------------------------------------------------------- realising: rules and the lock


async def test_the_first_pharmacy_locks_the_order_and_continues_it_alone(suite: Suite) -> None:
    number = (await suite.order())["number"]
    first, second = pharmacy(), pharmacy()
    done = await suite.realised(number, first)
    assert done["locked_by_pharmacy"] == first
    assert done["continuation"] is False

    body = assert_problem(await suite.realise(number, second, months=["2030-03"]), 409)
    assert body["type"].endswith("/order-locked")
    seen = await suite.client.get(f"{API}/orders/{number}", params={"pesel": PESEL}, headers=suite.pharmacist(second))
    assert seen.json()["locked_by_pharmacy"] == first
    assert seen.json()["months_realized"] == ["2030-03"]

    suite.set_today(dt.date(2030, 4, 1))
    assert_problem(await suite.realise(number, second, months=["2030-04"], realized_on="2030-04-01"), 409)
    continued = await suite.realised(number, first, months=["2030-04", "2030-05"], realized_on="2030-04-01")
    assert continued["continuation"] is True


async def test_a_month_is_realised_at_most_once(suite: Suite) -> None:
    number = (await suite.order())["number"]
    shop = pharmacy()
    await suite.realised(number, shop, months=["2030-03", "2030-04"], pieces=100)
    again = await suite.realise(number, shop, months=["2030-03"])
    body = assert_problem(again, 409, "body.months")
    assert body["type"].endswith("/month-already-realised")


async def test_a_short_form_order_continues_an_ended_original_and_is_realisable_in_any_pharmacy(
    suite: Suite,
) -> None:
    first = pharmacy()
    original = (await suite.order(months=1))["number"]  # March only
    await suite.realised(original, first)
    short = await suite.order(short_form=True, continues_order=original, start_month="2030-04", months=2)
    assert (short["short_form"], short["continues_order"], short["valid_until"]) == (True, original, "2030-05")
    # The original's lock does not carry over: another pharmacy realises the continuation, none locks it.
    suite.set_today(dt.date(2030, 4, 10))
    other = await suite.realised(short["number"], pharmacy(), months=["2030-04"], realized_on="2030-04-10")
    assert other["locked_by_pharmacy"] is None
    suite.set_today(dt.date(2030, 5, 3))
    again = await suite.realised(short["number"], pharmacy(), months=["2030-05"], realized_on="2030-05-03")
    assert (again["locked_by_pharmacy"], again["continuation"]) == (None, True)


async def test_a_short_form_order_without_an_original_is_refused(suite: Suite) -> None:
    answer = await suite.client.post(f"{API}/orders", json=an_order(short_form=True), headers=suite.doctor)
    body = assert_problem(answer, 422, "body.continues_order")
    assert "continuation of an original order" in body["detail"]


async def test_a_short_form_order_may_not_start_before_the_original_has_ended(suite: Suite) -> None:
    original = (await suite.order(months=2))["number"]  # March and April
    answer = await suite.client.post(
        f"{API}/orders",
        json=an_order(short_form=True, continues_order=original, start_month="2030-04"),
        headers=suite.doctor,
    )
    body = assert_problem(answer, 422, "body.start_month")
    assert "starts with 2030-05 or later" in body["detail"]
    # Shortened by the doctor to March, the original has ended: April is the continuation's to take.
    ended = await suite.client.post(f"{API}/orders/{original}/end", json={"end_month": "2030-03"}, headers=suite.doctor)
    assert ended.status_code == 200, ended.text
    assert (await suite.order(short_form=True, continues_order=original, start_month="2030-04"))["verification"] == (
        "positive"
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"group": "MCH2"}, "body.group"),
        ({"code": "P.101"}, "body.code"),
        ({"pieces_per_month": 60}, "body.pieces_per_month"),
        ({"patient_pesel": OTHER_PESEL}, "body.continues_order"),
        ({"short_form": False}, "body.continues_order"),
        ({"continues_order": "0000"}, "body.continues_order"),
        ({"continues_order": ""}, "body.continues_order"),
    ],
)
async def test_a_short_form_order_is_the_same_patients_original_unchanged(
    suite: Suite, changes: dict[str, Any], field: str
) -> None:
    original = (await suite.order(months=1))["number"]
    body = an_order(**{"short_form": True, "continues_order": original, "start_month": "2030-04", **changes})
    assert_problem(await suite.client.post(f"{API}/orders", json=body, headers=suite.doctor), 422, field)


async def test_a_negative_order_is_no_original_to_continue(suite: Suite) -> None:
    await suite.sandbox.post(f"{EZWM}/patients", json={"pesel": OTHER_PESEL, "insured": False})
    negative = (await suite.order(patient_pesel=OTHER_PESEL, months=1))["number"]
    await suite.sandbox.post(f"{EZWM}/patients", json={"pesel": OTHER_PESEL, "insured": True})
    body = an_order(patient_pesel=OTHER_PESEL, short_form=True, continues_order=negative, start_month="2030-04")
    answer = await suite.client.post(f"{API}/orders", json=body, headers=suite.doctor)
    assert "verified negatively" in assert_problem(answer, 422, "body.continues_order")["detail"]


async def test_an_original_is_continued_once(suite: Suite) -> None:
    original = (await suite.order(months=1))["number"]
    await suite.order(short_form=True, continues_order=original, start_month="2030-04")
    body = an_order(short_form=True, continues_order=original, start_month="2030-06")
    answer = await suite.client.post(f"{API}/orders", json=body, headers=suite.doctor)
    problem = assert_problem(answer, 409, "body.continues_order")
    assert problem["type"].endswith("/order-already-continued")


async def test_a_shortened_order_stays_ended_and_with_its_pharmacy(suite: Suite) -> None:
    number = (await suite.order())["number"]  # March to August
    first, second = pharmacy(), pharmacy()
    await suite.realised(number, first)
    ended = await suite.client.post(f"{API}/orders/{number}/end", json={"end_month": "2030-04"}, headers=suite.doctor)
    assert ended.status_code == 200, ended.text
    assert (ended.json()["locked_by_pharmacy"], ended.json()["valid_until"]) == (first, "2030-04")
    in_ezwm = (await suite.sandbox.get(f"{EZWM}/orders/{number}")).json()
    assert (in_ezwm["end_month"], in_ezwm["locked_by"]) == ("2030-04", first)

    suite.set_today(dt.date(2030, 4, 3))
    # The rest of the old order is not another pharmacy's to take: the patient moves with a new order.
    body = assert_problem(await suite.realise(number, second, months=["2030-04"]), 409)
    assert body["type"].endswith("/order-locked")
    assert "ended it with 2030-04" in body["detail"] and "new order" in body["detail"]
    # Nothing past the new end, not even in the pharmacy that holds it.
    past = assert_problem(await suite.realise(number, first, months=["2030-04", "2030-05"]), 422, "body.months")
    assert "ended or shortened by the doctor" in past["detail"]
    own = await suite.realised(number, first, months=["2030-04"], realized_on="2030-04-03")
    assert own["locked_by_pharmacy"] == first
    suite.set_today(dt.date(2030, 5, 2))
    after = assert_problem(await suite.realise(number, first, months=["2030-05"]), 422, "body.realized_on")
    assert "valid until 2030-04" in after["detail"]
    assert_problem(await suite.realise(number, second, months=["2030-05"]), 409)


async def test_an_order_ended_before_any_realisation_is_the_first_pharmacys_up_to_its_end(suite: Suite) -> None:
    number = (await suite.order())["number"]
    ended = await suite.client.post(f"{API}/orders/{number}/end", json={"end_month": "2030-03"}, headers=suite.doctor)
    assert ended.json()["locked_by_pharmacy"] is None
    shop = pharmacy()
    assert (await suite.realised(number, shop))["locked_by_pharmacy"] == shop
    assert_problem(await suite.realise(number, shop, months=["2030-03", "2030-04"]), 422, "body.months")


@pytest.mark.parametrize(
    ("end_month", "field"),
    [("2030-09", "body.end_month"), ("2030-02", "body.end_month"), ("2030-3", "body.end_month")],
)
async def test_an_order_is_ended_or_shortened_never_extended(suite: Suite, end_month: str, field: str) -> None:
    number = (await suite.order())["number"]
    answer = await suite.client.post(f"{API}/orders/{number}/end", json={"end_month": end_month}, headers=suite.doctor)
    assert_problem(answer, 422, field)


async def test_an_order_is_not_ended_before_a_month_already_supplied(suite: Suite) -> None:
    number = (await suite.order())["number"]
    await suite.realised(number, pharmacy(), months=["2030-03", "2030-04"], pieces=10)
    answer = await suite.client.post(f"{API}/orders/{number}/end", json={"end_month": "2030-03"}, headers=suite.doctor)
    assert_problem(answer, 422, "body.end_month")


async def test_only_the_issuing_facility_ends_an_order(suite: Suite) -> None:
    number = (await suite.order())["number"]
    body = {"end_month": "2030-04"}
    other = suite.auth("facility_admin", facility_id=OTHER_FACILITY)
    assert_problem(await suite.client.post(f"{API}/orders/{number}/end", json=body, headers=other), 404)
    for role in ("pharmacist", "registrar"):
        answer = await suite.client.post(f"{API}/orders/{number}/end", json=body, headers=suite.auth(role))
        assert_problem(answer, 403)
    assert_problem(await suite.client.post(f"{API}/orders/0000/end", json=body, headers=suite.doctor), 404)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"months": []}, "body.months"),
        ({"months": [f"2030-{m:02d}" for m in range(3, 10)], "pieces": 10}, "body.months"),
        ({"months": ["2030-03", "2030-05"]}, "body.months"),
        ({"months": ["2030-03", "2030-03"]}, "body.months"),
        ({"months": ["2030-04"]}, "body.months"),
        # Before the order's first month, even as an offline registration of a paper date.
        (
            {"months": ["2030-02"], "realized_on": "2030-02-27", "offline": True, "patient_statement": True},
            "body.realized_on",
        ),
        ({"months": ["2030-3"]}, "body.months.0"),
        ({"pieces": 91}, "body.pieces"),
        ({"pieces": 0}, "body.pieces"),
        ({"unit_price": "1.505"}, "body.unit_price"),
        ({"unit_price": 1.5}, "body.unit_price"),
        ({"unit_price": "0.00"}, "body.unit_price"),
        ({"unit_price": "-1.00"}, "body.unit_price"),
        ({"realized_on": "2030-03-16"}, "body.realized_on"),
        ({"realized_on": "15.03.2030"}, "body.realized_on"),
        ({"realized_on": "2030-03-14"}, "body.realized_on"),
        ({"realized_on": "2030-03-14", "patient_statement": True}, "body.realized_on"),
        ({"realized_on": "2030-03-14", "offline": True}, "body.patient_statement"),
        ({"realized_on": "2030-03-16", "offline": True, "patient_statement": True}, "body.realized_on"),
        ({"offline": "maybe"}, "body.offline"),
        (
            {"entitlements": [{"code": "47OR", "valid_from": "2030-03-10", "valid_until": "2030-03-01"}]},
            "body.entitlements",
        ),
        ({"entitlements": ["4 7"]}, "body.entitlements.0.code"),
        ({"pesel": "44051401358"}, "body.pesel"),
        ({"surplus": True}, "body.surplus"),
    ],
)
async def test_bad_realisations_are_refused_naming_the_field(suite: Suite, changes: dict[str, Any], field: str) -> None:
    number = (await suite.order(pieces_per_month=90, months=6))["number"]
    assert_problem(await suite.realise(number, pharmacy(), **changes), 422, field)


async def test_a_realisation_with_the_wrong_patient_is_not_found(suite: Suite) -> None:
    number = (await suite.order())["number"]
    assert_problem(await suite.realise(number, pharmacy(), pesel=OTHER_PESEL), 404)
    assert_problem(await suite.realise(number, pharmacy(), birth_date="2000-01-01"), 404)
    assert_problem(await suite.realise("0000", pharmacy()), 404)
    assert (await suite.realise(number, pharmacy(), pesel=PESEL, birth_date=PESEL_BIRTH_DATE)).status_code == 201


@pytest.mark.parametrize("role", ["practitioner", "facility_admin", "patient", "registrar"])
async def test_only_a_pharmacist_realises(suite: Suite, role: str) -> None:
    number = (await suite.order())["number"]
    answer = await suite.client.post(
        f"{API}/orders/{number}/realizations", json=a_realisation(), headers=suite.auth(role)
    )
    assert_problem(answer, 403)


# ----------------------------------------------------------------------------- offline realisations


async def test_a_realisation_is_dated_today_when_no_date_is_given(suite: Suite) -> None:
    number = (await suite.order())["number"]
    answer = await suite.client.post(
        f"{API}/orders/{number}/realizations", json=a_realisation(), headers=suite.pharmacist(pharmacy())
    )
    assert answer.status_code == 201, answer.text
    assert (answer.json()["realized_on"], answer.json()["offline"]) == ("2030-03-15", False)


async def test_an_earlier_date_is_refused_unless_it_is_an_offline_registration(suite: Suite) -> None:
    number = (await suite.order())["number"]
    suite.set_today(dt.date(2030, 4, 2))
    shop = pharmacy()
    refused = await suite.realise(number, shop, months=["2030-03", "2030-04"], realized_on="2030-03-31")
    body = assert_problem(refused, 422, "body.realized_on")
    assert "offline" in body["detail"] and "2030-04-02" in body["detail"]
    unsigned = await suite.realise(number, shop, months=["2030-03", "2030-04"], realized_on="2030-03-31", offline=True)
    assert "statement" in assert_problem(unsigned, 422, "body.patient_statement")["detail"]
    assert (await suite.client.get(f"{API}/orders/{number}", headers=suite.doctor)).json()["months_realized"] == []


async def test_an_offline_paper_date_on_the_last_day_of_a_month_keeps_that_month(suite: Suite) -> None:
    # Paper on 31 March while eZWM was down, registered on 2 April with the patient's statement.
    number = (await suite.order())["number"]
    shop = pharmacy()
    suite.set_today(dt.date(2030, 4, 2))
    paper = await suite.realised(
        number,
        shop,
        months=["2030-03", "2030-04"],
        pieces=180,
        realized_on="2030-03-31",
        offline=True,
        patient_statement=True,
    )
    assert (paper["realized_on"], paper["months"]) == ("2030-03-31", ["2030-03", "2030-04"])
    assert (paper["offline"], paper["patient_statement"]) == (True, True)
    march = await suite.client.get(f"{API}/settlements", params={"month": "2030-03"}, headers=suite.pharmacist(shop))
    assert [r["order_number"] for r in march.json()["rows"]] == [number]


async def test_an_offline_paper_date_never_covers_a_month_passed_on_that_date(suite: Suite) -> None:
    number = (await suite.order())["number"]
    suite.set_today(dt.date(2030, 4, 2))
    answer = await suite.realise(
        number,
        pharmacy(),
        months=["2030-03", "2030-04"],
        realized_on="2030-04-01",
        offline=True,
        patient_statement=True,
    )
    body = assert_problem(answer, 422, "body.months")
    assert "2030-03 has already passed" in body["detail"]


async def test_while_ezwm_is_down_a_realisation_is_recorded_and_registered_when_it_is_back(suite: Suite) -> None:
    number = (await suite.order())["number"]
    shop = pharmacy()
    await suite.sandbox.post(f"{EZWM}/down")
    done = await suite.realised(number, shop)
    assert done["ezwm_status"] == "pending_registration"
    assert done["ezwm_registration_number"] is None
    assert "page 4" in done["notes"][0]
    settlement = await suite.client.get(
        f"{API}/settlements", params={"month": "2030-03"}, headers=suite.pharmacist(shop)
    )
    assert settlement.json()["not_yet_registered"] == 1

    await suite.sandbox.post(f"{EZWM}/up")

    async def registered() -> Realisation | None:
        async with suite.ctx.sessions() as session:
            return await session.get(Realisation, uuid.UUID(done["id"]))

    async def is_registered() -> bool:
        row = await registered()
        return row is not None and row.ezwm_status == "registered"

    # The service's own retry (every 50 ms here) registers it; nobody nudges it.
    await eventually(is_registered, what="the realisation registered in eZWM")
    in_ezwm = (await suite.sandbox.get(f"{EZWM}/orders/{number}")).json()
    assert in_ezwm["months_registered"] == ["2030-03"]
    assert in_ezwm["locked_by"] == shop
    row = await registered()
    assert row is not None
    assert row.ezwm_registration_number
    assert row.registration_attempts >= 2


async def test_a_realisation_ezwm_refuses_is_kept_and_flagged(suite: Suite) -> None:
    number = (await suite.order())["number"]
    del suite.app.state.ezwm_sandbox.state.ezwm.orders[number]  # eZWM has forgotten it (a restarted sandbox)
    done = await suite.realised(number, pharmacy())
    assert done["ezwm_status"] == "registration_rejected"
    assert "refused" in done["notes"][0]


# ----------------------------------------------------------------------------- settlements


async def test_a_month_settlement_lists_rows_totals_documents_and_retention(suite: Suite) -> None:
    shop = pharmacy()
    visit = (await suite.order(channel="visit"))["number"]
    tele = (await suite.order(channel="teleconsultation", group="PW"))["number"]
    await suite.realised(visit, shop, months=["2030-03", "2030-04"], pieces=180)
    await suite.realised(tele, shop, pieces=10, unit_price="0.80", entitlements=["47OR"])
    await suite.realised((await suite.order())["number"], pharmacy())  # another pharmacy's: not in ours
    suite.set_today(dt.date(2030, 5, 2))
    await suite.realised(visit, shop, months=["2030-05"], realized_on="2030-05-02", pieces=10)  # next month's

    answer = await suite.client.get(f"{API}/settlements", params={"month": "2030-03"}, headers=suite.pharmacist(shop))
    assert answer.status_code == 200, answer.text
    settled = answer.json()
    assert (settled["month"], settled["pharmacy_id"]) == ("2030-03", shop)
    assert [r["order_number"] for r in settled["rows"]] == sorted([visit, tele])
    assert settled["totals"] == {
        "realisations": 2,
        "pieces": 190,
        "total": "278.00",
        "subsidy": "197.00",
        "patient_share": "81.00",
    }
    kinds = [(d["kind"], d["order_number"]) for d in settled["documents"]]
    assert ("doctor_pages", visit) in kinds
    assert ("doctor_pages", tele) not in kinds  # a teleconsultation prints nothing
    assert ("entitlement_document_copy", tele) in kinds
    assert kinds[-2:] == [("summary_statement", None), ("accounting_note", None)]
    assert settled["retain_until"] == "2035-12-31"
    assert settled["not_yet_registered"] == 0

    may = await suite.client.get(f"{API}/settlements", params={"month": "2030-05"}, headers=suite.pharmacist(shop))
    (row,) = may.json()["rows"]
    assert row["continuation"] is True
    assert ("doctor_pages", visit) not in [(d["kind"], d["order_number"]) for d in may.json()["documents"]]


async def test_a_settlement_as_csv_has_a_row_per_realisation_and_a_total(suite: Suite) -> None:
    shop = pharmacy()
    number = (await suite.order())["number"]
    await suite.realised(number, shop, months=["2030-03", "2030-04"], pieces=180)
    answer = await suite.client.get(
        f"{API}/settlements", params={"month": "2030-03", "format": "csv"}, headers=suite.pharmacist(shop)
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/csv")
    assert "settlement-2030-03.csv" in answer.headers["content-disposition"]
    lines = answer.text.splitlines()
    assert lines[0].startswith("order_number,realized_on,months,group_code,pieces,unit_price,total,subsidy")
    assert (
        lines[1]
        == f"{number},2030-03-15,2030-03 2030-04,P.100.MCH1,180,1.50,270.00,189.00,81.00,visit,false,false,registered"
    )
    assert lines[2].startswith("TOTAL,,,,180,,270.00,189.00,81.00")
    assert len(lines) == 3


async def test_an_empty_month_settles_to_zero_and_no_documents(suite: Suite) -> None:
    answer = await suite.client.get(f"{API}/settlements", params={"month": "2029-12"}, headers=suite.pharmacist("x"))
    settled = answer.json()
    assert settled["rows"] == [] and settled["documents"] == []
    assert settled["totals"]["subsidy"] == "0.00"
    assert settled["retain_until"] == "2034-12-31"


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "query.month"),
        ({"month": "2030-13"}, "query.month"),
        ({"month": "03-2030"}, "query.month"),
        ({"month": "2030-03-01"}, "query.month"),
        ({"month": "2030-03", "format": "xml"}, "query.format"),
        ({"month": "1999-12"}, "query.month"),
        ({"month": "2101-01"}, "query.month"),
        ({"month": "9999-12"}, "query.month"),
        ({"month": "0000-01"}, "query.month"),
    ],
)
async def test_bad_settlement_queries_name_the_field(suite: Suite, params: dict[str, str], field: str) -> None:
    answer = await suite.client.get(f"{API}/settlements", params=params, headers=suite.pharmacist("x"))
    assert_problem(answer, 422, field)


@pytest.mark.parametrize("role", ["practitioner", "facility_admin", "patient"])
async def test_only_a_pharmacist_settles(suite: Suite, role: str) -> None:
    answer = await suite.client.get(f"{API}/settlements", params={"month": "2030-03"}, headers=suite.auth(role))
    assert_problem(answer, 403)


# ----------------------------------------------------------------------------- the service itself


async def test_health_readiness_and_openapi(suite: Suite) -> None:
    assert (await suite.client.get("/healthz")).json() == {"status": "ok"}
    ready = await suite.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    spec = (await suite.client.get("/openapi.json")).json()
    realise = spec["paths"][f"{API}/orders/{{number}}/realizations"]["post"]
    assert realise["x-roles"] == ["pharmacist"]
    assert sorted(spec["paths"][f"{API}/orders"]["post"]["x-roles"]) == ["facility_admin", "practitioner"]
    money = spec["components"]["schemas"]["RealisationOut"]["properties"]["subsidy"]
    assert money["type"] == "string"


async def test_settings_refuse_the_embedded_sandbox_in_production(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="EZWM_URL"):
        ReimbursementSettings(environment="production", dev_auth=False, jwt_secret="a-real-secret-" + "0123456789" * 3)
    configured = ReimbursementSettings.from_settings(make_settings(tmp_path))
    assert configured.ezwm_url is None and configured.database_url.endswith("{service}.db")

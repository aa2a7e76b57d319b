"""The sandbox's eZWM simulator over HTTP, and the suite's eZWM client talking to it (the contract)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from services.integration.ezwm import EzwmClient, EzwmRefused, EzwmUnavailable, OrderToVerify
from services.sandbox.app import create_app
from tests.api.test_scheduling_api import assert_problem
from tests.conftest import OTHER_PESEL, PESEL, running_client

EZWM = "/sandbox/ezwm"


@pytest.fixture
async def sandbox() -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_client(create_app()):
        yield client


def an_order(**changes: Any) -> dict[str, Any]:
    return {
        "patient_pesel": PESEL,
        "code": "P.100",
        "group": "MCH1",
        "pieces_per_month": 60,
        "months": 3,
        "start_month": "2030-03",
        "entitlements": [],
        "channel": "visit",
        "facility_id": "clinic-a",
        **changes,
    }


def a_realisation(**changes: Any) -> dict[str, Any]:
    return {
        "realization_id": str(uuid.uuid4()),
        "pharmacy_id": "pharmacy-1",
        "realized_on": "2030-03-15",
        "months": ["2030-03"],
        "pieces": 60,
        "unit_price": "1.50",
        "subsidy": "63.00",
        "patient_share": "27.00",
        **changes,
    }


async def issued(sandbox: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    answer = await sandbox.post(f"{EZWM}/orders", json=an_order(**changes))
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def test_health_and_readiness(sandbox: httpx.AsyncClient) -> None:
    assert (await sandbox.get("/healthz")).json() == {"status": "ok"}
    ready = await sandbox.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert ready.headers["x-request-id"]


async def test_an_unregistered_patient_is_insured_and_gets_a_positive_order_with_a_number(
    sandbox: httpx.AsyncClient,
) -> None:
    first = await issued(sandbox, entitlements=["47ZN"])
    second = await issued(sandbox)
    assert first["verification"] == "positive" and first["reasons"] == []
    assert first["number"].isdigit() and len(first["number"]) == 16
    assert first["number"] != second["number"]


async def test_a_patient_registered_as_uninsured_gets_a_negative_order_with_a_number(
    sandbox: httpx.AsyncClient,
) -> None:
    registered = await sandbox.post(f"{EZWM}/patients", json={"pesel": OTHER_PESEL, "insured": False})
    assert registered.status_code == 200, registered.text
    order = await issued(sandbox, patient_pesel=OTHER_PESEL)
    assert order["verification"] == "negative"
    assert order["number"]
    assert any("not insured" in reason for reason in order["reasons"])


async def test_unconfirmed_entitlements_and_the_quantity_limit_make_an_order_negative(
    sandbox: httpx.AsyncClient,
) -> None:
    await sandbox.post(f"{EZWM}/patients", json={"pesel": PESEL, "entitlements": ["47zn"], "max_pieces_per_month": 90})
    assert (await issued(sandbox, entitlements=["47ZN"], pieces_per_month=90))["verification"] == "positive"
    order = await issued(sandbox, entitlements=["47ZN", "47OR"], pieces_per_month=91)
    assert order["verification"] == "negative"
    assert len(order["reasons"]) == 2
    assert any("47OR" in reason for reason in order["reasons"])


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"patient_pesel": "44051401358"}, "body.patient_pesel"),
        ({"months": 13}, "body.months"),
        ({"start_month": "2030-13"}, "body.start_month"),
        ({"code": "P.102"}, "body.code"),
        ({"unknown": 1}, "body.unknown"),
    ],
)
async def test_bad_orders_are_refused_naming_the_field(
    sandbox: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    assert_problem(await sandbox.post(f"{EZWM}/orders", json=an_order(**changes)), 422, field)


async def test_registration_is_idempotent_by_realisation_id_and_locks_the_order(sandbox: httpx.AsyncClient) -> None:
    number = (await issued(sandbox))["number"]
    realisation = a_realisation()
    first = await sandbox.post(f"{EZWM}/orders/{number}/realizations", json=realisation)
    again = await sandbox.post(f"{EZWM}/orders/{number}/realizations", json=realisation)
    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json() == again.json()
    order = (await sandbox.get(f"{EZWM}/orders/{number}")).json()
    assert order["locked_by"] == "pharmacy-1"
    assert order["months_registered"] == ["2030-03"]

    elsewhere = a_realisation(pharmacy_id="pharmacy-2", months=["2030-04"], realized_on="2030-04-02")
    assert_problem(await sandbox.post(f"{EZWM}/orders/{number}/realizations", json=elsewhere), 409)
    same_month = a_realisation()
    assert_problem(await sandbox.post(f"{EZWM}/orders/{number}/realizations", json=same_month), 409)
    outside = a_realisation(months=["2030-06"])
    assert_problem(await sandbox.post(f"{EZWM}/orders/{number}/realizations", json=outside), 422, "body.months")


async def test_a_short_form_order_is_never_locked(sandbox: httpx.AsyncClient) -> None:
    number = (await issued(sandbox, short_form=True))["number"]
    for pharmacy, month in (("pharmacy-1", "2030-03"), ("pharmacy-2", "2030-04")):
        realisation = a_realisation(pharmacy_id=pharmacy, months=[month])
        assert (await sandbox.post(f"{EZWM}/orders/{number}/realizations", json=realisation)).status_code == 201
    assert (await sandbox.get(f"{EZWM}/orders/{number}")).json()["locked_by"] is None


async def test_negative_and_unknown_orders_cannot_be_registered(sandbox: httpx.AsyncClient) -> None:
    await sandbox.post(f"{EZWM}/patients", json={"pesel": OTHER_PESEL, "insured": False})
    negative = (await issued(sandbox, patient_pesel=OTHER_PESEL))["number"]
    assert_problem(await sandbox.post(f"{EZWM}/orders/{negative}/realizations", json=a_realisation()), 422)
    assert_problem(await sandbox.post(f"{EZWM}/orders/404/realizations", json=a_realisation()), 404)
    assert_problem(await sandbox.get(f"{EZWM}/orders/404"), 404)


async def test_ending_never_extends_or_cuts_registered_months_and_keeps_the_lock(
    sandbox: httpx.AsyncClient,
) -> None:
    number = (await issued(sandbox))["number"]
    await sandbox.post(f"{EZWM}/orders/{number}/realizations", json=a_realisation(months=["2030-03", "2030-04"]))
    assert_problem(await sandbox.post(f"{EZWM}/orders/{number}/end", json={"end_month": "2030-06"}), 422)
    assert_problem(await sandbox.post(f"{EZWM}/orders/{number}/end", json={"end_month": "2030-03"}), 422)
    ended = await sandbox.post(f"{EZWM}/orders/{number}/end", json={"end_month": "2030-04"})
    assert ended.status_code == 200, ended.text
    order = (await sandbox.get(f"{EZWM}/orders/{number}")).json()
    assert (order["end_month"], order["locked_by"]) == ("2030-04", "pharmacy-1")


async def test_a_shortened_order_is_realised_up_to_its_new_end_in_its_pharmacy_only(sandbox: httpx.AsyncClient) -> None:
    number = (await issued(sandbox))["number"]
    assert (await sandbox.post(f"{EZWM}/orders/{number}/realizations", json=a_realisation())).status_code == 201
    assert (await sandbox.post(f"{EZWM}/orders/{number}/end", json={"end_month": "2030-04"})).status_code == 200
    april = {"months": ["2030-04"], "realized_on": "2030-04-02"}
    elsewhere = await sandbox.post(
        f"{EZWM}/orders/{number}/realizations", json=a_realisation(pharmacy_id="pharmacy-2", **april)
    )
    assert_problem(elsewhere, 409)
    past_end = a_realisation(months=["2030-04", "2030-05"], realized_on="2030-04-02")
    assert_problem(await sandbox.post(f"{EZWM}/orders/{number}/realizations", json=past_end), 422)
    assert (await sandbox.post(f"{EZWM}/orders/{number}/realizations", json=a_realisation(**april))).status_code == 201


async def test_an_outage_answers_503_until_it_ends(sandbox: httpx.AsyncClient) -> None:
    assert (await sandbox.post(f"{EZWM}/down")).json() == {"up": False}
    assert (await sandbox.get(f"{EZWM}/status")).json() == {"up": False}
    body = assert_problem(await sandbox.post(f"{EZWM}/orders", json=an_order()), 503)
    assert "unavailable" in body["detail"]
    assert (await sandbox.post(f"{EZWM}/up")).json() == {"up": True}
    await issued(sandbox)


async def test_the_suite_client_speaks_the_sandbox_contract() -> None:
    app = create_app()
    async with EzwmClient("http://sandbox/sandbox/ezwm", transport=httpx.ASGITransport(app=app)) as client:
        order = OrderToVerify.model_validate({**an_order(), "facility_id": "clinic-a"})
        verified = await client.verify_order(order)
        assert verified.verification == "positive"
        with pytest.raises(EzwmRefused) as refused:
            await client.get_order("unknown")
        assert refused.value.status == 404
        ended = await client.end_order(verified.number, "2030-04")
        assert ended.end_month == "2030-04"
        app.state.ezwm.up = False
        with pytest.raises(EzwmUnavailable) as down:
            await client.get_order(verified.number)
        assert down.value.status == 503

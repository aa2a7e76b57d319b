"""The eZWM adapter's client: what it sends, and that every kind of failure ends as a typed error."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
import respx

from services.integration.ezwm import (
    EzwmBadAnswer,
    EzwmClient,
    EzwmError,
    EzwmRefused,
    EzwmUnavailable,
    OrderToVerify,
    RealisationToRegister,
)

BASE = "https://ezwm.example/api/v1"
ORDER = OrderToVerify(
    patient_pesel="44051401359",
    code="P.100",
    group="MCH1",
    pieces_per_month=60,
    months=6,
    start_month="2030-03",
    entitlements=["47ZN"],
    channel="visit",
    facility_id="clinic-a",
)
REALISATION = RealisationToRegister(
    realization_id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
    pharmacy_id="pharmacy-1",
    realized_on=dt.date(2030, 3, 15),
    months=["2030-03", "2030-04"],
    pieces=180,
    unit_price=Decimal("1.50"),
    subsidy=Decimal("189.00"),
    patient_share=Decimal("81.00"),
    entitlements=[],
)


@pytest.fixture
async def client() -> AsyncIterator[EzwmClient]:
    async with EzwmClient(BASE, timeout=0.5) as ezwm:
        yield ezwm


@respx.mock
async def test_verify_order_posts_the_order_under_the_base_path_with_an_idempotency_key(client: EzwmClient) -> None:
    route = respx.post(f"{BASE}/orders").mock(
        return_value=httpx.Response(201, json={"number": "0001", "verification": "positive", "reasons": []})
    )
    answer = await client.verify_order(ORDER, idempotency_key="k-1")
    assert answer.number == "0001"
    assert answer.verification == "positive"
    sent = route.calls.last.request
    assert sent.headers["idempotency-key"] == "k-1"
    assert json.loads(sent.content)["patient_pesel"] == "44051401359"


@respx.mock
async def test_a_negative_verification_is_an_answer_not_an_error(client: EzwmClient) -> None:
    respx.post(f"{BASE}/orders").mock(
        return_value=httpx.Response(201, json={"number": "0002", "verification": "negative", "reasons": ["no"]})
    )
    answer = await client.verify_order(ORDER)
    assert (answer.verification, answer.reasons) == ("negative", ["no"])


@respx.mock
async def test_money_is_sent_as_decimal_strings_and_the_realisation_id_is_the_idempotency_key(
    client: EzwmClient,
) -> None:
    route = respx.post(f"{BASE}/orders/0001/realizations").mock(
        return_value=httpx.Response(
            201, json={"realization_id": str(REALISATION.realization_id), "registration_number": "R1", "extra": 1}
        )
    )
    receipt = await client.register_realisation("0001", REALISATION)
    assert receipt.registration_number == "R1"
    body = json.loads(route.calls.last.request.content)
    assert (body["unit_price"], body["subsidy"], body["patient_share"]) == ("1.50", "189.00", "81.00")
    assert route.calls.last.request.headers["idempotency-key"] == str(REALISATION.realization_id)


@respx.mock
async def test_an_order_number_cannot_escape_its_path_segment(client: EzwmClient) -> None:
    route = respx.get(f"{BASE}/orders/..%2Fadmin").mock(
        return_value=httpx.Response(200, json={"number": "../admin", "verification": "positive"})
    )
    await client.get_order("../admin")
    assert route.called


@respx.mock
@pytest.mark.parametrize(
    "failure", [httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slow"), httpx.ConnectError("refused")]
)
async def test_timeouts_and_unreachable_servers_are_unavailable(client: EzwmClient, failure: Exception) -> None:
    respx.post(f"{BASE}/orders").mock(side_effect=failure)
    with pytest.raises(EzwmUnavailable):
        await client.verify_order(ORDER)


async def test_a_real_timeout_is_unavailable() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    async with EzwmClient(BASE, timeout=0.01, transport=httpx.MockTransport(slow)) as client:
        with pytest.raises(EzwmUnavailable, match="in time"):
            await client.get_order("1")


@respx.mock
@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_unavailable_with_the_status(client: EzwmClient, status: int) -> None:
    respx.post(f"{BASE}/orders").mock(return_value=httpx.Response(status, text="<html>down</html>"))
    with pytest.raises(EzwmUnavailable) as caught:
        await client.verify_order(ORDER)
    assert caught.value.status == status


@respx.mock
@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(201, text="{not json"),
        httpx.Response(201, text=""),
        httpx.Response(201, json=["a", "list"]),
        httpx.Response(201, json={"number": "1"}),  # no verification
        httpx.Response(201, json={"number": "1", "verification": "maybe"}),
        httpx.Response(201, json={"number": "", "verification": "positive"}),
        httpx.Response(204),
        httpx.Response(302, headers={"location": "https://elsewhere.example"}),
    ],
)
async def test_malformed_answers_are_bad_answers(client: EzwmClient, answer: httpx.Response) -> None:
    respx.post(f"{BASE}/orders").mock(return_value=answer)
    with pytest.raises(EzwmBadAnswer):
        await client.verify_order(ORDER)


@respx.mock
async def test_a_refusal_carries_ezwm_reason_and_status(client: EzwmClient) -> None:
    respx.post(f"{BASE}/orders/9/end").mock(
        return_value=httpx.Response(422, json={"title": "Validation failed", "detail": "months after it registered"})
    )
    with pytest.raises(EzwmRefused) as caught:
        await client.end_order("9", "2030-04")
    assert caught.value.status == 422
    assert caught.value.message == "months after it registered"


@respx.mock
async def test_a_refusal_without_a_readable_reason_still_says_what_was_refused(client: EzwmClient) -> None:
    respx.get(f"{BASE}/orders/9").mock(return_value=httpx.Response(404, text="nope"))
    with pytest.raises(EzwmRefused, match="refused GET"):
        await client.get_order("9")


def test_every_failure_is_an_ezwm_error() -> None:
    assert all(issubclass(kind, EzwmError) for kind in (EzwmUnavailable, EzwmRefused, EzwmBadAnswer))

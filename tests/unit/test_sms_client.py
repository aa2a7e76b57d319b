"""The SMS provider adapter against a mocked provider (respx): which failures are worth a retry."""

from __future__ import annotations

import httpx
import pytest
import respx

from services.notifications.sms import SmsBadAnswer, SmsClient, SmsRefused, SmsUnavailable

URL = "https://sms.example.test/api"


@pytest.fixture
def client() -> SmsClient:
    return SmsClient(URL, "secret-token", timeout=0.5)


@respx.mock
async def test_a_sent_message_carries_the_token_and_the_idempotency_key(client: SmsClient) -> None:
    route = respx.post(f"{URL}/messages").mock(
        return_value=httpx.Response(201, json={"id": "m1", "status": "accepted", "parts": 1})
    )
    accepted = await client.send("+48600100200", "Kod: 1234", sender="Przychodnia", idempotency_key="msg-1")
    assert (accepted.id, accepted.parts) == ("m1", 1)
    sent = route.calls.last.request
    assert sent.headers["authorization"] == "Bearer secret-token"
    assert b'"idempotency_key":"msg-1"' in sent.content.replace(b" ", b"")


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (httpx.Response(503), SmsUnavailable),
        (httpx.Response(500, json={"detail": "boom"}), SmsUnavailable),
        (httpx.Response(429, headers={"Retry-After": "1"}), SmsUnavailable),
        (httpx.Response(422, json={"detail": "bad number", "errors": []}), SmsRefused),
        (httpx.Response(401, json={"detail": "bad token"}), SmsRefused),
        (httpx.Response(201, text="<html>ok</html>"), SmsBadAnswer),
        (httpx.Response(201, json={"id": "m1"}), SmsBadAnswer),
    ],
)
@respx.mock
async def test_failures_are_typed_so_the_sender_knows_whether_to_retry(
    client: SmsClient, answer: httpx.Response, error: type[Exception]
) -> None:
    respx.post(f"{URL}/messages").mock(return_value=answer)
    with pytest.raises(error):
        await client.send("+48600100200", "x", sender="P", idempotency_key="k")


@respx.mock
async def test_a_timeout_or_a_refused_connection_is_worth_a_retry(client: SmsClient) -> None:
    respx.post(f"{URL}/messages").mock(side_effect=[httpx.ReadTimeout("slow"), httpx.ConnectError("down")])
    for _ in range(2):
        with pytest.raises(SmsUnavailable):
            await client.send("+48600100200", "x", sender="P", idempotency_key="k")

"""The sandbox's SMS provider over HTTP: sending, SMS parts, idempotency, authorisation, validation,
the sent-messages view, outages and injected failures."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.sandbox.app import create_app
from services.sandbox.settings import SandboxSettings
from tests.api.test_scheduling_api import assert_problem
from tests.conftest import make_settings, running_client

SMS = "/sandbox/sms"
TOKEN = {"Authorization": "Bearer any-token"}
NUMBER = "+48600100200"
OTHER_NUMBER = "+48511222333"
REMINDER = "Przypomnienie: wizyta u lek. Kowalskiej jutro o 10:30, ul. Źródlana 5. Odwołanie: 22 123 45 67"


def an_sms(**changes: Any) -> dict[str, Any]:
    return {"to": NUMBER, "text": "Wizyta jutro o 10:30", "sender": "Przychodnia", **changes}


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    # No mail catcher: these tests need no SMTP port.
    settings = SandboxSettings.from_settings(make_settings(tmp_path)).model_copy(update={"smtp_enabled": False})
    return create_app(settings)


@pytest.fixture
async def sandbox(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_client(app, base_url="http://sandbox"):
        yield client


async def sent(sandbox: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    answer = await sandbox.post(f"{SMS}/messages", json=an_sms(**changes), headers=TOKEN)
    assert answer.status_code == 201, answer.text
    body: dict[str, Any] = answer.json()
    return body


async def stored(sandbox: httpx.AsyncClient, query: str = "") -> list[dict[str, Any]]:
    answer = await sandbox.get(f"{SMS}/messages{query}")
    assert answer.status_code == 200, answer.text
    messages: list[dict[str, Any]] = answer.json()
    return messages


# ----------------------------------------------------------------------------- sending


async def test_a_message_is_accepted_and_kept_as_sent(sandbox: httpx.AsyncClient) -> None:
    answer = await sent(sandbox)
    assert answer == {"id": answer["id"], "status": "accepted", "parts": 1}
    [message] = await stored(sandbox)
    assert message == {
        "id": answer["id"],
        "to": NUMBER,
        "text": "Wizyta jutro o 10:30",
        "sender": "Przychodnia",
        "parts": 1,
        "received_at": message["received_at"],
    }
    assert message["received_at"].endswith("Z")


async def test_the_sender_is_optional_and_the_text_is_kept_as_written(sandbox: httpx.AsyncClient) -> None:
    body = an_sms(text="  Wizyta jutro\n")
    del body["sender"]
    answer = await sandbox.post(f"{SMS}/messages", json=body, headers=TOKEN)
    assert answer.status_code == 201, answer.text
    [message] = await stored(sandbox)
    assert (message["sender"], message["text"]) == (None, "  Wizyta jutro\n")


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("a" * 160, 1),
        ("a" * 161, 2),
        ("a" * 306, 2),
        ("a" * 307, 3),
        ("a" * 918, 6),
        # The extension table's characters take two septets, and an escaped pair is never split.
        ("€" * 80, 1),
        ("€" * 81, 2),
        ("[" + "a" * 159, 2),
        ("a" * 152 + "€" + "a" * 152, 3),
        # One Polish letter makes the whole text UCS-2.
        ("Zażółć gęślą jaźń", 1),
        ("ą" * 70, 1),
        ("ą" * 71, 2),
        ("ł" * 134, 2),
        ("ę" * 135, 3),
        ("a" * 159 + "ó", 3),
        ("ę" * 918, 14),
        (REMINDER, 2),
        # Outside the BMP a character is two UCS-2 units, and a pair is never split either.
        ("😀" * 35, 1),
        ("😀" * 36, 2),
        ("a" * 66 + "😀" + "a" * 66, 3),
    ],
)
async def test_parts_are_counted_as_the_network_splits_the_text(
    sandbox: httpx.AsyncClient, text: str, parts: int
) -> None:
    answer = await sent(sandbox, text=text)
    assert answer["parts"] == parts
    assert (await stored(sandbox))[0]["parts"] == parts


async def test_a_repeated_idempotency_key_answers_the_first_answer_and_sends_nothing(
    sandbox: httpx.AsyncClient,
) -> None:
    first = await sent(sandbox, idempotency_key="notification-1")
    again = await sandbox.post(f"{SMS}/messages", json=an_sms(idempotency_key="notification-1"), headers=TOKEN)
    assert (again.status_code, again.json()) == (200, first)
    # The key alone decides, like the provider's duplicate check.
    changed = an_sms(idempotency_key="notification-1", text="ą" * 100, to=OTHER_NUMBER)
    also = await sandbox.post(f"{SMS}/messages", json=changed, headers=TOKEN)
    assert (also.status_code, also.json()) == (200, first)
    assert [m["id"] for m in await stored(sandbox)] == [first["id"]]

    other = await sent(sandbox, idempotency_key="notification-2")
    without_key = [await sent(sandbox), await sent(sandbox)]
    ids = [first["id"], other["id"], *(a["id"] for a in without_key)]
    assert len(set(ids)) == 4
    assert [m["id"] for m in await stored(sandbox)] == ids


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer "},
        {"Authorization": "Bearer   "},
        {"Authorization": "Basic dXNlcg=="},
        {"Authorization": "any-token"},
    ],
)
async def test_sending_without_a_bearer_token_is_refused(sandbox: httpx.AsyncClient, headers: dict[str, str]) -> None:
    problem = assert_problem(await sandbox.post(f"{SMS}/messages", json=an_sms(), headers=headers), 401)
    assert "Bearer" in problem["detail"]
    assert await stored(sandbox) == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"to": "600100200"}, "body.to"),
        ({"to": "+4860010020"}, "body.to"),
        ({"to": "+486001002001"}, "body.to"),
        ({"to": "+48 600100200"}, "body.to"),
        ({"to": "+49600100200"}, "body.to"),
        ({"to": None}, "body.to"),
        ({"text": ""}, "body.text"),
        ({"text": "   \n"}, "body.text"),
        ({"text": "a" * 919}, "body.text"),
        ({"text": None}, "body.text"),
        ({"sender": ""}, "body.sender"),
        ({"sender": "Przychodnia1"}, "body.sender"),
        ({"idempotency_key": ""}, "body.idempotency_key"),
        ({"priority": "high"}, "body.priority"),
    ],
)
async def test_bad_messages_are_refused_naming_the_field(
    sandbox: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    assert_problem(await sandbox.post(f"{SMS}/messages", json=an_sms(**changes), headers=TOKEN), 422, field)
    assert await stored(sandbox) == []


async def test_a_missing_field_is_named_too(sandbox: httpx.AsyncClient) -> None:
    assert_problem(await sandbox.post(f"{SMS}/messages", json={"to": NUMBER}, headers=TOKEN), 422, "body.text")
    assert_problem(await sandbox.post(f"{SMS}/messages", json={"text": "x"}, headers=TOKEN), 422, "body.to")


# ----------------------------------------------------------------------------- reading and clearing


async def test_messages_are_read_by_number_and_the_newest_up_to_a_limit(sandbox: httpx.AsyncClient) -> None:
    ids = [
        (await sent(sandbox, to=NUMBER if n % 2 == 0 else OTHER_NUMBER, text=f"wiadomość {n}"))["id"] for n in range(5)
    ]
    assert [m["id"] for m in await stored(sandbox)] == ids
    assert [m["id"] for m in await stored(sandbox, "?limit=2")] == ids[3:]
    mine = await sandbox.get(f"{SMS}/messages", params={"to": NUMBER})
    assert [m["id"] for m in mine.json()] == [ids[0], ids[2], ids[4]]
    assert [m["id"] for m in await stored(sandbox, "?to=%2B48511222333&limit=1")] == [ids[3]]
    # A "+" typed into a URL arrives as a space; the number is found all the same.
    assert [m["id"] for m in await stored(sandbox, "?to=+48511222333")] == [ids[1], ids[3]]
    assert await stored(sandbox, "?to=%2B48999999999") == []
    assert_problem(await sandbox.get(f"{SMS}/messages?limit=0"), 422, "query.limit")


async def test_clearing_forgets_messages_and_idempotency_keys(sandbox: httpx.AsyncClient) -> None:
    first = await sent(sandbox, idempotency_key="k")
    await sent(sandbox)
    cleared = await sandbox.delete(f"{SMS}/messages")
    assert cleared.json() == {"deleted": 2}
    assert await stored(sandbox) == []
    again = await sent(sandbox, idempotency_key="k")
    assert again["id"] != first["id"]


# ----------------------------------------------------------------------------- outages and injected failures


async def test_an_outage_answers_503_to_sending_until_it_ends(sandbox: httpx.AsyncClient) -> None:
    await sent(sandbox)
    assert (await sandbox.post(f"{SMS}/down")).json() == {"up": False, "failing_next": 0}
    assert (await sandbox.get(f"{SMS}/status")).json() == {"up": False, "failing_next": 0}
    problem = assert_problem(await sandbox.post(f"{SMS}/messages", json=an_sms(), headers=TOKEN), 503)
    assert "unavailable" in problem["detail"]
    # The view of sent messages is not the provider's API: it answers during the outage.
    assert len(await stored(sandbox)) == 1
    assert (await sandbox.post(f"{SMS}/up")).json() == {"up": True, "failing_next": 0}
    await sent(sandbox)
    assert len(await stored(sandbox)) == 2


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_the_next_sends_fail_as_asked_then_sending_works(sandbox: httpx.AsyncClient, status: int) -> None:
    assert (await sandbox.post(f"{SMS}/fail-next", json={"count": 2, "status": status})).json() == {
        "count": 2,
        "status": status,
    }
    assert (await sandbox.get(f"{SMS}/status")).json() == {"up": True, "failing_next": 2}
    for _ in range(2):
        answer = await sandbox.post(f"{SMS}/messages", json=an_sms(idempotency_key="n-1"), headers=TOKEN)
        assert_problem(answer, status)
        assert "retry-after" not in answer.headers
    assert await stored(sandbox) == []
    # A failed send did not take the idempotency key: the retry is sent.
    answer = await sandbox.post(f"{SMS}/messages", json=an_sms(idempotency_key="n-1"), headers=TOKEN)
    assert answer.status_code == 201, answer.text
    assert len(await stored(sandbox)) == 1
    assert (await sandbox.get(f"{SMS}/status")).json()["failing_next"] == 0


async def test_a_429_says_when_to_retry(sandbox: httpx.AsyncClient) -> None:
    await sandbox.post(f"{SMS}/fail-next", json={"count": 1, "status": 429})
    answer = await sandbox.post(f"{SMS}/messages", json=an_sms(), headers=TOKEN)
    assert_problem(answer, 429)
    assert answer.headers["retry-after"] == "1"
    await sent(sandbox)


async def test_injected_failures_count_only_sends_that_reach_the_provider(sandbox: httpx.AsyncClient) -> None:
    await sandbox.post(f"{SMS}/fail-next", json={"count": 1, "status": 502})
    assert_problem(await sandbox.post(f"{SMS}/messages", json=an_sms()), 401)
    assert_problem(await sandbox.post(f"{SMS}/messages", json=an_sms(to="123"), headers=TOKEN), 422, "body.to")
    await sandbox.post(f"{SMS}/down")
    assert_problem(await sandbox.post(f"{SMS}/messages", json=an_sms(), headers=TOKEN), 503)
    await sandbox.post(f"{SMS}/up")
    assert_problem(await sandbox.post(f"{SMS}/messages", json=an_sms(), headers=TOKEN), 502)
    await sent(sandbox)


async def test_failures_are_ended_by_count_zero_and_the_default_status_is_503(sandbox: httpx.AsyncClient) -> None:
    assert (await sandbox.post(f"{SMS}/fail-next", json={"count": 3})).json() == {"count": 3, "status": 503}
    assert_problem(await sandbox.post(f"{SMS}/messages", json=an_sms(), headers=TOKEN), 503)
    await sandbox.post(f"{SMS}/fail-next", json={"count": 0})
    await sent(sandbox)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"count": 1, "status": 404}, "body.status"),
        ({"count": -1}, "body.count"),
        ({"status": 500}, "body.count"),
    ],
)
async def test_bad_failure_requests_are_refused_naming_the_field(
    sandbox: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    assert_problem(await sandbox.post(f"{SMS}/fail-next", json=body), 422, field)
    assert (await sandbox.get(f"{SMS}/status")).json()["failing_next"] == 0

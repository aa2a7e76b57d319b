"""The typed clients' shared machinery, through a tiny client of a made-up system."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx
from pydantic import Field, TypeAdapter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.http_client import (
    ErrorKinds,
    HttpClientError,
    JsonAnswer,
    JsonClient,
    JsonRequest,
    problem_code,
    problem_detail,
    segment,
)

BASE = "https://thing.example/api"


class ThingError(HttpClientError):
    pass


class ThingUnavailable(ThingError):
    pass


class ThingRefused(ThingError):
    pass


class ThingNotFound(ThingRefused):
    pass


class ThingBadAnswer(ThingError):
    pass


class NewThing(JsonRequest):
    name: str
    price: Decimal
    on: dt.date


class Thing(JsonAnswer):
    id: str = Field(min_length=1)
    name: str


class ThingClient(JsonClient):
    system = "Thing"
    errors = ErrorKinds(
        unavailable=ThingUnavailable, refused=ThingRefused, not_found=ThingNotFound, bad_answer=ThingBadAnswer
    )

    async def get(self, key: str) -> Thing:
        return await self._call("GET", f"/things/{segment(key)}", Thing)

    async def create(self, thing: NewThing, *, key: str | None = None) -> Thing:
        return await self._call("POST", "/things", Thing, json=thing, idempotency_key=key, expected=(201,))

    async def all(self) -> list[Thing]:
        return self._parse(await self._send("GET", "/things"), TypeAdapter(list[Thing]))

    async def maybe(self, key: str) -> Thing | None:
        answer = await self._send("GET", f"/things/{segment(key)}", answers=(404,))
        return None if answer.status_code == 404 else self._parse(answer, Thing)


THING = {"id": "t-1", "name": "lamp"}
NEW = NewThing(name="lamp", price=Decimal("12.50"), on=dt.date(2030, 3, 1))


def problem(status: int, detail: Any, kind: str = "https://thing.example/problems/no-way") -> httpx.Response:
    body = {"type": kind, "title": "x", "status": status, "detail": detail}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


@pytest.fixture
async def client() -> AsyncIterator[ThingClient]:
    async with ThingClient(BASE, timeout=0.5, headers={"x-api-key": "k"}) as thing:
        yield thing


# ----------------------------------------------------------------------------- what a call sends and answers


@respx.mock
async def test_an_answer_is_parsed_into_its_model_and_extra_fields_are_ignored(client: ThingClient) -> None:
    route = respx.get(f"{BASE}/things/t-1").mock(return_value=httpx.Response(200, json={**THING, "new": 1}))
    assert await client.get("t-1") == Thing(id="t-1", name="lamp")
    sent = route.calls.last.request
    assert (sent.headers["accept"], sent.headers["x-api-key"]) == ("application/json", "k")
    assert "idempotency-key" not in sent.headers


@respx.mock
async def test_a_model_body_is_sent_as_json_with_the_idempotency_key(client: ThingClient) -> None:
    route = respx.post(f"{BASE}/things").mock(return_value=httpx.Response(201, json=THING))
    await client.create(NEW, key="k-1")
    sent = route.calls.last.request
    assert json.loads(sent.content) == {"name": "lamp", "price": "12.50", "on": "2030-03-01"}
    assert sent.headers["idempotency-key"] == "k-1"


@respx.mock
async def test_a_list_is_parsed_through_a_type_adapter(client: ThingClient) -> None:
    respx.get(f"{BASE}/things").mock(return_value=httpx.Response(200, json=[THING, THING]))
    assert [t.id for t in await client.all()] == ["t-1", "t-1"]


@respx.mock
async def test_a_status_the_call_gives_a_meaning_is_answered_raw(client: ThingClient) -> None:
    respx.get(f"{BASE}/things/gone").mock(return_value=problem(404, "no such thing"))
    assert await client.maybe("gone") is None


@respx.mock
async def test_a_key_cannot_escape_its_path_segment(client: ThingClient) -> None:
    route = respx.get(f"{BASE}/things/..%2Fadmin%3Fx").mock(return_value=httpx.Response(200, json=THING))
    await client.get("../admin?x")
    assert route.called
    assert segment("a/b c") == "a%2Fb%20c"


async def test_leaving_the_context_closes_the_connection_pool() -> None:
    async with ThingClient(BASE) as client:
        pass
    assert client._http.is_closed


# ----------------------------------------------------------------------------- no usable answer


@respx.mock
@pytest.mark.parametrize("failure", [httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slow"), httpx.PoolTimeout("x")])
async def test_a_timeout_is_unavailable(client: ThingClient, failure: Exception) -> None:
    respx.get(f"{BASE}/things/t-1").mock(side_effect=failure)
    with pytest.raises(ThingUnavailable, match="Thing did not answer GET /things/t-1 in time") as caught:
        await client.get("t-1")
    assert caught.value.status is None


@respx.mock
@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"), httpx.RemoteProtocolError("cut off")])
async def test_an_unreachable_system_is_unavailable(client: ThingClient, failure: Exception) -> None:
    respx.get(f"{BASE}/things/t-1").mock(side_effect=failure)
    with pytest.raises(ThingUnavailable, match=f"Thing is unreachable \\({type(failure).__name__}\\)"):
        await client.get("t-1")


@respx.mock
@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_server_error_is_unavailable_with_its_status(client: ThingClient, status: int) -> None:
    respx.get(f"{BASE}/things/t-1").mock(return_value=problem(status, "down"))
    with pytest.raises(ThingUnavailable, match=f"failed on GET /api/things/t-1 with {status}") as caught:
        await client.get("t-1")
    assert caught.value.status == status


@respx.mock
async def test_a_server_error_is_unavailable_even_where_the_call_expects_other_statuses(client: ThingClient) -> None:
    respx.get(f"{BASE}/things/t-1").mock(return_value=httpx.Response(503))
    with pytest.raises(ThingUnavailable):
        await client.maybe("t-1")


async def test_an_in_process_app_that_crashes_is_unavailable() -> None:
    async def crash(request: Request) -> Response:
        raise RuntimeError("boom")

    app = Starlette(routes=[Route("/api/things/t-1", crash)])
    async with ThingClient("http://thing.embedded/api", transport=httpx.ASGITransport(app=app)) as client:
        with pytest.raises(ThingUnavailable, match="RuntimeError"):
            await client.get("t-1")


# ----------------------------------------------------------------------------- refusals


@respx.mock
async def test_a_404_is_the_not_found_kind_of_refusal_with_the_problems_detail(client: ThingClient) -> None:
    respx.get(f"{BASE}/things/t-9").mock(return_value=problem(404, "no thing t-9"))
    with pytest.raises(ThingNotFound) as caught:
        await client.get("t-9")
    assert isinstance(caught.value, ThingRefused)
    assert (caught.value.message, caught.value.status, caught.value.code) == ("no thing t-9", 404, "no-way")
    assert str(caught.value) == "no thing t-9"


@respx.mock
@pytest.mark.parametrize("status", [400, 403, 409, 422])
async def test_another_4xx_is_refused_with_the_problems_detail_and_code(client: ThingClient, status: int) -> None:
    respx.post(f"{BASE}/things").mock(return_value=problem(status, "a lamp costs more", "urn:x:problems/too-cheap"))
    with pytest.raises(ThingRefused) as caught:
        await client.create(NEW)
    assert not isinstance(caught.value, ThingNotFound)
    assert (caught.value.message, caught.value.status, caught.value.code) == ("a lamp costs more", status, "too-cheap")


@respx.mock
@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(422, text="<html>nope</html>"),
        httpx.Response(422, json=["not", "a", "problem"]),
        httpx.Response(422, json={"detail": ""}),
        httpx.Response(422, json={"detail": [{"loc": ["body"], "msg": "a list, as FastAPI's own"}]}),
    ],
)
async def test_a_refusal_without_a_readable_detail_still_says_what_was_refused(
    client: ThingClient, answer: httpx.Response
) -> None:
    respx.post(f"{BASE}/things").mock(return_value=answer)
    with pytest.raises(ThingRefused) as caught:
        await client.create(NEW)
    refused = caught.value
    assert (refused.message, refused.status, refused.code) == ("Thing refused POST /api/things", 422, None)


@respx.mock
async def test_a_huge_detail_is_cut(client: ThingClient) -> None:
    respx.post(f"{BASE}/things").mock(return_value=problem(422, "x" * 5000))
    with pytest.raises(ThingRefused) as caught:
        await client.create(NEW)
    assert caught.value.message == "x" * 1000


def test_a_problems_code_is_the_last_segment_of_its_type() -> None:
    request = httpx.Request("GET", BASE)
    assert problem_code(httpx.Response(409, json={"type": "https://e.example/problems/slot-taken"})) == "slot-taken"
    assert problem_code(httpx.Response(409, json={"type": "https://e.example/problems/"})) is None
    assert problem_code(httpx.Response(409, json={"type": 7})) is None
    assert problem_code(httpx.Response(409, content=b"\xff\xfe", request=request)) is None
    assert problem_detail(httpx.Response(409, content=b"\xff\xfe", request=request)) is None


# ----------------------------------------------------------------------------- bad answers


@respx.mock
@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html><body>maintenance</body></html>"),
        httpx.Response(200, text=""),
        httpx.Response(200, json=["a", "list"]),
        httpx.Response(200, json={"id": "t-1"}),
        httpx.Response(200, json={"id": "", "name": "lamp"}),
    ],
)
async def test_an_answer_that_is_not_json_or_of_the_wrong_shape_is_a_bad_answer(
    client: ThingClient, answer: httpx.Response
) -> None:
    respx.get(f"{BASE}/things/t-1").mock(return_value=answer)
    with pytest.raises(ThingBadAnswer, match="Thing's answer to GET /api/things/t-1 is not valid"):
        await client.get("t-1")


@respx.mock
async def test_a_bad_answer_names_the_first_wrong_field(client: ThingClient) -> None:
    respx.get(f"{BASE}/things").mock(return_value=httpx.Response(200, json=[THING, {"id": "t-2"}]))
    with pytest.raises(ThingBadAnswer, match=r"not valid: 1\.name: Field required"):
        await client.all()


@respx.mock
@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(202, json=THING),
        httpx.Response(204),
        httpx.Response(304),
        httpx.Response(302, headers={"location": "https://login.example"}),
    ],
)
async def test_an_unexpected_status_is_a_bad_answer(client: ThingClient, answer: httpx.Response) -> None:
    respx.get(f"{BASE}/things/t-1").mock(return_value=answer)
    with pytest.raises(ThingBadAnswer, match=f"answered GET /api/things/t-1 with an unexpected {answer.status_code}"):
        await client.get("t-1")


@respx.mock
async def test_a_call_naming_its_statuses_accepts_only_those(client: ThingClient) -> None:
    route = respx.post(f"{BASE}/things").mock(
        side_effect=[httpx.Response(200, json=THING), httpx.Response(201, json=THING)]
    )
    with pytest.raises(ThingBadAnswer, match="unexpected 200") as caught:
        await client.create(NEW)
    assert caught.value.status == 200
    assert (await client.create(NEW)).id == "t-1"
    assert route.call_count == 2


def test_every_kind_is_the_systems_error_and_a_client_error() -> None:
    for kind in (ThingUnavailable, ThingRefused, ThingNotFound, ThingBadAnswer):
        assert issubclass(kind, ThingError)
        assert issubclass(kind, HttpClientError)

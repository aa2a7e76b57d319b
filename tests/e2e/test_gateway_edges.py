"""The gateway's own answers: dev auth switched off, an upstream that never answers, an unknown route."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.responses import PlainTextResponse
from starlette.types import Message, Receive, Scope, Send

from gateway.app import create_app
from gateway.registry import SERVICES
from gateway.run import refuse_dev_auth_beyond_loopback
from shared.middleware import BodyLimitMiddleware
from shared.settings import GatewaySettings
from tests.conftest import make_gateway_settings, running_client


async def _token(client: httpx.AsyncClient, **claims: str) -> dict[str, str]:
    answer = await client.post("/api/v1/auth/dev-token", json=claims)
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


async def test_the_dev_token_endpoint_answers_404_when_dev_auth_is_off(tmp_path: Path) -> None:
    app = create_app(make_gateway_settings(tmp_path, dev_auth=False))
    async for client in running_client(app):
        answer = await client.post("/api/v1/auth/dev-token", json={"sub": "x", "role": "registrar", "facility_id": "f"})
        assert answer.status_code == 404
        assert answer.headers["content-type"] == "application/problem+json"
        assert "/api/v1/auth/dev-token" not in (await client.get("/openapi.json")).json()["paths"]


@pytest.fixture
async def silent_upstream() -> AsyncIterator[str]:
    """A server that accepts connections and never answers: a service hung on something."""

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)

    server = await asyncio.start_server(hang, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()


async def test_a_service_that_does_not_answer_gives_504_problem_json(tmp_path: Path, silent_upstream: str) -> None:
    settings = make_gateway_settings(tmp_path, scheduling_url=silent_upstream, upstream_timeout_seconds=0.3)
    async for client in running_client(create_app(settings)):
        answer = await client.get("/api/v1/scheduling/slots")
        assert answer.status_code == 504
        assert answer.headers["content-type"] == "application/problem+json"
        assert "scheduling" in answer.json()["detail"]
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["services"]["scheduling"]["status"] == "unreachable"


async def test_a_service_that_is_down_gives_502_problem_json(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = make_gateway_settings(tmp_path, scheduling_url=f"http://127.0.0.1:{port}")
    async for client in running_client(create_app(settings)):
        answer = await client.get("/api/v1/scheduling/slots")
        assert answer.status_code == 502
        assert answer.json()["status"] == 502
        # The document does not silently drop the service: it says scheduling is missing, and why.
        spec = (await client.get("/openapi.json")).json()
        assert spec["x-unavailable-services"] == ["scheduling"]
        assert "**scheduling**" in spec["info"]["description"]
        tags = {t["name"]: t["description"] for t in spec["tags"]}
        assert tags["scheduling"].startswith("UNAVAILABLE")
        assert not any(p.startswith("/api/v1/scheduling/") for p in spec["paths"])
        assert any(p.startswith("/api/v1/pharmacy/") for p in spec["paths"])
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["openapi"] == {"missing": ["scheduling"]}


async def test_an_unknown_service_or_endpoint_is_404_problem_json(gateway_client: httpx.AsyncClient) -> None:
    for path in ("/api/v1/nosuch/things", "/api/v1/scheduling/nosuch"):
        answer = await gateway_client.get(path)
        assert answer.status_code == 404, path
        assert answer.headers["content-type"] == "application/problem+json"
    wrong_method = await gateway_client.delete("/api/v1/scheduling/locations")
    assert wrong_method.status_code == 405


# ----------------------------------------------------------------------------- outside a developer's laptop

SECRET = "a-real-secret-for-this-deployment-0123456789"


async def test_without_dev_auth_the_sandbox_is_not_reachable_through_the_gateway(tmp_path: Path) -> None:
    # docker compose: the sandbox still stands in for the national systems, for the services only.
    app = create_app(make_gateway_settings(tmp_path, environment="development", dev_auth=False, jwt_secret=SECRET))
    async for client in running_client(app):
        for method, path in [("GET", "/sandbox/mail/messages"), ("POST", "/sandbox/p1/down"), ("GET", "/sandbox/")]:
            answer = await client.request(method, path)
            assert answer.status_code == 404, (path, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
        assert (await client.post("/api/v1/auth/dev-token", json={})).status_code == 404
        ready = await client.get("/readyz")  # the services' sandbox is still there, and ready
        assert ready.json()["services"]["sandbox"]["status"] == "ready"


async def test_with_dev_auth_the_sandbox_is_forwarded(gateway_client: httpx.AsyncClient) -> None:
    answer = await gateway_client.get("/sandbox/mail/messages")
    assert answer.status_code == 200, answer.text


async def test_in_production_neither_the_dev_token_endpoint_nor_the_sandbox_exist(tmp_path: Path) -> None:
    with socket.socket() as s:  # every service remote, and down: the gateway alone is what is tested
        s.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{s.getsockname()[1]}"
    urls = {f"{name}_url": nowhere for name in SERVICES}
    settings = make_gateway_settings(tmp_path, environment="production", dev_auth=False, jwt_secret=SECRET, **urls)
    async for client in running_client(create_app(settings)):
        token = await client.post("/api/v1/auth/dev-token", json={"sub": "x", "role": "operator"})
        assert token.status_code == 404
        assert (await client.get("/sandbox/mail/messages")).status_code == 404
        paths = (await client.get("/openapi.json")).json()["paths"]
        assert not [p for p in paths if p.startswith(("/sandbox", "/api/v1/auth"))]


async def test_headers_over_the_limit_are_431_problem_json(gateway_client: httpx.AsyncClient) -> None:
    limit = 16 * 1024
    huge = await gateway_client.get("/api/v1/scheduling/slots", headers={"X-Padding": "a" * limit})
    assert huge.status_code == 431
    assert huge.headers["content-type"] == "application/problem+json"
    assert huge.json()["status"] == 431
    assert "x-request-id" in huge.headers
    many = await gateway_client.get("/healthz", headers={f"X-Filler-{n}": "b" * 100 for n in range(200)})
    assert many.status_code == 431
    # A large identity-provider token (several kilobytes) is nowhere near it.
    fine = await gateway_client.get("/healthz", headers={"X-Padding": "a" * 8 * 1024})
    assert fine.status_code == 200


async def test_a_content_length_of_non_ascii_digits_is_no_500() -> None:
    # latin-1's '²' passes str.isdigit(), but int() refuses it.
    reached: list[bool] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(True)
        await PlainTextResponse("ok")(scope, receive, send)

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/x", "headers": [(b"content-length", "²".encode("latin-1"))]}
    await BodyLimitMiddleware(app, max_bytes=1024)(scope, receive, send)
    assert reached and sent[0]["status"] == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "clinic-server"])
def test_make_run_refuses_dev_auth_on_an_address_others_reach(tmp_path: Path, host: str) -> None:
    with pytest.raises(SystemExit, match="DEV_AUTH is on"):
        refuse_dev_auth_beyond_loopback(host, make_gateway_settings(tmp_path))


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_make_run_keeps_dev_auth_on_loopback(tmp_path: Path, host: str) -> None:
    refuse_dev_auth_beyond_loopback(host, make_gateway_settings(tmp_path))
    without = make_gateway_settings(tmp_path, environment="development", dev_auth=False, jwt_secret=SECRET)
    refuse_dev_auth_beyond_loopback("0.0.0.0", without)


async def test_cors_answers_an_allowed_origins_preflight_and_real_request_and_refuses_another(
    tmp_path: Path,
) -> None:
    """Issue 21.4: a browser front-end on another origin. The preflight carries no token, so it is
    answered before auth; an origin not in CORS_ORIGINS gets no allow header."""
    desk = "http://localhost:5173"
    app = create_app(make_gateway_settings(tmp_path, cors_origins=[desk]))
    async for client in running_client(app):
        asking = {
            "Origin": desk,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        }
        preflight = await client.options("/api/v1/scheduling/bookings", headers=asking)
        assert preflight.status_code == 200, preflight.text
        assert preflight.headers["access-control-allow-origin"] == desk
        assert "POST" in preflight.headers["access-control-allow-methods"]
        allowed = {h.strip() for h in preflight.headers["access-control-allow-headers"].split(",")}
        assert {"authorization", "content-type", "idempotency-key"} <= allowed

        stranger = await client.options(
            "/api/v1/scheduling/bookings", headers={**asking, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in stranger.headers
        assert stranger.status_code == 400
        assert stranger.headers["content-type"] == "application/problem+json"
        assert "origin" in stranger.json()["detail"]

        token = await _token(client, sub="desk", role="registrar", facility_id="f")
        real = await client.get("/api/v1/scheduling/locations", headers={**token, "Origin": desk})
        assert real.status_code == 200, real.text
        assert real.headers["access-control-allow-origin"] == desk
        assert "x-request-id" in real.headers["access-control-expose-headers"]
        # An error answer is readable by the front-end too (else the browser shows only "CORS error").
        refused = await client.get("/api/v1/scheduling/locations", headers={"Origin": desk})
        assert refused.status_code == 401
        assert refused.headers["access-control-allow-origin"] == desk
        elsewhere = await client.get(
            "/api/v1/scheduling/locations", headers={**token, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in elsewhere.headers


def test_cors_origins_default_to_local_dev_servers_in_development_and_none_in_production(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    development = GatewaySettings(environment="development").allowed_cors_origins
    assert {"http://localhost:3000", "http://localhost:5173", "http://127.0.0.1:8080"} <= set(development)
    secret = "a-real-secret-for-this-deployment-0123456789"
    production = GatewaySettings(environment="production", dev_auth=False, jwt_secret=secret)
    assert production.allowed_cors_origins == []
    assert GatewaySettings(environment="test").allowed_cors_origins == []
    monkeypatch.setenv("CORS_ORIGINS", "https://desk.clinic.pl, https://portal.clinic.pl/")
    assert GatewaySettings(environment="production", dev_auth=False, jwt_secret=secret).allowed_cors_origins == [
        "https://desk.clinic.pl",
        "https://portal.clinic.pl",
    ]
    monkeypatch.setenv("CORS_ORIGINS", '["https://desk.clinic.pl"]')
    assert GatewaySettings().allowed_cors_origins == ["https://desk.clinic.pl"]
    monkeypatch.setenv("CORS_ORIGINS", "")
    assert GatewaySettings(environment="development").allowed_cors_origins == []  # set empty: none at all

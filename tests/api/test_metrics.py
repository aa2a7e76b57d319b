"""``GET /metrics``: request counts by route template, outbox backlog, dead letters, readiness details,
the gateway's forwarding per upstream, and one registry per app."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from gateway.app import create_app as create_gateway
from services.scheduling.app import create_app
from services.scheduling.models import Outbox
from shared.bus import InProcessBus
from shared.events import Envelope
from shared.settings import Settings
from tests.api.test_scheduling_api import API, Clinic
from tests.api.test_scheduling_events import one_slot_day
from tests.conftest import PESEL, make_gateway_settings, make_settings, running_client

Headers = dict[str, str]
BOOKING = f"{API}/bookings/{{booking_id}}"


class Scrape:
    """One parsed ``/metrics`` answer."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {family.name: family for family in text_string_to_metric_families(text)}

    def value(self, sample: str, **labels: str) -> float:
        """The sample with exactly these labels; 0 when absent (a counter not yet touched)."""
        for family in self.families.values():
            for found in family.samples:
                if found.name == sample and found.labels == labels:
                    return float(found.value)
        return 0.0

    def labelled(self, sample: str, label: str) -> set[str]:
        return {s.labels[label] for f in self.families.values() for s in f.samples if s.name == sample}

    def requests(self, method: str, route: str, status: int) -> float:
        return self.value("http_requests_total", method=method, route=route, status=str(status))


async def scrape(client: httpx.AsyncClient) -> Scrape:
    answer = await client.get("/metrics")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(answer.text)


@asynccontextmanager
async def serving(service: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_client(service):
        yield client


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    service = create_app(settings)
    async for client in running_client(service):
        yield service, client


async def test_requests_are_counted_by_route_template_and_status(
    app: tuple[FastAPI, httpx.AsyncClient], auth: Callable[..., Headers]
) -> None:
    _, client = app
    desk = auth("registrar")
    before = await scrape(client)
    for _ in range(3):
        assert (await client.get(f"{API}/slots", headers=desk)).status_code == 200
    assert (await client.get(f"{API}/slots")).status_code == 401
    missing = uuid.uuid4()
    assert (await client.get(f"{API}/bookings/{missing}", headers=desk)).status_code == 404
    assert (await client.get("/no/such/path")).status_code == 404

    after = await scrape(client)
    assert after.requests("GET", f"{API}/slots", 200) - before.requests("GET", f"{API}/slots", 200) == 3
    assert after.requests("GET", f"{API}/slots", 401) - before.requests("GET", f"{API}/slots", 401) == 1
    assert after.requests("GET", BOOKING, 404) == 1
    assert after.requests("GET", "unmatched", 404) == 1
    assert after.requests("GET", "/metrics", 200) == 1  # the first scrape; this one is counted when done
    assert after.value("http_request_duration_seconds_count", method="GET", route=f"{API}/slots") == 4
    assert str(missing) not in after.text
    assert "/no/such/path" not in after.text


async def test_a_method_the_route_does_not_take_is_counted_under_its_template(
    app: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    _, client = app
    assert (await client.delete(f"{API}/slots")).status_code == 405
    assert (await scrape(client)).requests("DELETE", f"{API}/slots", 405) == 1


async def test_the_outbox_backlog_is_the_unpublished_rows(
    app: tuple[FastAPI, httpx.AsyncClient], auth: Callable[..., Headers]
) -> None:
    service, client = app
    ctx = service.state.ctx
    await ctx.relay.stop()  # rows stay unpublished until the test publishes them
    clinic = Clinic(client, auth)
    slots = await one_slot_day(clinic)
    booked = await client.post(
        f"{API}/bookings",
        json={"slot_id": slots[0]["id"], "patient_pesel": PESEL, "source": "desk"},
        headers=clinic.desk,
    )
    assert booked.status_code == 201, booked.text
    async with ctx.sessions() as session:
        unpublished = await session.scalar(
            sa.select(sa.func.count()).select_from(Outbox).where(Outbox.published_at.is_(None))
        )
    assert unpublished and unpublished >= 1

    assert (await scrape(client)).value("outbox_backlog") == unpublished
    while await ctx.relay.publish_pending():
        pass
    assert (await scrape(client)).value("outbox_backlog") == 0


async def test_a_message_parked_after_its_last_attempt_is_a_dead_letter(tmp_path: Path) -> None:
    service = create_app(make_settings(tmp_path, bus_max_attempts=1))
    async for client in running_client(service):
        bus = service.state.ctx.bus
        assert isinstance(bus, InProcessBus)

        async def always_fails(_envelope: Envelope) -> None:
            raise RuntimeError("this handler never succeeds")

        bus.subscribe("test.always-fails", ["test.#"], always_fails)
        assert (await scrape(client)).value("bus_dead_letters_total", subscription="test.always-fails") == 0
        await bus.publish(Envelope(type="test.metrics.happened", version=1, facility_id=None, payload={}))
        await bus.drain()

        found = await scrape(client)
        assert found.value("bus_dead_letters_total", subscription="test.always-fails") == 1
        assert found.value("bus_dead_letters_total", subscription="scheduling-cer") == 0


async def test_numeric_readiness_details_are_gauges(app: tuple[FastAPI, httpx.AsyncClient]) -> None:
    service, client = app

    async def details(_ctx: Any) -> dict[str, Any]:
        return {"cer_backlog": 3, "cer_oldest_pending_seconds": 12.5, "idle": None, "on": True, "mode": "x"}

    service.state.ctx.extras["readiness_details"] = details
    found = await scrape(client)
    assert found.value("queue_depth", name="cer_backlog") == 3
    assert found.value("queue_depth", name="cer_oldest_pending_seconds") == 12.5
    assert found.labelled("queue_depth", "name") == {"cer_backlog", "cer_oldest_pending_seconds"}


async def test_two_apps_in_one_process_keep_their_own_figures(tmp_path: Path, auth: Callable[..., Headers]) -> None:
    desk = auth("registrar")
    async with AsyncExitStack() as stack:
        clients = []
        for name in ("one", "two"):
            (tmp_path / name).mkdir()
            clients.append(await stack.enter_async_context(serving(create_app(make_settings(tmp_path / name)))))
        first, second = clients
        for _ in range(3):
            await first.get(f"{API}/slots", headers=desk)
        await second.get(f"{API}/slots", headers=desk)

        assert (await scrape(first)).requests("GET", f"{API}/slots", 200) == 3
        assert (await scrape(second)).requests("GET", f"{API}/slots", 200) == 1


async def test_the_gateway_counts_what_it_forwarded_per_upstream(
    gateway_client: httpx.AsyncClient, auth: Callable[..., Headers]
) -> None:
    desk = auth("registrar")
    for _ in range(2):
        assert (await gateway_client.get(f"{API}/slots", headers=desk)).status_code == 200
    assert (await gateway_client.get("/api/v1/pharmacy/no-such-endpoint", headers=desk)).status_code == 404
    assert (await gateway_client.get("/api/v1/nosuchservice/x", headers=desk)).status_code == 404
    missing = uuid.uuid4()
    assert (await gateway_client.get(f"{API}/bookings/{missing}", headers=desk)).status_code == 404

    found = await scrape(gateway_client)
    forwarded = "gateway_upstream_requests_total"
    assert found.value(forwarded, upstream="scheduling", method="GET", status="200") == 2
    assert found.value(forwarded, upstream="scheduling", method="GET", status="404") == 1
    # Refused by the gateway itself (no such endpoint, no such service): never forwarded.
    assert found.labelled(forwarded, "upstream") == {"scheduling"}
    assert found.value("gateway_upstream_request_duration_seconds_count", upstream="scheduling") == 3
    assert found.requests("GET", "/api/v1/{service}/{path:path}", 200) == 2
    assert found.requests("GET", "/api/v1/{service}/{path:path}", 404) == 3
    assert str(missing) not in found.text
    assert "nosuchservice" not in found.text
    assert "outbox_backlog" not in found.families  # the services' own figures are theirs


async def test_on_the_bus_the_embedded_services_share_each_reports_its_own_subscriptions(tmp_path: Path) -> None:
    gateway = create_gateway(make_gateway_settings(tmp_path))
    async with serving(gateway):
        upstreams = gateway.state.gateway.upstreams
        for service, subscriptions in (
            ("scheduling", {"scheduling-cer", "scheduling-cer-coverage"}),
            ("notifications", {"notifications"}),
        ):
            transport = httpx.ASGITransport(app=upstreams[service].app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                assert (await scrape(client)).labelled("bus_dead_letters_total", "subscription") == subscriptions

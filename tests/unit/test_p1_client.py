"""The P1 adapter's client: what it sends, and that every kind of failure ends as a typed error."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from services.integration.p1 import (
    P1BadAnswer,
    P1Client,
    P1Error,
    P1NotFound,
    P1Refused,
    P1Unavailable,
    PackageRegistration,
    PrescriptionToRegister,
    RealisationReport,
)

BASE = "https://p1.example/api/v2"
PESEL = "44051401359"
KEY = "1" * 44
PACKAGE_KEY = "2" * 44
REALISATION = RealisationReport(
    realisation_id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
    pharmacy_id="pharmacy-1",
    packages=2,
    realised_on=dt.date(2030, 3, 5),
)
PACKAGE = PackageRegistration(
    package_key=PACKAGE_KEY,
    access_code="4821",
    patient_pesel=PESEL,
    facility_id="clinic-a",
    issuer_npwz="5425740",
    issued_on=dt.date(2030, 3, 1),
    prescriptions=[
        PrescriptionToRegister(
            key=KEY,
            drug="Metformax 500 mg",
            packages=3,
            units_per_package=Decimal("60"),
            daily_dose_units=Decimal("1.50"),
            kind="Rp",
            valid_from=dt.date(2030, 3, 1),
            valid_until=dt.date(2031, 2, 28),
        )
    ],
)
STATUS = {"facility_id": "clinic-a", "status": "pending", "requested_at": "2030-03-01T09:00:00Z", "enabled_at": None}
VIEW: dict[str, Any] = {
    "key": KEY,
    "package_key": PACKAGE_KEY,
    "drug": "Metformax 500 mg",
    "packages": 3,
    "units_per_package": "60",
    "daily_dose_units": "1.50",
    "kind": "Rp",
    "valid_from": "2030-03-01",
    "valid_until": "2031-02-28",
    "issued_on": "2030-03-01",
    "issuer_npwz": "5425740",
    "facility_id": "clinic-a",
    "status": "issued",
    "packages_dispensed": 0,
    "pharmacy_id": None,
    "realisations": [],
}


def an_item(sequence: int, **changes: Any) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "sequence": sequence,
        "facility_id": "clinic-a",
        "patient_pesel": PESEL,
        "doctor_npwz": "5425740",
        "drug": "Metformax",
        "packages": 1,
        "comment": None,
        "submitted_at": "2030-03-01T09:00:00Z",
        **changes,
    }


@pytest.fixture
async def client() -> AsyncIterator[P1Client]:
    async with P1Client(BASE, timeout=0.5) as p1:
        yield p1


def sent_json(route: respx.Route) -> Any:
    return json.loads(route.calls.last.request.content)


# ----------------------------------------------------------------------------- what each method sends


@respx.mock
async def test_ikp_enable_posts_the_facility_and_accepts_a_pending_answer(client: P1Client) -> None:
    route = respx.post(f"{BASE}/ikp/enable").mock(return_value=httpx.Response(202, json=STATUS))
    status = await client.ikp_enable("clinic-a", "0010")
    assert (status.status, status.requested_at) == ("pending", dt.datetime(2030, 3, 1, 9, tzinfo=dt.UTC))
    assert status.enabled_at is None
    assert sent_json(route) == {"facility_id": "clinic-a", "department_code": "0010"}


@respx.mock
async def test_ikp_disable_and_status(client: P1Client) -> None:
    off = {**STATUS, "status": "off", "requested_at": None}
    disable = respx.post(f"{BASE}/ikp/disable").mock(return_value=httpx.Response(200, json=off))
    respx.get(f"{BASE}/ikp/status/clinic%2Fa").mock(
        return_value=httpx.Response(200, json={**STATUS, "status": "enabled", "extra": "ignored"})
    )
    assert (await client.ikp_disable("clinic-a")).status == "off"
    assert sent_json(disable) == {"facility_id": "clinic-a"}
    assert (await client.ikp_status("clinic/a")).status == "enabled"


@respx.mock
async def test_the_poll_sends_its_cursor_and_returns_the_batch(client: P1Client) -> None:
    route = respx.get(f"{BASE}/ikp/requests").mock(
        return_value=httpx.Response(200, json={"items": [an_item(8), an_item(11)], "last_sequence": 11})
    )
    batch = await client.poll_ikp_requests("clinic-a", after=7, limit=2)
    assert [item.sequence for item in batch.items] == [8, 11]
    assert batch.last_sequence == 11
    assert dict(route.calls.last.request.url.params) == {"facility_id": "clinic-a", "after": "7", "limit": "2"}
    assert PESEL not in repr(batch)


@respx.mock
async def test_register_package_sends_decimals_as_strings_and_the_package_key_as_idempotency_key(
    client: P1Client,
) -> None:
    route = respx.post(f"{BASE}/prescriptions").mock(
        return_value=httpx.Response(201, json={"package_key": PACKAGE_KEY, "status": "registered"})
    )
    answer = await client.register_package(PACKAGE)
    assert answer.package_key == PACKAGE_KEY
    body = sent_json(route)
    assert (body["access_code"], body["patient_pesel"], body["issued_on"]) == ("4821", PESEL, "2030-03-01")
    line = body["prescriptions"][0]
    assert (line["units_per_package"], line["daily_dose_units"], line["valid_until"]) == ("60", "1.50", "2031-02-28")
    assert route.calls.last.request.headers["idempotency-key"] == PACKAGE_KEY
    assert "4821" not in repr(PACKAGE) and PESEL not in repr(PACKAGE)


@respx.mock
async def test_registering_again_is_answered_200_and_still_a_success(client: P1Client) -> None:
    respx.post(f"{BASE}/prescriptions").mock(
        return_value=httpx.Response(200, json={"package_key": PACKAGE_KEY, "status": "registered"})
    )
    assert (await client.register_package(PACKAGE)).status == "registered"


@respx.mock
async def test_prescription_reads_the_view(client: P1Client) -> None:
    respx.get(f"{BASE}/prescriptions/{KEY}").mock(return_value=httpx.Response(200, json=VIEW))
    prescription = await client.prescription(KEY)
    assert (prescription.key, prescription.units_per_package, prescription.status) == (KEY, Decimal("60"), "issued")


@respx.mock
async def test_lookup_sends_code_and_pesel_in_the_body_never_the_url(client: P1Client) -> None:
    route = respx.post(f"{BASE}/packages/lookup").mock(
        return_value=httpx.Response(200, json={"package_key": PACKAGE_KEY, "prescriptions": [VIEW]})
    )
    package = await client.lookup_package("4821", PESEL)
    assert [p.key for p in package.prescriptions] == [KEY]
    assert sent_json(route) == {"access_code": "4821", "pesel": PESEL}
    url = str(route.calls.last.request.url)
    assert "4821" not in url and PESEL not in url


@respx.mock
async def test_record_realisation_posts_the_report_with_its_id_as_idempotency_key(client: P1Client) -> None:
    realised = {
        **VIEW,
        "status": "partly_realised",
        "packages_dispensed": 2,
        "pharmacy_id": "pharmacy-1",
        "realisations": [
            {
                "realisation_id": str(REALISATION.realisation_id),
                "pharmacy_id": "pharmacy-1",
                "packages": 2,
                "realised_on": "2030-03-05",
                "outage": False,
            }
        ],
    }
    route = respx.post(f"{BASE}/prescriptions/{KEY}/realisations").mock(return_value=httpx.Response(201, json=realised))
    prescription = await client.record_realisation(KEY, REALISATION)
    assert (prescription.status, prescription.pharmacy_id) == ("partly_realised", "pharmacy-1")
    assert prescription.realisations[0].realisation_id == REALISATION.realisation_id
    assert sent_json(route) == {
        "realisation_id": str(REALISATION.realisation_id),
        "pharmacy_id": "pharmacy-1",
        "packages": 2,
        "realised_on": "2030-03-05",
        "outage": False,
    }
    assert route.calls.last.request.headers["idempotency-key"] == str(REALISATION.realisation_id)


@respx.mock
async def test_cancel_posts_to_the_prescriptions_cancel_path(client: P1Client) -> None:
    route = respx.post(f"{BASE}/prescriptions/{KEY}/cancel").mock(
        return_value=httpx.Response(200, json={**VIEW, "status": "cancelled"})
    )
    assert (await client.cancel_prescription(KEY)).status == "cancelled"
    assert route.called


@respx.mock
async def test_a_key_cannot_escape_its_path_segment(client: P1Client) -> None:
    route = respx.get(f"{BASE}/prescriptions/..%2Fadmin").mock(return_value=httpx.Response(200, json=VIEW))
    await client.prescription("../admin")
    assert route.called


# ----------------------------------------------------------------------------- failures

Call = Callable[[P1Client], Awaitable[object]]
CALLS: dict[str, tuple[str, str, Call]] = {
    "ikp_enable": ("POST", "/ikp/enable", lambda c: c.ikp_enable("clinic-a")),
    "poll": ("GET", "/ikp/requests", lambda c: c.poll_ikp_requests("clinic-a", after=0)),
    "register": ("POST", "/prescriptions", lambda c: c.register_package(PACKAGE)),
    "realise": ("POST", f"/prescriptions/{KEY}/realisations", lambda c: c.record_realisation(KEY, REALISATION)),
}


@respx.mock
@pytest.mark.parametrize("call", CALLS.values(), ids=CALLS.keys())
@pytest.mark.parametrize(
    "failure", [httpx.ConnectTimeout("slow"), httpx.ReadTimeout("slow"), httpx.ConnectError("refused")]
)
async def test_timeouts_and_unreachable_servers_are_unavailable(
    client: P1Client, call: tuple[str, str, Call], failure: Exception
) -> None:
    method, path, invoke = call
    respx.route(method=method, url=f"{BASE}{path}").mock(side_effect=failure)
    with pytest.raises(P1Unavailable):
        await invoke(client)


async def test_a_real_timeout_is_unavailable() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    async with P1Client(BASE, timeout=0.01, transport=httpx.MockTransport(slow)) as client:
        with pytest.raises(P1Unavailable, match="in time"):
            await client.prescription(KEY)


async def test_any_transport_error_is_unavailable() -> None:
    async def broken(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("peer closed connection", request=request)

    async with P1Client(BASE, transport=httpx.MockTransport(broken)) as client:
        with pytest.raises(P1Unavailable, match="unreachable"):
            await client.ikp_status("clinic-a")


@respx.mock
@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_server_errors_are_unavailable_with_the_status(client: P1Client, status: int) -> None:
    respx.post(f"{BASE}/prescriptions").mock(
        return_value=httpx.Response(status, json={"title": "Service unavailable", "detail": "P1 is down"})
    )
    with pytest.raises(P1Unavailable) as caught:
        await client.register_package(PACKAGE)
    assert caught.value.status == status


@respx.mock
async def test_a_refusal_carries_p1s_reason_and_status(client: P1Client) -> None:
    respx.post(f"{BASE}/prescriptions/{KEY}/realisations").mock(
        return_value=httpx.Response(
            409,
            json={"title": "Conflict", "status": 409, "detail": "another pharmacy has already realised part of it"},
            headers={"content-type": "application/problem+json"},
        )
    )
    with pytest.raises(P1Refused) as caught:
        await client.record_realisation(KEY, REALISATION)
    assert not isinstance(caught.value, P1NotFound)
    assert caught.value.status == 409
    assert caught.value.message == "another pharmacy has already realised part of it"


@respx.mock
async def test_404_is_not_found_which_is_a_refusal(client: P1Client) -> None:
    respx.post(f"{BASE}/packages/lookup").mock(
        return_value=httpx.Response(404, json={"status": 404, "detail": "no package matches"})
    )
    with pytest.raises(P1NotFound) as caught:
        await client.lookup_package("4821", PESEL)
    assert isinstance(caught.value, P1Refused)
    assert (caught.value.status, caught.value.message) == (404, "no package matches")


@respx.mock
async def test_a_refusal_without_a_readable_reason_still_says_what_was_refused(client: P1Client) -> None:
    respx.post(f"{BASE}/ikp/enable").mock(return_value=httpx.Response(422, text="<html>nope</html>"))
    with pytest.raises(P1Refused, match="refused POST") as caught:
        await client.ikp_enable("clinic-a")
    assert caught.value.status == 422


@respx.mock
@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html><body>maintenance</body></html>"),
        httpx.Response(200, text=""),
        httpx.Response(200, json=["a", "list"]),
        httpx.Response(200, json={k: v for k, v in VIEW.items() if k != "status"}),
        httpx.Response(200, json={**VIEW, "status": "lost"}),
        httpx.Response(200, json={**VIEW, "units_per_package": "sixty"}),
        httpx.Response(201, json=VIEW),  # reading answers 200 only
        httpx.Response(204),
        httpx.Response(302, headers={"location": "https://login.example"}),
    ],
)
async def test_malformed_answers_are_bad_answers(client: P1Client, answer: httpx.Response) -> None:
    respx.get(f"{BASE}/prescriptions/{KEY}").mock(return_value=answer)
    with pytest.raises(P1BadAnswer):
        await client.prescription(KEY)


@respx.mock
async def test_a_status_answer_missing_a_field_is_a_bad_answer(client: P1Client) -> None:
    respx.post(f"{BASE}/ikp/enable").mock(return_value=httpx.Response(202, json={"facility_id": "clinic-a"}))
    with pytest.raises(P1BadAnswer, match="status"):
        await client.ikp_enable("clinic-a")


@respx.mock
@pytest.mark.parametrize(
    ("after", "answer"),
    [
        (0, {"items": [an_item(2), an_item(1)], "last_sequence": 2}),  # out of order
        (0, {"items": [an_item(1), an_item(1)], "last_sequence": 1}),  # repeated
        (0, {"items": [an_item(1), an_item(2)], "last_sequence": 5}),  # a cursor past the items
        (5, {"items": [an_item(5)], "last_sequence": 5}),  # an item already polled
        (5, {"items": [], "last_sequence": 3}),  # the cursor moved back
        (0, {"items": [an_item(1, facility_id="clinic-b")], "last_sequence": 1}),
        (0, {"items": [an_item(0)], "last_sequence": 0}),
        (0, {"items": [{k: v for k, v in an_item(1).items() if k != "submitted_at"}], "last_sequence": 1}),
    ],
)
async def test_a_poll_with_an_unusable_cursor_or_items_is_a_bad_answer(
    client: P1Client, after: int, answer: dict[str, Any]
) -> None:
    respx.get(f"{BASE}/ikp/requests").mock(return_value=httpx.Response(200, json=answer))
    with pytest.raises(P1BadAnswer):
        await client.poll_ikp_requests("clinic-a", after=after)


@respx.mock
async def test_a_poll_with_too_many_items_is_a_bad_answer(client: P1Client) -> None:
    items = [an_item(n) for n in range(1, 4)]
    respx.get(f"{BASE}/ikp/requests").mock(return_value=httpx.Response(200, json={"items": items, "last_sequence": 3}))
    with pytest.raises(P1BadAnswer, match="at most 2"):
        await client.poll_ikp_requests("clinic-a", after=0, limit=2)


def test_every_failure_is_a_p1_error_and_patient_play_is_not_part_of_the_client() -> None:
    assert all(issubclass(kind, P1Error) for kind in (P1Unavailable, P1Refused, P1NotFound, P1BadAnswer))
    assert [name for name in dir(P1Client) if "submit" in name] == []

"""The suite's P1 client against the sandbox's P1 simulator in memory: the contract both sides keep."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from services.integration.p1 import (
    P1Client,
    P1NotFound,
    P1Refused,
    P1Unavailable,
    PackageRegistration,
    PrescriptionToRegister,
    RealisationReport,
)
from services.sandbox.app import create_app
from tests.api.test_sandbox_p1 import P1, Clock, ikp_items, key
from tests.conftest import FACILITY, OTHER_PESEL, PESEL, make_settings

START = dt.datetime(2030, 3, 1, 9, 0, tzinfo=dt.UTC)
PACKAGE = PackageRegistration(
    package_key=key(1001),
    access_code="4821",
    patient_pesel=PESEL,
    facility_id=FACILITY,
    issuer_npwz="5425740",
    issued_on=dt.date(2030, 3, 1),
    prescriptions=[
        PrescriptionToRegister(
            key=key(11),
            drug="Metformax 500 mg, 60 tabl.",
            packages=3,
            units_per_package=Decimal("60"),
            daily_dose_units=Decimal("1.5"),
            kind="Rp",
            valid_from=dt.date(2030, 3, 1),
            valid_until=dt.date(2031, 2, 28),
        ),
        PrescriptionToRegister(
            key=key(12),
            drug="Bisocard 5 mg, 30 tabl.",
            packages=1,
            units_per_package=Decimal("30"),
            daily_dose_units=Decimal("1"),
            kind="Rp",
            valid_from=dt.date(2030, 3, 1),
            valid_until=dt.date(2031, 2, 28),
        ),
    ],
)


def realisation(pharmacy_id: str, packages: int) -> RealisationReport:
    return RealisationReport(
        realisation_id=uuid.uuid4(), pharmacy_id=pharmacy_id, packages=packages, realised_on=dt.date(2030, 3, 5)
    )


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def app(tmp_path: Path, clock: Clock) -> FastAPI:
    app = create_app(make_settings(tmp_path))
    app.state.p1.now = clock
    return app


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[P1Client]:
    async with P1Client(f"http://sandbox{P1}", transport=httpx.ASGITransport(app=app)) as p1:
        yield p1


@pytest.fixture
async def patient(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Patient play goes straight to the sandbox: the client has no way to do it."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=f"http://sandbox{P1}") as http:
        yield http


async def test_the_ikp_integration_from_asking_to_polling(
    client: P1Client, patient: httpx.AsyncClient, clock: Clock
) -> None:
    assert (await client.ikp_status(FACILITY)).status == "off"
    asked = await client.ikp_enable(FACILITY, "0010")
    assert (asked.status, asked.requested_at, asked.enabled_at) == ("pending", START, None)
    clock.advance(1)
    assert (await client.ikp_status(FACILITY)).status == "pending"
    confirmed = await patient.post(f"/ikp/{FACILITY}/confirm")
    assert confirmed.status_code == 200, confirmed.text
    status = await client.ikp_status(FACILITY)
    assert (status.status, status.enabled_at) == ("enabled", START + dt.timedelta(seconds=1))
    assert await client.ikp_enable(FACILITY, "0010") == status

    first = await patient.post("/ikp/requests", json=ikp_items("Metformax", "Bisocard"))
    assert first.status_code == 201, first.text
    batch = await client.poll_ikp_requests(FACILITY, after=0, limit=1)
    assert [item.drug for item in batch.items] == ["Metformax"]
    assert batch.items[0].id == first.json()["items"][0]["id"]
    assert batch.items[0].submitted_at == START + dt.timedelta(seconds=1)

    await patient.post("/ikp/requests", json=ikp_items("Polpril", patient_pesel=OTHER_PESEL))
    rest = await client.poll_ikp_requests(FACILITY, after=batch.last_sequence)
    assert [(item.drug, item.patient_pesel) for item in rest.items] == [("Bisocard", PESEL), ("Polpril", OTHER_PESEL)]
    assert rest.last_sequence == rest.items[-1].sequence > batch.last_sequence
    empty = await client.poll_ikp_requests(FACILITY, after=rest.last_sequence)
    assert (empty.items, empty.last_sequence) == ([], rest.last_sequence)

    off = await client.ikp_disable(FACILITY)
    assert (off.status, off.requested_at) == ("off", None)
    refused = await patient.post("/ikp/requests", json=ikp_items("Metformax"))
    assert refused.status_code == 409


async def test_a_package_from_registration_to_realisation(client: P1Client) -> None:
    registered = await client.register_package(PACKAGE)
    assert (registered.package_key, registered.status) == (PACKAGE.package_key, "registered")
    assert await client.register_package(PACKAGE) == registered  # delivered twice by a retrying forwarder

    package = await client.lookup_package("4821", PESEL)
    assert [p.key for p in package.prescriptions] == [key(11), key(12)]
    assert package.prescriptions[0].daily_dose_units == Decimal("1.5")
    with pytest.raises(P1NotFound):
        await client.lookup_package("4821", OTHER_PESEL)
    with pytest.raises(P1NotFound):
        await client.lookup_package("0000", PESEL)

    first = realisation("pharmacy-1", 2)
    partly = await client.record_realisation(key(11), first)
    assert (partly.status, partly.packages_dispensed, partly.pharmacy_id) == ("partly_realised", 2, "pharmacy-1")
    assert await client.record_realisation(key(11), first) == partly

    with pytest.raises(P1Refused, match="another pharmacy") as elsewhere:
        await client.record_realisation(key(11), realisation("pharmacy-2", 1))
    assert elsewhere.value.status == 409
    with pytest.raises(P1Refused, match="cannot be cancelled"):
        await client.cancel_prescription(key(11))
    assert (await client.prescription(key(11))).status == "partly_realised"

    cancelled = await client.cancel_prescription(key(12))
    assert cancelled.status == "cancelled"
    with pytest.raises(P1Refused, match="cancelled"):
        await client.record_realisation(key(12), realisation("pharmacy-1", 1))
    with pytest.raises(P1NotFound):
        await client.prescription(key(99))


async def test_a_conflicting_registration_and_bad_input_are_refusals_naming_the_reason(client: P1Client) -> None:
    await client.register_package(PACKAGE)
    with pytest.raises(P1Refused, match="package_key") as conflict:
        await client.register_package(PACKAGE.model_copy(update={"issuer_npwz": "1234567"}))
    assert conflict.value.status == 409
    with pytest.raises(P1Refused, match=r"body\.packages") as invalid:
        await client.record_realisation(key(11), realisation("pharmacy-1", 0))
    assert invalid.value.status == 422


async def test_an_outage_is_unavailable_and_ends_with_up(client: P1Client, patient: httpx.AsyncClient) -> None:
    await client.register_package(PACKAGE)
    assert (await patient.post("/down")).status_code == 200
    with pytest.raises(P1Unavailable) as down:
        await client.prescription(key(11))
    assert down.value.status == 503
    with pytest.raises(P1Unavailable):
        await client.poll_ikp_requests(FACILITY, after=0)
    with pytest.raises(P1Unavailable):
        await client.record_realisation(key(11), realisation("pharmacy-1", 1))
    await patient.post("/up")
    assert (await client.prescription(key(11))).packages_dispensed == 0


async def test_a_wrong_base_url_is_not_found_rather_than_a_silent_success(app: FastAPI) -> None:
    async with P1Client("http://sandbox/sandbox/p2", transport=httpx.ASGITransport(app=app)) as wrong:
        with pytest.raises(P1NotFound):
            await wrong.ikp_status(FACILITY)

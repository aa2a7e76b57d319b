"""The sandbox's P1 / gabinet.gov.pl simulator over HTTP: IKP integration, patient play, the poll's
cursor, e-prescription packages, realisations and outages."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.sandbox.app import create_app
from services.sandbox.settings import SandboxSettings
from tests.api.test_scheduling_api import assert_problem
from tests.conftest import FACILITY, OTHER_FACILITY, OTHER_PESEL, PESEL, make_settings, running_client

P1 = "/sandbox/p1"
START = dt.datetime(2030, 3, 1, 9, 0, tzinfo=dt.UTC)


class Clock:
    """P1's clock, moved by the test instead of sleeping."""

    def __init__(self, start: dt.datetime) -> None:
        self.current = start

    def __call__(self) -> dt.datetime:
        return self.current

    def advance(self, seconds: float) -> None:
        self.current += dt.timedelta(seconds=seconds)


def key(number: int) -> str:
    return f"{number:044d}"


def a_line(number: int, **changes: Any) -> dict[str, Any]:
    return {
        "key": key(number),
        "drug": "Metformax 500 mg, 60 tabl.",
        "packages": 3,
        "units_per_package": "60",
        "daily_dose_units": "1.5",
        "kind": "Rp",
        "valid_from": "2030-03-01",
        "valid_until": "2031-02-28",
        **changes,
    }


def a_package(number: int = 1, *, lines: list[dict[str, Any]] | None = None, **changes: Any) -> dict[str, Any]:
    return {
        "package_key": key(1000 + number),
        "access_code": "4821",
        "patient_pesel": PESEL,
        "facility_id": FACILITY,
        "issuer_npwz": "5425740",
        "issued_on": "2030-03-01",
        "prescriptions": lines if lines is not None else [a_line(number * 10 + 1), a_line(number * 10 + 2)],
        **changes,
    }


def a_realisation(**changes: Any) -> dict[str, Any]:
    return {
        "realisation_id": str(uuid.uuid4()),
        "pharmacy_id": "pharmacy-1",
        "packages": 1,
        "realised_on": "2030-03-05",
        **changes,
    }


def ikp_items(*drugs: str, **changes: Any) -> dict[str, Any]:
    return {
        "facility_id": FACILITY,
        "patient_pesel": PESEL,
        "doctor_npwz": "5425740",
        "items": [{"drug": drug, "packages": 1} for drug in drugs],
        **changes,
    }


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def app(tmp_path: Path, clock: Clock) -> FastAPI:
    app = create_app(make_settings(tmp_path))
    app.state.p1.now = clock
    return app


@pytest.fixture
async def sandbox(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async for client in running_client(app, base_url="http://sandbox"):
        yield client


async def enabled(sandbox: httpx.AsyncClient, facility_id: str = FACILITY) -> None:
    assert (await sandbox.post(f"{P1}/ikp/enable", json={"facility_id": facility_id})).status_code in (200, 202)
    answer = await sandbox.post(f"{P1}/ikp/{facility_id}/confirm")
    assert answer.status_code == 200 and answer.json()["status"] == "enabled", answer.text


async def submitted(sandbox: httpx.AsyncClient, *drugs: str, **changes: Any) -> list[dict[str, Any]]:
    answer = await sandbox.post(f"{P1}/ikp/requests", json=ikp_items(*drugs, **changes))
    assert answer.status_code == 201, answer.text
    items: list[dict[str, Any]] = answer.json()["items"]
    return items


async def registered(sandbox: httpx.AsyncClient, package: dict[str, Any]) -> None:
    answer = await sandbox.post(f"{P1}/prescriptions", json=package)
    assert answer.status_code == 201, answer.text


async def poll(sandbox: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    answer = await sandbox.get(f"{P1}/ikp/requests", params={"facility_id": FACILITY, **params})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


# ----------------------------------------------------------------------------- IKP integration


async def test_enabling_is_pending_until_the_confirmation_delay_has_passed(
    sandbox: httpx.AsyncClient, clock: Clock
) -> None:
    asked = await sandbox.post(f"{P1}/ikp/enable", json={"facility_id": FACILITY, "department_code": "0010"})
    assert asked.status_code == 202, asked.text
    assert asked.json() == {
        "facility_id": FACILITY,
        "status": "pending",
        "requested_at": "2030-03-01T09:00:00Z",
        "enabled_at": None,
    }
    clock.advance(1.9)
    assert (await sandbox.get(f"{P1}/ikp/status/{FACILITY}")).json()["status"] == "pending"
    clock.advance(0.1)
    status = (await sandbox.get(f"{P1}/ikp/status/{FACILITY}")).json()
    assert (status["status"], status["enabled_at"]) == ("enabled", "2030-03-01T09:00:02Z")

    clock.advance(60)
    again = await sandbox.post(f"{P1}/ikp/enable", json={"facility_id": FACILITY})
    assert again.status_code == 200
    assert again.json() == status


async def test_asking_again_while_pending_does_not_restart_the_delay(sandbox: httpx.AsyncClient, clock: Clock) -> None:
    await sandbox.post(f"{P1}/ikp/enable", json={"facility_id": FACILITY})
    clock.advance(1.5)
    again = await sandbox.post(f"{P1}/ikp/enable", json={"facility_id": FACILITY})
    assert again.status_code == 202
    assert again.json()["requested_at"] == "2030-03-01T09:00:00Z"
    clock.advance(0.5)
    assert (await sandbox.get(f"{P1}/ikp/status/{FACILITY}")).json()["status"] == "enabled"


def sandbox_with_delay(tmp_path: Path, clock: Clock, seconds: float) -> FastAPI:
    app = create_app(SandboxSettings(**{**make_settings(tmp_path).model_dump(), "p1_ikp_confirm_seconds": seconds}))
    app.state.p1.now = clock
    return app


async def test_the_delay_comes_from_the_sandbox_settings(tmp_path: Path, clock: Clock) -> None:
    async for client in running_client(sandbox_with_delay(tmp_path, clock, 600)):
        assert (await client.post(f"{P1}/ikp/enable", json={"facility_id": FACILITY})).status_code == 202
        clock.advance(599)
        assert (await client.get(f"{P1}/ikp/status/{FACILITY}")).json()["status"] == "pending"
        clock.advance(1)
        assert (await client.get(f"{P1}/ikp/status/{FACILITY}")).json()["status"] == "enabled"


async def test_no_delay_enables_at_once(tmp_path: Path, clock: Clock) -> None:
    async for client in running_client(sandbox_with_delay(tmp_path, clock, 0)):
        answer = await client.post(f"{P1}/ikp/enable", json={"facility_id": FACILITY})
        assert answer.status_code == 200
        assert answer.json()["enabled_at"] == answer.json()["requested_at"] == "2030-03-01T09:00:00Z"


def test_a_negative_delay_is_refused() -> None:
    with pytest.raises(ValueError, match="p1_ikp_confirm_seconds"):
        SandboxSettings(p1_ikp_confirm_seconds=-1)


async def test_confirm_enables_a_pending_facility_at_once_and_refuses_an_off_one(
    sandbox: httpx.AsyncClient, clock: Clock
) -> None:
    assert_problem(await sandbox.post(f"{P1}/ikp/{FACILITY}/confirm"), 409)
    await sandbox.post(f"{P1}/ikp/enable", json={"facility_id": FACILITY})
    clock.advance(0.5)
    confirmed = await sandbox.post(f"{P1}/ikp/{FACILITY}/confirm")
    assert confirmed.status_code == 200
    assert (confirmed.json()["status"], confirmed.json()["enabled_at"]) == ("enabled", "2030-03-01T09:00:00.500000Z")
    clock.advance(10)
    assert (await sandbox.post(f"{P1}/ikp/{FACILITY}/confirm")).json() == confirmed.json()


async def test_disabling_turns_the_integration_off_and_unknown_facilities_are_off(sandbox: httpx.AsyncClient) -> None:
    unknown = await sandbox.get(f"{P1}/ikp/status/nobody")
    assert unknown.json() == {"facility_id": "nobody", "status": "off", "requested_at": None, "enabled_at": None}
    await enabled(sandbox)
    off = await sandbox.post(f"{P1}/ikp/disable", json={"facility_id": FACILITY})
    assert off.status_code == 200
    assert off.json() == {"facility_id": FACILITY, "status": "off", "requested_at": None, "enabled_at": None}
    assert (await sandbox.get(f"{P1}/ikp/status/{FACILITY}")).json()["status"] == "off"
    assert_problem(await sandbox.post(f"{P1}/ikp/{FACILITY}/confirm"), 409)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"facility_id": ""}, "body.facility_id"),
        ({"facility_id": "x" * 65}, "body.facility_id"),
        ({}, "body.facility_id"),
        ({"facility_id": FACILITY, "department_code": "12345"}, "body.department_code"),
        ({"facility_id": FACILITY, "extra": 1}, "body.extra"),
    ],
)
async def test_bad_enable_requests_are_refused_naming_the_field(
    sandbox: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    assert_problem(await sandbox.post(f"{P1}/ikp/enable", json=body), 422, field)


# ----------------------------------------------------------------------------- patient play and the poll


async def test_a_patient_cannot_order_from_a_facility_without_an_enabled_integration(
    sandbox: httpx.AsyncClient,
) -> None:
    body = assert_problem(await sandbox.post(f"{P1}/ikp/requests", json=ikp_items("Metformax")), 409)
    assert "IKP" in body["detail"]
    await sandbox.post(f"{P1}/ikp/enable", json={"facility_id": FACILITY})
    assert_problem(await sandbox.post(f"{P1}/ikp/requests", json=ikp_items("Metformax")), 409)
    assert (await poll(sandbox))["items"] == []


async def test_submitted_items_get_ids_increasing_sequences_and_a_default_submission_time(
    sandbox: httpx.AsyncClient, clock: Clock
) -> None:
    await enabled(sandbox)
    clock.advance(30)
    body = ikp_items("Metformax", "Bisocard")
    body["items"][1].update(packages=2, comment="jak zwykle", submitted_at="2030-03-01T10:15:00+01:00")
    body["doctor_npwz"] = "1234567"  # a wrong check digit: patients may address any number
    answer = await sandbox.post(f"{P1}/ikp/requests", json=body)
    assert answer.status_code == 201, answer.text
    first, second = answer.json()["items"]
    assert uuid.UUID(first["id"]) != uuid.UUID(second["id"])
    assert second["sequence"] == first["sequence"] + 1
    assert first["submitted_at"] == "2030-03-01T09:00:30Z"
    assert second["submitted_at"] == "2030-03-01T10:15:00+01:00"
    assert (second["drug"], second["packages"], second["comment"]) == ("Bisocard", 2, "jak zwykle")
    assert (first["facility_id"], first["patient_pesel"], first["doctor_npwz"]) == (FACILITY, PESEL, "1234567")
    assert first["comment"] is None
    assert first["department_code"] is None  # addressed to no department in particular


async def test_an_order_addressed_to_a_department_carries_its_code_on_every_polled_item(
    sandbox: httpx.AsyncClient,
) -> None:
    await enabled(sandbox)
    items = await submitted(sandbox, "Metformax", "Bisocard", department_code="0020")
    assert [i["department_code"] for i in items] == ["0020", "0020"]
    assert [i["department_code"] for i in (await poll(sandbox))["items"]] == ["0020", "0020"]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"department_code": "20"}, "body.department_code"),
        ({"department_code": "00a0"}, "body.department_code"),
        ({"patient_pesel": "44051401358"}, "body.patient_pesel"),
        ({"doctor_npwz": "123456789"}, "body.doctor_npwz"),
        ({"doctor_npwz": ""}, "body.doctor_npwz"),
        ({"items": []}, "body.items"),
        ({"items": [{"drug": "D", "packages": 1}] * 21}, "body.items"),
        ({"items": [{"drug": "D", "packages": 0}]}, "body.items.0.packages"),
        ({"items": [{"drug": "D", "packages": 100}]}, "body.items.0.packages"),
        ({"items": [{"drug": "", "packages": 1}]}, "body.items.0.drug"),
        ({"items": [{"drug": "D", "packages": 1, "comment": "x" * 1001}]}, "body.items.0.comment"),
        ({"items": [{"drug": "D", "packages": 1, "submitted_at": "2030-03-01T10:00:00"}]}, "body.items.0.submitted_at"),
    ],
)
async def test_bad_patient_requests_are_refused_naming_the_field(
    sandbox: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    await enabled(sandbox)
    body = assert_problem(await sandbox.post(f"{P1}/ikp/requests", json=ikp_items("D", **changes)), 422, field)
    assert PESEL[2:] not in str(body)


async def test_the_poll_resumes_after_its_cursor_in_sequence_order_and_per_facility(sandbox: httpx.AsyncClient) -> None:
    await enabled(sandbox)
    await enabled(sandbox, OTHER_FACILITY)
    ours = await submitted(sandbox, "A", "B")
    theirs = await submitted(sandbox, "X", facility_id=OTHER_FACILITY, patient_pesel=OTHER_PESEL)
    ours += await submitted(sandbox, "C")
    sequences = [item["sequence"] for item in ours]
    assert sequences == sorted(sequences) and theirs[0]["sequence"] == sequences[1] + 1

    first = await poll(sandbox, limit=2)
    assert [item["drug"] for item in first["items"]] == ["A", "B"]
    assert first["last_sequence"] == sequences[1]
    rest = await poll(sandbox, after=first["last_sequence"])
    assert rest["items"] == [ours[2]]
    assert rest["last_sequence"] == sequences[2]
    nothing_new = await poll(sandbox, after=rest["last_sequence"])
    assert nothing_new == {"items": [], "last_sequence": sequences[2]}

    everything = await poll(sandbox)
    assert everything["items"] == ours
    assert (await poll(sandbox, after=sequences[0]))["items"] == ours[1:]
    # A cursor between two of the facility's items (on another facility's sequence) still resumes exactly.
    assert (await poll(sandbox, after=theirs[0]["sequence"]))["items"] == ours[2:]

    other = await sandbox.get(f"{P1}/ikp/requests", params={"facility_id": OTHER_FACILITY})
    assert [item["drug"] for item in other.json()["items"]] == ["X"]
    unknown = await sandbox.get(f"{P1}/ikp/requests", params={"facility_id": "nobody", "after": 7})
    assert unknown.json() == {"items": [], "last_sequence": 7}


async def test_items_stay_in_the_queue_after_the_integration_is_disabled(sandbox: httpx.AsyncClient) -> None:
    await enabled(sandbox)
    items = await submitted(sandbox, "A")
    await sandbox.post(f"{P1}/ikp/disable", json={"facility_id": FACILITY})
    assert (await poll(sandbox))["items"] == items


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"facility_id": FACILITY, "limit": 0}, "query.limit"),
        ({"facility_id": FACILITY, "limit": 501}, "query.limit"),
        ({"facility_id": FACILITY, "after": -1}, "query.after"),
        ({"facility_id": FACILITY, "after": "x"}, "query.after"),
        ({}, "query.facility_id"),
    ],
)
async def test_bad_polls_are_refused_naming_the_parameter(
    sandbox: httpx.AsyncClient, params: dict[str, Any], field: str
) -> None:
    assert_problem(await sandbox.get(f"{P1}/ikp/requests", params=params), 422, field)


# ----------------------------------------------------------------------------- e-prescriptions


async def test_a_registered_package_is_readable_prescription_by_prescription(sandbox: httpx.AsyncClient) -> None:
    package = a_package()
    answer = await sandbox.post(f"{P1}/prescriptions", json=package)
    assert answer.status_code == 201
    assert answer.json() == {"package_key": package["package_key"], "status": "registered"}
    assert (await sandbox.get(f"{P1}/received")).json() == [package["package_key"]]

    view = (await sandbox.get(f"{P1}/prescriptions/{key(11)}")).json()
    assert view == {
        **a_line(11),
        "package_key": package["package_key"],
        "issued_on": "2030-03-01",
        "issuer_npwz": "5425740",
        "facility_id": FACILITY,
        "status": "issued",
        "packages_dispensed": 0,
        "pharmacy_id": None,
        "realisations": [],
    }
    assert "access_code" not in view and "patient_pesel" not in view
    assert_problem(await sandbox.get(f"{P1}/prescriptions/{key(99)}"), 404)


async def test_registration_is_idempotent_by_package_key(sandbox: httpx.AsyncClient) -> None:
    package = a_package()
    await registered(sandbox, package)
    again = await sandbox.post(f"{P1}/prescriptions", json={**package, "prescriptions": [a_line(11), a_line(12)]})
    assert again.status_code == 200
    assert again.json() == {"package_key": package["package_key"], "status": "registered"}
    assert (await sandbox.get(f"{P1}/received")).json() == [package["package_key"]]

    changed = a_package(lines=[a_line(11, packages=4), a_line(12)])
    body = assert_problem(await sandbox.post(f"{P1}/prescriptions", json=changed), 409)
    assert "package_key" in body["detail"]
    assert (await sandbox.get(f"{P1}/prescriptions/{key(11)}")).json()["packages"] == 3


async def test_a_prescription_key_or_an_access_code_cannot_be_reused_by_another_package(
    sandbox: httpx.AsyncClient,
) -> None:
    await registered(sandbox, a_package(1))
    reused_key = a_package(2, lines=[a_line(21), a_line(12)], access_code="1111")
    body = assert_problem(await sandbox.post(f"{P1}/prescriptions", json=reused_key), 409)
    assert key(12) in body["detail"]
    assert_problem(await sandbox.post(f"{P1}/prescriptions", json=a_package(2)), 409)  # same code, same patient
    assert_problem(await sandbox.get(f"{P1}/prescriptions/{key(21)}"), 404)  # nothing half-registered

    await registered(sandbox, a_package(3, patient_pesel=OTHER_PESEL))  # the same code for another patient is fine
    assert len((await sandbox.get(f"{P1}/received")).json()) == 2


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"package_key": "1" * 43}, "body.package_key"),
        ({"access_code": "12a4"}, "body.access_code"),
        ({"access_code": "12345"}, "body.access_code"),
        ({"patient_pesel": "44051401358"}, "body.patient_pesel"),
        ({"issued_on": "2030-02-30"}, "body.issued_on"),
        ({"prescriptions": []}, "body.prescriptions"),
        ({"prescriptions": [a_line(n) for n in range(1, 7)]}, "body.prescriptions"),
        ({"prescriptions": [a_line(1), a_line(1)]}, "body.prescriptions"),
        ({"prescriptions": [a_line(1, packages=0)]}, "body.prescriptions.0.packages"),
        ({"prescriptions": [a_line(1, key="1" * 45)]}, "body.prescriptions.0.key"),
        ({"prescriptions": [a_line(1, units_per_package="0")]}, "body.prescriptions.0.units_per_package"),
        ({"prescriptions": [a_line(1, daily_dose_units="abc")]}, "body.prescriptions.0.daily_dose_units"),
        ({"prescriptions": [a_line(1, valid_until="2030-02-28")]}, "body.prescriptions.0.valid_until"),
    ],
)
async def test_bad_packages_are_refused_naming_the_field(
    sandbox: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    assert_problem(await sandbox.post(f"{P1}/prescriptions", json=a_package(**changes)), 422, field)
    assert (await sandbox.get(f"{P1}/received")).json() == []


async def test_five_prescriptions_make_a_full_package(sandbox: httpx.AsyncClient) -> None:
    await registered(sandbox, a_package(lines=[a_line(n) for n in range(1, 6)]))
    assert (await sandbox.get(f"{P1}/prescriptions/{key(5)}")).status_code == 200


async def test_a_package_is_found_by_access_code_and_pesel_together_only(sandbox: httpx.AsyncClient) -> None:
    package = a_package()
    await registered(sandbox, package)
    found = await sandbox.post(f"{P1}/packages/lookup", json={"access_code": "4821", "pesel": PESEL})
    assert found.status_code == 200, found.text
    assert found.json()["package_key"] == package["package_key"]
    assert [p["key"] for p in found.json()["prescriptions"]] == [key(11), key(12)]
    assert found.json()["prescriptions"][0] == (await sandbox.get(f"{P1}/prescriptions/{key(11)}")).json()

    wrong_code = assert_problem(
        await sandbox.post(f"{P1}/packages/lookup", json={"access_code": "4822", "pesel": PESEL}), 404
    )
    wrong_pesel = assert_problem(
        await sandbox.post(f"{P1}/packages/lookup", json={"access_code": "4821", "pesel": OTHER_PESEL}), 404
    )
    assert wrong_code == {**wrong_pesel, "instance": wrong_code["instance"]}
    assert "4821" not in str(wrong_pesel) and PESEL not in str(wrong_code)
    assert_problem(
        await sandbox.post(f"{P1}/packages/lookup", json={"access_code": "4821", "pesel": "44051401358"}),
        422,
        "body.pesel",
    )


# ----------------------------------------------------------------------------- realisations and cancelling


async def test_realisations_add_up_and_the_first_pharmacy_holds_the_prescription(sandbox: httpx.AsyncClient) -> None:
    await registered(sandbox, a_package())
    url = f"{P1}/prescriptions/{key(11)}/realisations"
    first = a_realisation(packages=2)
    answer = await sandbox.post(url, json=first)
    assert answer.status_code == 201, answer.text
    view = answer.json()
    assert (view["status"], view["packages_dispensed"], view["pharmacy_id"]) == ("partly_realised", 2, "pharmacy-1")
    assert view["realisations"] == [{**first, "outage": False}]

    again = await sandbox.post(url, json=first)
    assert (again.status_code, again.json()) == (200, view)

    elsewhere = assert_problem(await sandbox.post(url, json=a_realisation(pharmacy_id="pharmacy-2")), 409)
    assert "another pharmacy" in elsewhere["detail"]
    too_many = assert_problem(await sandbox.post(url, json=a_realisation(packages=2)), 409)
    assert "exceed" in too_many["detail"]

    last = await sandbox.post(url, json=a_realisation(outage=True, realised_on="2030-03-09"))
    assert last.status_code == 201
    done = last.json()
    assert (done["status"], done["packages_dispensed"], len(done["realisations"])) == ("realised", 3, 2)
    assert done["realisations"][1]["outage"] is True
    assert_problem(await sandbox.post(url, json=a_realisation()), 409)
    assert (await sandbox.get(f"{P1}/prescriptions/{key(11)}")).json() == done
    assert (await sandbox.get(f"{P1}/prescriptions/{key(12)}")).json()["status"] == "issued"


async def test_a_realisation_id_belongs_to_one_prescription(sandbox: httpx.AsyncClient) -> None:
    await registered(sandbox, a_package())
    realisation = a_realisation()
    await sandbox.post(f"{P1}/prescriptions/{key(11)}/realisations", json=realisation)
    assert_problem(await sandbox.post(f"{P1}/prescriptions/{key(12)}/realisations", json=realisation), 409)
    assert (await sandbox.get(f"{P1}/prescriptions/{key(12)}")).json()["packages_dispensed"] == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"packages": 0}, "body.packages"),
        ({"realisation_id": "not-a-uuid"}, "body.realisation_id"),
        ({"pharmacy_id": ""}, "body.pharmacy_id"),
        ({"realised_on": "yesterday"}, "body.realised_on"),
    ],
)
async def test_bad_realisations_are_refused_naming_the_field(
    sandbox: httpx.AsyncClient, changes: dict[str, Any], field: str
) -> None:
    await registered(sandbox, a_package())
    url = f"{P1}/prescriptions/{key(11)}/realisations"
    assert_problem(await sandbox.post(url, json=a_realisation(**changes)), 422, field)


async def test_unknown_prescriptions_cannot_be_realised_or_cancelled(sandbox: httpx.AsyncClient) -> None:
    assert_problem(await sandbox.post(f"{P1}/prescriptions/{key(99)}/realisations", json=a_realisation()), 404)
    assert_problem(await sandbox.post(f"{P1}/prescriptions/{key(99)}/cancel"), 404)


async def test_cancelling_is_idempotent_and_stops_realisations(sandbox: httpx.AsyncClient) -> None:
    await registered(sandbox, a_package())
    cancelled = await sandbox.post(f"{P1}/prescriptions/{key(11)}/cancel")
    assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
    again = await sandbox.post(f"{P1}/prescriptions/{key(11)}/cancel")
    assert (again.status_code, again.json()) == (200, cancelled.json())
    body = assert_problem(await sandbox.post(f"{P1}/prescriptions/{key(11)}/realisations", json=a_realisation()), 409)
    assert "cancelled" in body["detail"]
    found = await sandbox.post(f"{P1}/packages/lookup", json={"access_code": "4821", "pesel": PESEL})
    assert [p["status"] for p in found.json()["prescriptions"]] == ["cancelled", "issued"]


async def test_a_prescription_with_a_realisation_cannot_be_cancelled(sandbox: httpx.AsyncClient) -> None:
    await registered(sandbox, a_package())
    await sandbox.post(f"{P1}/prescriptions/{key(11)}/realisations", json=a_realisation())
    assert_problem(await sandbox.post(f"{P1}/prescriptions/{key(11)}/cancel"), 409)
    assert (await sandbox.get(f"{P1}/prescriptions/{key(11)}")).json()["status"] == "partly_realised"


# ----------------------------------------------------------------------------- outages


async def test_an_outage_answers_503_everywhere_but_the_switches_until_it_ends(sandbox: httpx.AsyncClient) -> None:
    await enabled(sandbox)
    await registered(sandbox, a_package())
    assert (await sandbox.post(f"{P1}/down")).json() == {"up": False}
    assert (await sandbox.get(f"{P1}/status")).json() == {"up": False}
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("POST", "/ikp/enable", {"facility_id": FACILITY}),
        ("POST", "/ikp/disable", {"facility_id": FACILITY}),
        ("GET", f"/ikp/status/{FACILITY}", None),
        ("POST", f"/ikp/{FACILITY}/confirm", None),
        ("POST", "/ikp/requests", ikp_items("A")),
        ("GET", f"/ikp/requests?facility_id={FACILITY}", None),
        ("POST", "/prescriptions", a_package(2)),
        ("GET", f"/prescriptions/{key(11)}", None),
        ("POST", "/packages/lookup", {"access_code": "4821", "pesel": PESEL}),
        ("POST", f"/prescriptions/{key(11)}/realisations", a_realisation()),
        ("POST", f"/prescriptions/{key(11)}/cancel", None),
        ("GET", "/received", None),
    ]
    for method, path, body in calls:
        problem = assert_problem(await sandbox.request(method, P1 + path, json=body), 503)
        assert "unavailable" in problem["detail"]
    assert (await sandbox.post(f"{P1}/up")).json() == {"up": True}
    # Nothing sent during the outage took effect.
    assert (await sandbox.get(f"{P1}/ikp/status/{FACILITY}")).json()["status"] == "enabled"
    view = (await sandbox.get(f"{P1}/prescriptions/{key(11)}")).json()
    assert (view["status"], view["packages_dispensed"]) == ("issued", 0)
    assert (await sandbox.get(f"{P1}/received")).json() == [a_package()["package_key"]]


async def test_the_ezwm_simulator_is_still_served_beside_p1(sandbox: httpx.AsyncClient) -> None:
    await sandbox.post(f"{P1}/down")
    assert (await sandbox.get("/sandbox/ezwm/status")).json() == {"up": True}

"""CeR settings through the gateway: the secret is kept to verify signatures, never returned."""

from __future__ import annotations

import pytest

from tests.e2e import test_prescriptions_flow as flow
from tests.e2e.test_prescriptions_flow import FACILITY, Clinic

clinic = flow.clinic  # the e2e flow's facility fixture, used here by name

SETTINGS = {
    "endpoint": "https://gateway.clinic.example/webhooks/cer/clinic-rx",
    "email": "cer@clinic.example",
    "secret": "s3cr3t-shared-with-CeR-0123456789",
}


async def test_the_cer_secret_is_stored_but_never_returned(clinic: Clinic, capsys: pytest.CaptureFixture[str]) -> None:
    saved = await clinic.client.put("/api/v1/integration/cer/settings", json=SETTINGS, headers=clinic.admin)
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"endpoint": SETTINGS["endpoint"], "email": SETTINGS["email"], "secret_set": True}
    read = await clinic.client.get("/api/v1/integration/cer/settings", headers=clinic.admin)
    assert read.json()["secret_set"] is True and SETTINGS["secret"] not in read.text
    output = capsys.readouterr()
    assert SETTINGS["secret"] not in output.out + output.err


async def test_bad_cer_settings_name_the_field_and_only_an_admin_sets_them(clinic: Clinic) -> None:
    bad = await clinic.client.put(
        "/api/v1/integration/cer/settings",
        json={"endpoint": "not a url", "email": "nope", "secret": "Xq7-tiny"},
        headers=clinic.admin,
    )
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"body.endpoint", "body.email", "body.secret"}
    assert "Xq7-tiny" not in bad.text  # a secret that is refused is not echoed back either
    desk = await clinic.client.put("/api/v1/integration/cer/settings", json=SETTINGS, headers=clinic.desk)
    assert desk.status_code == 403
    other = await clinic.token(sub="a", role="facility_admin", facility_id="another-clinic")
    missing = await clinic.client.get("/api/v1/integration/cer/settings", headers=other)
    assert missing.status_code == 404
    assert FACILITY not in missing.text

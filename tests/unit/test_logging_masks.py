"""Logs never carry a PESEL or a secret (access codes, tokens, passwords)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from shared.logging import bind_request_id, configure_logging, mask_pesel, mask_sensitive

PESEL = "44051401359"
OTHER_PESEL = "02070803628"
ELEVEN_DIGITS = re.compile(r"(?<!\d)\d{11}(?!\d)")


def masked(**event: Any) -> dict[str, Any]:
    return dict(mask_sensitive(None, "info", dict(event)))


def test_mask_pesel_keeps_the_birth_year_and_hides_the_rest() -> None:
    assert mask_pesel(PESEL) == "44*********"
    assert mask_pesel(f"patient {PESEL} booked, then {OTHER_PESEL}") == "patient 44********* booked, then 02*********"
    assert mask_pesel(f"/api/v1/notifications/patients/{PESEL}/contact") == (
        "/api/v1/notifications/patients/44*********/contact"
    )
    assert mask_pesel(f"pesel={PESEL},") == "pesel=44*********,"


def test_mask_pesel_leaves_other_digit_runs_alone() -> None:
    package_key = "1" * 44  # prescription package keys are long digit strings, not PESELs
    assert mask_pesel(package_key) == package_key
    assert mask_pesel("4405140135") == "4405140135"  # 10 digits
    assert mask_pesel("slot 2030-03-04T07:00:00Z") == "slot 2030-03-04T07:00:00Z"


def test_pesel_keys_are_masked_whatever_their_shape() -> None:
    event = masked(event="booking", pesel=PESEL, patient_pesel=f" {OTHER_PESEL} ", PESEL="4405")
    assert event["pesel"] == "44*********"
    assert OTHER_PESEL not in event["patient_pesel"]
    assert event["PESEL"] == "44**"


def test_a_pesel_given_as_a_number_is_masked_too() -> None:
    event = masked(event="lookup", pesel=int(PESEL), other=int(PESEL), patient_pesel=int(OTHER_PESEL), count=12)
    assert PESEL not in str(event["pesel"])
    assert event["patient_pesel"] == "20********"  # the leading zero was lost, the rest is hidden
    assert not ELEVEN_DIGITS.search(str(event["other"]))
    assert event["count"] == 12


@pytest.mark.parametrize("key", ["access_code", "Access_Code", "secret", "password", "authorization", "token"])
def test_secret_keys_lose_their_value(key: str) -> None:
    assert masked(event="x", **{key: "4821"})[key] == "***"


def test_nested_dicts_and_lists_are_masked_all_the_way_down() -> None:
    event = masked(
        event="package issued",
        payload={
            "patient": {"pesel": PESEL, "name": "Jan"},
            "package": {"access_code": "4821", "prescriptions": [{"access_code": "4821", "key": "9" * 22}]},
            "notes": [f"called {OTHER_PESEL}", ("tuple", PESEL)],
        },
        access_code={"nested": "4821"},
    )
    text = json.dumps(event)
    assert not ELEVEN_DIGITS.search(text)
    assert "4821" not in text
    assert event["payload"]["patient"]["name"] == "Jan"
    assert event["payload"]["package"]["prescriptions"][0]["key"] == "9" * 22


def test_values_that_are_not_personal_pass_untouched() -> None:
    event = masked(event="request", method="POST", status=201, ms=3.5, ok=True, missing=None)
    assert event == {"event": "request", "method": "POST", "status": 201, "ms": 3.5, "ok": True, "missing": None}


@pytest.fixture
def restore_logging() -> Iterator[None]:
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    yield
    structlog.configure(**saved_structlog)
    root.handlers = saved_handlers
    root.setLevel(saved_level)


def test_the_configured_pipeline_writes_masked_json_with_the_request_id(
    restore_logging: None, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", json=True)
    with bind_request_id("req-42"):
        structlog.get_logger("t").info(f"patient {PESEL} booked", patient_pesel=PESEL, access_code="4821")
        logging.getLogger("some.library").warning("library saw %s", OTHER_PESEL)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert len(lines) == 2
    mine, library = lines
    assert mine["request_id"] == "req-42"
    assert mine["access_code"] == "***"
    assert mine["event"] == "patient 44********* booked"
    assert library["level"] == "warning"
    for line in lines:
        assert not ELEVEN_DIGITS.search(json.dumps(line))
        assert "4821" not in json.dumps(line)


@given(
    st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=20),
    st.text(alphabet="0123456789", min_size=11, max_size=11),
    st.text(alphabet=st.characters(blacklist_categories=["Nd"]), max_size=20),
)
def test_any_eleven_digit_run_in_text_is_hidden(before: str, digits: str, after: str) -> None:
    assert digits not in mask_pesel(before + digits + after)
    assert masked(event=before + digits + after, nested=[{"x": digits}])["nested"][0]["x"] == digits[:2] + "*" * 9

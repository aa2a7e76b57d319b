"""Token claims: every role carries the tenant and identity it needs; tokens are checked strictly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from pydantic import SecretStr, ValidationError

from shared.auth import Claims, Role, decode_token, issue_token, principal_from_header
from shared.problems import Forbidden, Unauthorized
from shared.settings import DEFAULT_JWT_SECRET, ROLE_NAMES, TEST_ENVIRONMENT_MARKER, Settings

SETTINGS = Settings(environment="test")
PESEL = "44051401359"


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "registrar", "facility_id": "clinic-a"},
        {"role": "facility_admin", "facility_id": "clinic-a"},
        {"role": "partner", "facility_id": "clinic-a"},
        {"role": "practitioner", "facility_id": "clinic-a", "npwz": "5425740"},
        {"role": "practitioner", "facility_id": "clinic-a", "npwz": "1234567P"},
        {"role": "pharmacist", "pharmacy_id": "apteka-1"},
        {"role": "patient", "pesel": PESEL},
        {"role": "patient", "pesel": PESEL, "facility_id": "clinic-a"},
    ],
)
def test_complete_claims_are_accepted(claims: dict[str, Any]) -> None:
    assert Claims(sub="someone", **claims).role == Role(claims["role"])


@pytest.mark.parametrize(
    ("claims", "needed"),
    [
        ({"role": "registrar"}, "facility_id"),
        ({"role": "facility_admin"}, "facility_id"),
        ({"role": "partner"}, "facility_id"),
        ({"role": "practitioner", "npwz": "5425740"}, "facility_id"),
        ({"role": "practitioner", "facility_id": "clinic-a"}, "npwz"),
        ({"role": "pharmacist", "facility_id": "clinic-a"}, "pharmacy_id"),
        ({"role": "patient", "facility_id": "clinic-a"}, "pesel"),
    ],
)
def test_a_role_without_its_tenant_or_identity_is_refused(claims: dict[str, Any], needed: str) -> None:
    with pytest.raises(ValidationError, match=needed):
        Claims(sub="someone", **claims)


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "patient", "pesel": "44051401358"},
        {"role": "practitioner", "facility_id": "clinic-a", "npwz": "5425741"},
        {"role": "superuser", "facility_id": "clinic-a"},
        {"role": "registrar", "facility_id": ""},
        {"role": "registrar", "facility_id": "x" * 65},
    ],
)
def test_bad_identifiers_roles_or_tenants_are_refused(claims: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Claims(sub="someone", **claims)


def test_an_empty_subject_is_refused() -> None:
    with pytest.raises(ValidationError):
        Claims(sub="", role=Role.registrar, facility_id="clinic-a")


def test_a_token_round_trips_its_claims() -> None:
    claims = Claims(sub="dr-a", role=Role.practitioner, facility_id="clinic-a", npwz="5425740")
    principal = decode_token(issue_token(claims, SETTINGS), SETTINGS)
    assert (principal.sub, principal.role, principal.facility_id, principal.npwz) == (
        "dr-a",
        Role.practitioner,
        "clinic-a",
        "5425740",
    )
    assert principal.require_facility() == "clinic-a"
    with pytest.raises(Forbidden):
        principal.require_pharmacy()


def test_an_expired_token_is_refused() -> None:
    expired = SETTINGS.model_copy(update={"jwt_ttl_seconds": -60})
    token = issue_token(Claims(sub="desk", role=Role.registrar, facility_id="clinic-a"), expired)
    with pytest.raises(Unauthorized, match="expired"):
        decode_token(token, SETTINGS)


def test_a_token_signed_with_another_secret_is_refused() -> None:
    other = SETTINGS.model_copy(update={"jwt_secret": SecretStr("another-secret-of-sufficient-length-0123")})
    token = issue_token(Claims(sub="desk", role=Role.registrar, facility_id="clinic-a"), other)
    with pytest.raises(Unauthorized):
        decode_token(token, SETTINGS)


def test_a_validly_signed_token_with_incomplete_claims_is_refused() -> None:
    # Signed with the right key, but a registrar without a facility must not get in.
    token = jwt.encode(
        {"sub": "desk", "role": "registrar", "exp": 4_102_444_800},
        SETTINGS.jwt_secret.get_secret_value(),
        algorithm="HS256",
    )
    with pytest.raises(Unauthorized):
        decode_token(token, SETTINGS)


def test_an_unsigned_token_is_refused() -> None:
    token = jwt.encode({"sub": "desk", "role": "facility_admin", "facility_id": "clinic-a"}, key=None, algorithm="none")
    with pytest.raises(Unauthorized):
        decode_token(token, SETTINGS)


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer   ", "Basic dXNlcjpwYXNz", "Token abc", "Bearer not.a.jwt"]
)
def test_a_missing_or_malformed_authorization_header_is_401(header: str | None) -> None:
    with pytest.raises(Unauthorized):
        principal_from_header(header, SETTINGS)


def test_the_bearer_scheme_is_case_insensitive() -> None:
    token = issue_token(Claims(sub="desk", role=Role.registrar, facility_id="clinic-a"), SETTINGS)
    assert principal_from_header(f"bearer {token}", SETTINGS).sub == "desk"


def test_production_settings_refuse_the_default_secret_and_dev_auth() -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET"):
        Settings(environment="production", dev_auth=False)
    with pytest.raises(ValidationError, match="DEV_AUTH"):
        Settings(environment="production", jwt_secret=SecretStr("a-real-secret-0123456789-abcdefghijkl"))


# ----------------------------------------------------------------------------- the suite's own tokens

GOOD_SECRET = "a-real-secret-0123456789-abcdefghijkl"


def own_token(**changes: Any) -> str:
    now = int(time.time())
    payload = {
        "sub": "desk",
        "role": "registrar",
        "facility_id": "clinic-a",
        "iss": SETTINGS.jwt_issuer,
        "aud": SETTINGS.jwt_audience,
        "iat": now,
        "exp": now + 600,
        **changes,
    }
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, SETTINGS.jwt_secret.get_secret_value(), algorithm="HS256")


def test_the_suites_tokens_carry_its_issuer_and_audience() -> None:
    token = issue_token(Claims(sub="desk", role=Role.registrar, facility_id="clinic-a"), SETTINGS)
    payload = jwt.decode(token, options={"verify_signature": False})
    assert (payload["iss"], payload["aud"]) == ("ehealth-suite", "ehealth-suite")
    assert payload["exp"] - payload["iat"] == SETTINGS.jwt_ttl_seconds
    assert own_token()  # the helper below builds what issue_token builds
    assert decode_token(own_token(), SETTINGS).sub == "desk"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"iss": None}, "iss"),
        ({"aud": None}, "aud"),
        ({"iat": None}, "iat"),
        ({"iss": "someone-else"}, "issuer"),
        ({"aud": "another-suite"}, "audience"),
        ({"nbf": int(time.time()) + 600}, "not valid yet"),
        ({"exp": int(time.time()) + 13 * 3600}, "longer than the 43200 seconds"),
    ],
)
def test_a_signed_token_with_a_wrong_or_missing_claim_is_refused(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason):
        decode_token(own_token(**changes), SETTINGS)


def test_a_token_of_a_suite_with_another_issuer_is_refused() -> None:
    other = SETTINGS.model_copy(update={"jwt_issuer": "staging-suite"})
    token = issue_token(Claims(sub="desk", role=Role.registrar, facility_id="clinic-a"), other)
    with pytest.raises(Unauthorized, match="issuer"):
        decode_token(token, SETTINGS)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"jwt_secret": "a" * 64}, "one character repeated"),
        ({"jwt_secret": "short-secret-of-31-bytes-012345"}, "at least 32 bytes"),
        ({"jwt_secret": DEFAULT_JWT_SECRET}, "JWT_SECRET"),
        ({"jwt_secret": GOOD_SECRET, "jwt_algorithm": "none"}, "jwt_algorithm"),
        ({"jwt_secret": GOOD_SECRET, "jwt_algorithm": "RS256"}, "jwt_algorithm"),
        ({"jwt_secret": GOOD_SECRET, "jwt_ttl_seconds": 13 * 3600}, "JWT_TTL_SECONDS"),
        ({"jwt_secret": GOOD_SECRET, "max_token_ttl_seconds": 600, "jwt_ttl_seconds": 601}, "JWT_TTL_SECONDS"),
    ],
)
def test_production_refuses_weak_token_settings(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(environment="production", dev_auth=False, **values)


def test_production_accepts_a_real_secret_of_32_bytes() -> None:
    settings = Settings(environment="production", dev_auth=False, jwt_secret="x1" * 16)
    assert settings.jwt_secret.get_secret_value() == "x1" * 16


def test_development_without_dev_auth_needs_its_own_secret() -> None:
    # A container or docker compose: reachable from other machines, so the public default would let
    # anyone sign tokens.
    with pytest.raises(ValidationError, match="JWT_SECRET must be set when DEV_AUTH is off"):
        Settings(environment="development", dev_auth=False)
    assert Settings(environment="development", dev_auth=False, jwt_secret=GOOD_SECRET).dev_auth is False
    assert Settings(environment="development").dev_auth is True  # make run


def settings_in_a_fresh_process(environment: str, **env: str) -> subprocess.CompletedProcess[str]:
    variables = {k: v for k, v in os.environ.items() if k != TEST_ENVIRONMENT_MARKER and not k.startswith("PYTEST")}
    return subprocess.run(
        [sys.executable, "-c", "from shared.settings import Settings; Settings()"],
        env={**variables, "ENVIRONMENT": environment, **env},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_environment_test_is_refused_outside_the_test_suite() -> None:
    refused = settings_in_a_fresh_process("test")
    assert refused.returncode != 0
    assert "ENVIRONMENT=test is for the test suite only" in refused.stderr
    assert settings_in_a_fresh_process("test", **{TEST_ENVIRONMENT_MARKER: "true"}).returncode == 0
    assert settings_in_a_fresh_process("development").returncode == 0


def test_the_settings_know_every_role() -> None:
    assert {role.value for role in Role} == ROLE_NAMES

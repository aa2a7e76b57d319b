"""Token claims: every role carries the tenant and identity it needs; tokens are checked strictly."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from pydantic import SecretStr, ValidationError

from shared.auth import Claims, Role, decode_token, issue_token, principal_from_header
from shared.problems import Forbidden, Unauthorized
from shared.settings import Settings

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

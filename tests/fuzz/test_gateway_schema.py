"""The gateway's merged OpenAPI document, fuzzed by schemathesis against a running gateway.

The embedded suite runs as its own process (uvicorn, SQLite, in-process bus, the sandbox), reached
over real HTTP. Every operation is called with a valid token of a role it admits (its ``x-roles``,
taken in turn), with data valid by the schema and data that is not. Every answer must be no server
error, have a status and content type the document names, match its documented schema, and, when it
is an error, be problem+json. ``FUZZ_EXAMPLES`` sets the examples per operation (``make fuzz``
raises it); when the module is done, the count of cases that ran is checked.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.conftest import ServiceProcess, free_port

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "4"))
# Also the bounded run of make test (4 examples per operation, plus schemathesis's explicit and
# coverage cases) comes to some 2,700 cases; make fuzz to some 4,000.
MINIMUM_CASES = int(os.environ.get("FUZZ_MINIMUM_CASES", "1000"))
FACILITY = "fuzz-clinic"
CLAIMS: dict[str, dict[str, str]] = {
    "registrar": {"facility_id": FACILITY},
    "practitioner": {"facility_id": FACILITY, "npwz": "5425740"},
    "facility_admin": {"facility_id": FACILITY},
    "partner": {"facility_id": FACILITY},
    "patient": {"facility_id": FACILITY, "pesel": "44051401359"},
    "pharmacist": {"pharmacy_id": "fuzz-pharmacy"},
    "operator": {},
}
ran: list[str] = []


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceProcess]:
    where: Path = tmp_path_factory.mktemp("fuzz")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "AMQP_", "DATABASE_"))}
    env.update(
        {
            "DATABASE_URL": f"sqlite+aiosqlite:///{where}/{{service}}.db",
            "ENVIRONMENT": "development",
            "LOG_LEVEL": "ERROR",
            "SANDBOX_SMTP_PORT": "0",
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        }
    )
    process = ServiceProcess("gateway.app:create_app", free_port(), env, where / "gateway.log")
    try:
        process.wait_healthy(timeout=90)
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def tokens(gateway: ServiceProcess) -> dict[str, itertools.cycle[str]]:
    """A development token per role; each operation's cases take the roles it admits in turn."""
    found: dict[str, str] = {}
    for role, claims in CLAIMS.items():
        answer = httpx.post(
            f"{gateway.url}/api/v1/auth/dev-token", json={"sub": f"fuzz-{role}", "role": role, **claims}
        )
        assert answer.status_code == 200, answer.text
        found[role] = answer.json()["access_token"]
    return {role: itertools.cycle([token]) for role, token in found.items()}


@pytest.fixture(scope="module")
def api_schema(gateway: ServiceProcess) -> Any:
    return schemathesis.openapi.from_url(f"{gateway.url}/openapi.json")


schema = schemathesis.pytest.from_fixture("api_schema")
_turns: dict[str, itertools.cycle[str]] = {}


def _role_for(case: Any) -> str:
    roles: list[str] = case.operation.definition.raw.get("x-roles") or ["facility_admin"]
    key = f"{case.operation.method} {case.operation.path}"
    return next(_turns.setdefault(key, itertools.cycle(sorted(roles))))


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_operation_answers_within_its_contract(
    case: Any, gateway: ServiceProcess, tokens: dict[str, itertools.cycle[str]], counted: None
) -> None:
    role = _role_for(case)
    headers = {"Authorization": f"Bearer {next(tokens[role])}"}
    response = case.call(base_url=gateway.url, headers=headers)
    ran.append(f"{case.operation.method} {case.operation.path}")
    assert response.status_code < 500, f"{role}: {response.status_code} {response.text[:500]}"
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
        headers=headers,
    )
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/problem+json"), response.text[:300]
        problem = response.json()
        assert {"type", "title", "status", "detail"} <= problem.keys(), problem
        assert problem["status"] == response.status_code


@pytest.fixture(scope="module")
def counted(request: pytest.FixtureRequest) -> Iterator[None]:
    """After the whole fuzz, in the process that ran it (parallel workers may split this module), and
    only when nothing was deselected: enough cases ran in all."""
    yield
    print(f"\nfuzz: {len(ran)} cases across {len(set(ran))} operations")
    if not request.config.getoption("keyword"):
        assert len(ran) >= MINIMUM_CASES, f"only {len(ran)} cases ran"

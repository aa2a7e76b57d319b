"""The authorisation matrix, through the embedded gateway.

Part one is derived from the gateway's live ``/openapi.json``, so a new endpoint is covered the day
it appears: every operation under ``/api/v1`` (the dev-token endpoint aside) is called as each of
the seven roles, with that role's valid token, syntactically valid dummy path values and ``{}``
for a JSON body. A role its ``x-roles`` leave out must get 403 problem+json from the gateway itself
(nothing forwarded, whatever the body); an admitted role must get past the role check (anything
but 401/403: 404 and 422 are expected, the ids and bodies being dummies). Every operation also
answers 401 problem+json, unforwarded, to no token and to a bad one: a wrong secret, expired, the
``none`` algorithm, a payload edited after signing, a non-bearer scheme, garbage.

Part two seeds facility A and pharmacy A through the API (locations, a practitioner, work types,
schedules and slots, a booking, prescription requests and an issued prescription, account drugs,
a patient contact and the messages it led to, CeR settings, a product, pharmacy settings, a
realisation, an eZWM order realised in pharmacy A) and then tries every one of them from facility
B and pharmacy B, as each role the operation admits, by id in the path, by id in the body and
through the listings. Each answer must have the expected status (404 for an id in the path), must
equal, the ids aside, the answer for a random id that never existed (or a fresh tenant's answer),
and must carry none of A's data (ids, names, e-mails, phone, PESEL, tenant ids). Facility A's own
same role gets the data (so the probe reaches something), and nothing of A changed afterwards.
A patient of facility A probes another patient's resources the same way.

One app serves the whole module (building the suite takes seconds); each test walks its table and
reports every mismatch in one assertion.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

import httpx
import jwt
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import SecretStr

from gateway.app import create_app
from gateway.registry import SERVICES
from shared.auth import CLINIC_ROLES, ROLES_EXTENSION, Claims, Role, issue_token
from shared.problems import PROBLEM_JSON
from shared.settings import Settings
from tests.conftest import make_gateway_settings, running_client

pytestmark = pytest.mark.asyncio(loop_scope="module")

Json = Any
Headers = dict[str, str]
Values = Mapping[str, str]

API = "/api/v1/"
DEV_TOKEN = "/api/v1/auth/dev-token"
HTTP_METHODS = ("get", "put", "post", "patch", "delete")
S, RX, NOTE, INTEG, PH, RB, AUDIT = (
    f"{API}scheduling",
    f"{API}prescriptions",
    f"{API}notifications",
    f"{API}integration",
    f"{API}pharmacy",
    f"{API}reimbursement",
    f"{API}audit",
)
WARSAW = ZoneInfo("Europe/Warsaw")
PESEL = "44051401359"  # the patient of facility A (and a patient of the same PESEL in facility B)
OTHER_PESEL = "02070803628"  # another patient of facility A
NPWZ = "5425740"  # every practitioner token: facility B's doctor claims the very NPWZ of A's
RANDOM_NPWZ = "1142542"
SECRET_WORD = "Alfa-Tajna"  # in every name facility and pharmacy A give their data
ALFA_CER_SECRET = "alfa-cer-secret-0123456789abcdef0123"
BETA_CER_SECRET = "beta-cer-secret-0123456789abcdef0123"


def _pesel(first_ten: str) -> str:
    weights = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)
    check = (10 - sum(int(d) * w for d, w in zip(first_ten, weights, strict=True)) % 10) % 10
    return f"{first_ten}{check}"


THIRD_PESEL = _pesel("8512240417")  # nobody's, anywhere: the "random" PESEL


def day(offset: int) -> str:
    return (dt.datetime.now(WARSAW).date() + dt.timedelta(days=offset)).isoformat()


# ----------------------------------------------------------------------------- tenants and tokens


@dataclass(frozen=True)
class Tenant:
    facility: str
    pharmacy: str


MATRIX = Tenant("clinic-matrix", "apteka-matrix")  # the role matrix's own tenant: nothing else uses it
ALFA = Tenant("clinic-alfa", "apteka-alfa")  # owns the seeded resources
BETA = Tenant("clinic-beta", "apteka-beta")  # the intruder
FRESH = Tenant("clinic-fresh", "apteka-fresh")  # never writes anything: what "nothing" looks like


def claims(role: Role, tenant: Tenant, pesel: str = PESEL) -> Claims:
    values: dict[str, Any] = {"sub": f"{role}@{tenant.facility}/{tenant.pharmacy}/{pesel}", "role": role}
    if role in CLINIC_ROLES or role is Role.patient:
        values["facility_id"] = tenant.facility
    if role is Role.pharmacist:
        values["pharmacy_id"] = tenant.pharmacy
    if role is Role.patient:
        values["pesel"] = pesel
    if role is Role.practitioner:
        values["npwz"] = NPWZ
    return Claims(**values)


def bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


# ----------------------------------------------------------------------------- the operations


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    roles: frozenset[Role] | None
    path_params: tuple[tuple[str, Json], ...]
    required_query: tuple[tuple[str, Json], ...]
    body_media: str | None

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def regex(self) -> re.Pattern[str]:
        parts = re.split(r"\{[^}/]+\}", self.template)
        return re.compile("[^/]+".join(re.escape(p) for p in parts))


def operations_of(spec: Json) -> list[Operation]:
    found = []
    for template, item in spec["paths"].items():
        if not template.startswith(API) or template == DEV_TOKEN:
            continue
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            params = op.get("parameters", [])
            raw_roles = op.get(ROLES_EXTENSION)
            content: dict[str, Any] = op.get("requestBody", {}).get("content", {})
            found.append(
                Operation(
                    method=method.upper(),
                    template=template,
                    roles=frozenset(Role(r) for r in raw_roles) if raw_roles is not None else None,
                    path_params=tuple((p["name"], p.get("schema", {})) for p in params if p["in"] == "path"),
                    required_query=tuple(
                        (p["name"], p.get("schema", {})) for p in params if p["in"] == "query" and p.get("required")
                    ),
                    body_media="application/json" if "application/json" in content else next(iter(content), None),
                )
            )
    return found


def path_value(name: str, schema: Json) -> str:
    """A syntactically valid value nobody has: the request gets past validation to the lookup."""
    if schema.get("format") == "uuid":
        value = str(uuid.uuid4())
    elif schema.get("format") == "date":
        value = "2030-01-01"
    elif name == "pesel":
        value = PESEL  # the patient token's own PESEL: a patient may ask about themself
    elif name == "npwz":
        value = NPWZ  # the practitioner token's own NPWZ
    elif name == "key":
        value = "1" * 44
    elif name == "number":
        value = "1234567890123456"  # the shape of an eZWM order number
    else:
        raise LookupError(f"no dummy value for path parameter {name!r} {schema}: teach path_value() its shape")
    pattern = schema.get("pattern")
    assert pattern is None or re.search(pattern, value), f"dummy {value!r} does not match {name}'s {pattern}"
    assert len(value) <= schema.get("maxLength", len(value)), f"dummy {value!r} too long for {name}"
    return value


def query_value(name: str, schema: Json) -> str:
    examples = schema.get("examples") or ([schema["example"]] if "example" in schema else [])
    if examples:
        return str(examples[0])
    if schema.get("format") == "date":
        return "2030-01-01"
    if schema.get("format") == "uuid":
        return str(uuid.uuid4())
    raise LookupError(f"no value for the required query parameter {name!r} {schema}: give it an example")


def is_problem(answer: httpx.Response) -> bool:
    if not answer.headers.get("content-type", "").startswith(PROBLEM_JSON):
        return False
    try:
        body = answer.json()
    except ValueError:
        return False
    return isinstance(body, dict) and body.get("status") == answer.status_code and "type" in body


def show(answer: httpx.Response) -> str:
    return f"{answer.status_code} {answer.headers.get('content-type', '')} {answer.text[:200]}"


# ----------------------------------------------------------------------------- the running suite


@dataclass
class Suite:
    client: httpx.AsyncClient
    app: FastAPI
    spec: Json
    forwarded: list[str] = field(default_factory=list)  # paths the gateway passed to a service
    tokens: dict[tuple[Role, Tenant, str], Headers] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        settings: Settings = self.app.state.settings
        return settings

    @property
    def operations(self) -> list[Operation]:
        return operations_of(self.spec)

    def operation(self, method: str, path: str) -> Operation:
        matches = [op for op in self.operations if op.method == method and op.regex.fullmatch(path)]
        assert matches, f"no operation {method} {path} in the gateway's OpenAPI"
        return min(matches, key=lambda op: op.template.count("{"))

    async def auth(self, role: Role, tenant: Tenant, pesel: str = PESEL) -> Headers:
        """A dev token (the endpoint the front ends use), one per role, tenant and PESEL."""
        key = (role, tenant, pesel)
        if key not in self.tokens:
            body = claims(role, tenant, pesel).model_dump(mode="json", exclude_none=True)
            answer = await self.client.post(DEV_TOKEN, json=body)
            assert answer.status_code == 200, answer.text
            self.tokens[key] = bearer(answer.json()["access_token"])
        return self.tokens[key]

    async def send(
        self,
        method: str,
        path: str,
        headers: Headers,
        *,
        params: Mapping[str, str] | None = None,
        body: Json = None,
        content: bytes | None = None,
    ) -> tuple[httpx.Response, bool]:
        """The answer, and whether the gateway forwarded the request to a service."""
        mark = len(self.forwarded)
        answer = await self.client.request(
            method, path, headers=headers, params=dict(params or {}), json=body, content=content
        )
        return answer, path in self.forwarded[mark:]

    async def call(self, op: Operation, headers: Headers) -> tuple[httpx.Response, bool]:
        """``op`` with dummy path values, its required query parameters and an empty body."""
        path = op.template
        for name, schema in op.path_params:
            path = path.replace("{" + name + "}", path_value(name, schema))
        params = {name: query_value(name, schema) for name, schema in op.required_query}
        if op.body_media == "application/json":
            return await self.send(op.method, path, headers, params=params, body={})
        if op.body_media is not None:
            return await self.send(
                op.method, path, {**headers, "content-type": op.body_media}, params=params, content=b""
            )
        return await self.send(op.method, path, headers, params=params)

    async def ok(self, method: str, path: str, headers: Headers, body: Json = None, status: int = 200) -> Json:
        answer = await self.client.request(method, path, headers=headers, json=body)
        assert answer.status_code == status, f"{method} {path}: {show(answer)}"
        return answer.json()

    def service(self, name: str) -> FastAPI:
        app: FastAPI | None = self.app.state.gateway.upstreams[name].app
        assert app is not None
        return app

    async def settle(self) -> None:
        """Every outbox published, every event consumed, every change for P1 and CeR sent."""
        gateway = self.app.state.gateway
        for _ in range(3):
            for upstream in gateway.upstreams.values():
                if upstream.app is not None:
                    await upstream.app.state.ctx.relay.publish_pending()
            await gateway.bus.drain()
        await self.service("integration").state.ctx.extras["forwarder"].forward_pending()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def suite(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Suite]:
    app = create_app(make_gateway_settings(tmp_path_factory.mktemp("authorization")))
    async for client in running_client(app, "http://gateway"):
        spec = (await client.get("/openapi.json")).json()
        suite = Suite(client, app, spec)
        for upstream in app.state.gateway.upstreams.values():
            upstream.client.event_hooks["request"].append(recorder(suite.forwarded))
        yield suite


def recorder(sink: list[str]) -> Callable[[httpx.Request], Awaitable[None]]:
    """An httpx request hook on the gateway's client of a service: what was forwarded, by path."""

    async def record(request: httpx.Request) -> None:
        sink.append(request.url.path)

    return record


# ============================================================================= part one: the matrix

# (method, template, role) -> why an admitted role may still get 403 on the matrix's dummy request
# because of its data, not its role (e.g. a patient booking for another PESEL). The matrix sends
# ``{}`` bodies and the token's own PESEL and NPWZ as path values, so no such case is reached today;
# the data-scoped refusals are asserted explicitly by the cross-patient probes below.
DATA_SCOPED_403: dict[tuple[str, str, Role], str] = {}


async def test_the_matrix_covers_every_service_and_every_operation_names_its_roles(suite: Suite) -> None:
    operations = suite.operations
    covered = {op.template.removeprefix(API).split("/")[0] for op in operations}
    assert set(SERVICES) <= covered, f"no operation of {set(SERVICES) - covered} in the gateway's OpenAPI"
    unguarded = [op.name for op in operations if not op.roles]
    assert not unguarded, f"operations without {ROLES_EXTENSION} (the gateway forwards them unchecked): {unguarded}"
    known = {(op.method, op.template, role) for op in operations for role in op.roles or ()}
    stale = [key for key in DATA_SCOPED_403 if key not in known]
    assert not stale, f"allowlisted cells that are no admitted operation × role: {stale}"


async def test_every_role_on_every_operation_is_admitted_or_refused_as_its_x_roles_say(suite: Suite) -> None:
    mismatches: list[str] = []
    cells = 0
    for op in suite.operations:
        for role in Role:
            cells += 1
            answer, forwarded = await suite.call(op, await suite.auth(role, MATRIX))
            where = f"{op.name} as {role}"
            if op.roles is None or role not in op.roles:
                if answer.status_code != 403 or not is_problem(answer):
                    mismatches.append(f"{where} (not in x-roles): want 403 problem+json, got {show(answer)}")
                elif forwarded:
                    mismatches.append(f"{where} (not in x-roles): the gateway forwarded it; only the service refused")
            elif answer.status_code in (401, 403) and (op.method, op.template, role) not in DATA_SCOPED_403:
                mismatches.append(f"{where} (in x-roles): refused with {show(answer)}")
            elif not forwarded:
                mismatches.append(f"{where} (in x-roles): the gateway did not forward it: {show(answer)}")
            elif answer.status_code >= 500:
                mismatches.append(f"{where} (in x-roles): {show(answer)}")
    assert cells == len(suite.operations) * len(Role)
    assert not mismatches, f"{len(mismatches)} of {cells} cells wrong:\n" + "\n".join(mismatches)


def bad_authorizations(who: Claims, settings: Settings) -> dict[str, Headers]:
    """Ways to present no valid token, each for the claims of a role the operation admits."""
    valid = issue_token(who, settings)
    header, payload, signature = valid.split(".")
    edited = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    edited["sub"] = "someone-else"
    forged_payload = base64.urlsafe_b64encode(json.dumps(edited).encode()).rstrip(b"=").decode()
    unsigned = {**who.model_dump(mode="json", exclude_none=True), "exp": int(time.time()) + 600}
    secret = settings.jwt_secret.get_secret_value()
    secret_signed = {**unsigned, "iat": int(time.time())}
    other_secret = settings.model_copy(update={"jwt_secret": SecretStr("not-the-gateway-secret-" + "0" * 32)})
    return {
        "no Authorization header": {},
        "not a bearer scheme": {"Authorization": f"Basic {valid}"},
        "garbage": bearer("not-a-jwt"),
        "signed with another secret": bearer(issue_token(who, other_secret)),
        "expired": bearer(issue_token(who, settings.model_copy(update={"jwt_ttl_seconds": -120}))),
        "alg none": bearer(jwt.encode(unsigned, "", algorithm="none")),
        "payload edited after signing": bearer(f"{header}.{forged_payload}.{signature}"),
        "another issuer": bearer(issue_token(who, settings.model_copy(update={"jwt_issuer": "other-suite"}))),
        "another audience": bearer(issue_token(who, settings.model_copy(update={"jwt_audience": "other-api"}))),
        "no issuer nor audience": bearer(jwt.encode(secret_signed, secret, algorithm="HS256")),
        "lifetime over the maximum": bearer(
            issue_token(who, settings.model_copy(update={"jwt_ttl_seconds": settings.max_token_ttl_seconds + 3600}))
        ),
    }


async def test_every_operation_answers_401_to_a_missing_or_bad_token_before_forwarding(suite: Suite) -> None:
    mismatches: list[str] = []
    cells = 0
    for op in suite.operations:
        role = sorted(op.roles or {Role.facility_admin})[0]
        for kind, headers in bad_authorizations(claims(role, MATRIX), suite.settings).items():
            cells += 1
            answer, forwarded = await suite.call(op, headers)
            if answer.status_code != 401 or not is_problem(answer):
                mismatches.append(f"{op.name}, {kind} ({role}): want 401 problem+json, got {show(answer)}")
            elif forwarded:
                mismatches.append(f"{op.name}, {kind} ({role}): forwarded to the service")
    assert not mismatches, f"{len(mismatches)} of {cells} wrong:\n" + "\n".join(mismatches)


# ============================================================================= part two: cross-tenant


@dataclass
class Alfa:
    """What facility A and pharmacy A own: ``ids`` by name, and data nobody else may see."""

    ids: dict[str, str]
    markers: tuple[str, ...]
    month: str
    beta: dict[str, str]  # facility B's own ids, the same in every probe


def values_of(alfa: Alfa, ids: Values) -> dict[str, str]:
    return {**alfa.beta, **ids}


def random_values(alfa: Alfa) -> dict[str, str]:
    """A value of the same shape as each of A's, that never existed anywhere."""
    values = {}
    for name, value in alfa.ids.items():
        if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", value):
            values[name] = str(uuid.uuid4())
        elif value.isdigit() and name not in ("pesel", "npwz"):
            values[name] = "".join(secrets.choice("0123456789") for _ in value)
        else:
            values[name] = value
    values.update(pesel=THIRD_PESEL, npwz=RANDOM_NPWZ, contact_email=f"nobody-{uuid.uuid4().hex[:8]}@example.pl")
    return values


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def alfa(suite: Suite) -> Alfa:
    """Facility A's and pharmacy A's resources, made through the API as their own users would."""
    admin, desk = await suite.auth(Role.facility_admin, ALFA), await suite.auth(Role.registrar, ALFA)
    doctor, apteka = await suite.auth(Role.practitioner, ALFA), await suite.auth(Role.pharmacist, ALFA)
    ids: dict[str, str] = {"pesel": PESEL, "npwz": NPWZ}
    email, phone = "alfa-tajna.pacjent@example.pl", "+48600100200"
    contact = {"email": email, "phone": phone, "channels": ["email", "sms"]}
    ids["contact_email"] = email
    await suite.ok("PUT", f"{NOTE}/patients/{PESEL}/contact", desk, contact)

    location = {"name": f"Przychodnia {SECRET_WORD}", "department_code": "0010"}
    ids["location"] = (await suite.ok("POST", f"{S}/locations", admin, location, 201))["id"]
    person = {"name": f"lek. {SECRET_WORD}", "npwz": NPWZ, "profession": "doctor", "poz": True}
    ids["practitioner"] = (await suite.ok("POST", f"{S}/practitioners", admin, person, 201))["id"]
    visit = {"name": f"Wizyta {SECRET_WORD}", "visible_online": True}
    ids["visit_type"] = (await suite.ok("POST", f"{S}/work-types", admin, visit, 201))["id"]
    rx = {"name": f"Recepty {SECRET_WORD}", "prescription_only": True}
    ids["rx_type"] = (await suite.ok("POST", f"{S}/work-types", admin, rx, 201))["id"]
    for work, start, end in (("visit_type", "08:00", "08:30"), ("rx_type", "12:00", "12:30")):
        schedule = {
            "practitioner_id": ids["practitioner"],
            "location_id": ids["location"],
            "work_type_id": ids[work],
            "date": day(1),
            "start_time": start,
            "end_time": end,
            "visit_minutes": 15,
        }
        await suite.ok("POST", f"{S}/schedules", desk, schedule, 201)
    slots = await suite.ok("GET", f"{S}/slots?work_type_id={ids['visit_type']}", desk)
    ids["booked_slot"], ids["slot"] = slots[0]["id"], slots[1]["id"]  # the second stays free
    booking = {"slot_id": ids["booked_slot"], "patient_pesel": PESEL, "source": "desk"}
    ids["booking"] = (await suite.ok("POST", f"{S}/bookings", desk, booking, 201))["id"]

    problem_email = "alfa-tajna.problemy@example.pl"
    rx_settings = {"mode": "demo", "activated_on": day(0), "problem_email": problem_email}
    await suite.ok("PUT", f"{RX}/settings", admin, rx_settings)
    await suite.ok("PUT", f"{RX}/practitioners/{NPWZ}/ordering", admin, {"enabled": True})
    drug = f"{SECRET_WORD} 10 mg"
    order = {"patient_pesel": PESEL, "practitioner_npwz": NPWZ, "location_id": ids["location"]}
    for name in ("request", "request2"):
        made = await suite.ok("POST", f"{RX}/requests", desk, {**order, "items": [{"drug": drug, "packages": 1}]}, 201)
        assert made["status"] == "booked", made
        ids[name] = made["id"]
    issue = {"issuer_npwz": NPWZ, "issuer_profession": "doctor", "prescriptions": [an_rx(drug)]}
    package = await suite.ok("POST", f"{RX}/requests/{ids['request']}/issue", doctor, issue, 201)
    ids["key"], ids["package_key"] = package["prescriptions"][0]["key"], package["package_key"]
    await suite.ok("POST", f"{RX}/patients/{PESEL}/account-drugs", desk, {"drug": f"{SECRET_WORD} forte"}, 201)

    cer = {"endpoint": f"http://gateway/webhooks/cer/{ALFA.facility}", "email": "alfa-tajna.cer@example.pl"}
    await suite.ok("PUT", f"{INTEG}/cer/settings", admin, {**cer, "secret": ALFA_CER_SECRET})
    await suite.settle()
    messages = await suite.ok("GET", f"{NOTE}/messages", admin)
    assert messages, "facility A's events led to no message"
    ids["message"] = messages[0]["id"]
    outgoing = await suite.ok("GET", f"{INTEG}/cer/outgoing", admin)
    assert outgoing, "facility A's CeR settings queued nothing for CeR"

    product = {
        "name": f"{SECRET_WORD} Sudafed",
        "marketed_on": "2020-01-01",
        "substances": [{"substance": "Pseudoephedrinum", "mg_per_package": 720}],
    }
    ids["product"] = (await suite.ok("POST", f"{PH}/products", apteka, product, 201))["id"]
    await suite.ok("PUT", f"{PH}/settings", apteka, {"psychoactive_policy": "block"})
    by_code = {"access_code": package["access_code"], "pesel": PESEL}
    await suite.ok("POST", f"{PH}/prescriptions/lookup", apteka, by_code)
    await suite.ok("POST", f"{PH}/realizations", apteka, {"key": ids["key"], "packages": 1}, 201)

    month = dt.datetime.now(WARSAW).strftime("%Y-%m")
    ezwm_order = {
        "patient_pesel": PESEL,
        "code": "P.100",
        "group": "MCH1",
        "pieces_per_month": 90,
        "months": 3,
        "start_month": month,
        "entitlements": [],
        "channel": "visit",
    }
    ids["order"] = (await suite.ok("POST", f"{RB}/orders", doctor, ezwm_order, 201))["number"]
    realisation = {
        "months": [month],
        "pieces": 90,
        "unit_price": "1.50",
        "realized_on": dt.datetime.now(WARSAW).date().isoformat(),
        "pesel": PESEL,
    }
    realised = await suite.ok("POST", f"{RB}/orders/{ids['order']}/realizations", apteka, realisation, 201)
    ids["realisation"] = realised["id"]
    await suite.settle()

    # Facility B's own: a location (to point at A's practitioner from it) and active ordering (so a
    # prescription request as B gets as far as its location).
    beta_admin = await suite.auth(Role.facility_admin, BETA)
    beta = {"b_location": (await suite.ok("POST", f"{S}/locations", beta_admin, {"name": "Beta"}, 201))["id"]}
    await suite.ok("PUT", f"{RX}/settings", beta_admin, {**rx_settings, "problem_email": "beta@example.pl"})
    markers = (
        ALFA.facility,
        ALFA.pharmacy,
        SECRET_WORD,
        email,
        phone,
        problem_email,
        cer["email"],
        cer["endpoint"],
        *(m["id"] for m in messages),
        *(o["reference"] for o in outgoing),
    )
    return Alfa(ids=ids, markers=markers, month=month, beta=beta)


def an_rx(drug: str) -> dict[str, Any]:
    return {"drug": drug, "packages": 2, "units_per_package": "30", "daily_dose_units": "1"}


@dataclass(frozen=True)
class Probe:
    """One request at A's resources. ``path``, ``body`` and ``params`` name values as ``{name}``.

    ``compare``: "random" -- the same intruder with random values must get the same answer (the ids
    aside); "fresh" -- a tenant that never wrote anything must get the same answer; None -- the
    intruder has data of its own there, only the leak check applies. ``owner``: the status A's own
    same role gets for A's values, and then A's data is in that answer (the probe reaches data).
    ``roles``: default every role of facility or pharmacy the operation admits.
    """

    method: str
    path: str
    expect: tuple[int, ...]
    body: Json = None
    params: Mapping[str, str] | None = None
    compare: Literal["random", "fresh"] | None = "random"
    owner: int | None = None
    roles: tuple[Role, ...] | None = None


_PLACEHOLDER = re.compile(r"^\{(\w+)\}$")


def fill(node: Json, values: Values) -> Json:
    if isinstance(node, str):
        found = _PLACEHOLDER.match(node)
        return values[found.group(1)] if found else node
    if isinstance(node, dict):
        return {k: fill(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [fill(v, values) for v in node]
    return node


@dataclass(frozen=True)
class Sent:
    answer: httpx.Response
    request_text: str


async def send_probe(suite: Suite, probe: Probe, headers: Headers, values: Values) -> Sent:
    path = probe.path.format_map(values)
    params: dict[str, str] = fill(dict(probe.params or {}), values)
    body = fill(probe.body, values)
    answer, _ = await suite.send(probe.method, path, headers, params=params, body=body)
    return Sent(answer, f"{path} {json.dumps(params)} {json.dumps(body)}".lower())


def normalised(answer: httpx.Response, values: Values) -> tuple[int, str, Json]:
    """The answer with each value (and each tenant's id) replaced by its name."""
    text = answer.text
    names = {v: f"<{k}>" for k, v in values.items()}
    for tenant in (ALFA, BETA, FRESH):
        names[tenant.facility], names[tenant.pharmacy] = "<facility>", "<pharmacy>"
    for value in sorted(names, key=len, reverse=True):
        text = text.replace(value, names[value])
    try:
        body: Json = json.loads(text)
    except ValueError:
        body = text
    return answer.status_code, answer.headers.get("content-type", ""), body


def leaked(sent: Sent, secrets_of_a: Iterable[str]) -> list[str]:
    """A's data in the answer that the request did not itself carry."""
    text = sent.answer.text.lower()
    return [s for s in secrets_of_a if s.lower() in text and s.lower() not in sent.request_text]


Intruder = Callable[[Role, Values], Awaitable[Headers]]


async def run_probes(suite: Suite, alfa: Alfa, probes: Iterable[Probe], intruder: Intruder) -> list[str]:
    mismatches: list[str] = []
    secrets_of_a = (*alfa.markers, *alfa.ids.values())
    for probe in probes:
        random = values_of(alfa, random_values(alfa))
        op = suite.operation(probe.method, probe.path.format_map(random))
        admitted = sorted((op.roles or frozenset()) - {Role.operator})
        for role in probe.roles or admitted:
            where = f"{probe.method} {probe.path} {dict(probe.params or {})} as {role}"
            if role not in admitted:
                mismatches.append(f"{where}: the role is not admitted, the probe tests nothing")
                continue
            mine = values_of(alfa, alfa.ids)
            sent = await send_probe(suite, probe, await intruder(role, mine), mine)
            answer = sent.answer
            if answer.status_code not in probe.expect:
                mismatches.append(f"{where}: want {probe.expect}, got {show(answer)}")
            if answer.status_code >= 400 and not is_problem(answer):
                mismatches.append(f"{where}: not problem+json: {show(answer)}")
            if found := leaked(sent, secrets_of_a):
                mismatches.append(f"{where}: reveals A's {found}: {show(answer)}")
            if probe.compare == "random":
                other = (await send_probe(suite, probe, await intruder(role, random), random)).answer
                if normalised(answer, mine) != normalised(other, random):
                    mismatches.append(f"{where}: differs from a random id's answer: {show(answer)} / {show(other)}")
            elif probe.compare == "fresh":
                fresh = await suite.auth(role, FRESH, PESEL)
                other = (await send_probe(suite, probe, fresh, mine)).answer
                if normalised(answer, mine) != normalised(other, mine):
                    mismatches.append(f"{where}: differs from a fresh tenant's: {show(answer)} / {show(other)}")
            if probe.owner is not None:
                own = await send_probe(suite, probe, await suite.auth(role, ALFA, PESEL), mine)
                if own.answer.status_code != probe.owner:
                    mismatches.append(f"{where}: A's own {role} gets {show(own.answer)}, not {probe.owner}")
                elif probe.owner < 300 and not leaked(own, secrets_of_a):
                    mismatches.append(f"{where}: A's own {role} sees none of A's data: the probe reaches nothing")
    return mismatches


def tenant_probes(alfa: Alfa) -> list[Probe]:
    """Facility B's and pharmacy B's roles at facility A's and pharmacy A's resources."""
    booking = {"slot_id": "{slot}", "patient_pesel": "{pesel}", "source": "portal"}
    request = {
        "patient_pesel": "{pesel}",
        "practitioner_npwz": NPWZ,
        "location_id": "{location}",
        "items": [{"drug": "Betamol 5", "packages": 1}],
        "source": "portal",
    }
    schedule = {
        "practitioner_id": "{practitioner}",
        "location_id": "{location}",
        "work_type_id": "{visit_type}",
        "date": day(5),
        "start_time": "08:00",
        "end_time": "09:00",
        "visit_minutes": 15,
    }
    earliest = {
        "practitioner_id": "{practitioner}",
        "start_after": dt.datetime.now(dt.UTC).isoformat(),
        "patient_pesel": "{pesel}",
        "source": "desk",
    }
    issue = {"issuer_npwz": NPWZ, "issuer_profession": "doctor", "prescriptions": [an_rx("Betamol 5")]}
    contact = {"email": "beta.pacjent@example.pl", "phone": "+48600999888", "channels": ["email"]}
    product = {
        "name": "Beta Sudafed",
        "marketed_on": "2021-01-01",
        "substances": [{"substance": "Pseudoephedrinum", "mg_per_package": 360}],
    }
    realisation = {
        "months": [alfa.month],
        "pieces": 10,
        "unit_price": "1.50",
        "realized_on": dt.datetime.now(WARSAW).date().isoformat(),
    }
    doctors = (Role.practitioner, Role.facility_admin)
    return [
        # scheduling: by id in the path
        Probe("GET", S + "/locations/{location}", (404,), owner=200),
        Probe("PUT", S + "/locations/{location}/duty-practitioner", (404,), {"practitioner_id": "{practitioner}"}),
        Probe("POST", S + "/practitioners/{practitioner}/absences", (404,), {"date_from": day(1), "date_to": day(1)}),
        Probe("GET", S + "/bookings/{booking}", (404,), owner=200),
        Probe("POST", S + "/bookings/{booking}/cancel", (404,)),
        # scheduling: by id in the body or the query
        Probe("PUT", S + "/locations/{b_location}/duty-practitioner", (422,), {"practitioner_id": "{practitioner}"}),
        Probe("POST", S + "/bookings", (422,), booking),
        Probe("POST", S + "/bookings/earliest", (404,), earliest),
        Probe("POST", S + "/schedules", (422,), schedule),
        Probe("GET", S + "/slots", (200,), params={"practitioner_id": "{practitioner}"}, owner=200),
        Probe("GET", S + "/slots", (200,), params={"location_id": "{location}"}, owner=200),
        Probe("GET", S + "/slots", (200,), params={"work_type_id": "{visit_type}"}, owner=200),
        Probe("GET", S + "/practitioners", (200,), params={"npwz": "{npwz}"}, owner=200),
        # scheduling: the listings
        Probe("GET", S + "/locations", (200,), compare=None, owner=200),
        Probe("GET", S + "/practitioners", (200,), compare="fresh", owner=200),
        Probe("GET", S + "/work-types", (200,), compare="fresh", owner=200),
        Probe("GET", S + "/slots", (200,), compare="fresh", owner=200),
        Probe("GET", S + "/bookings", (200,), compare="fresh", owner=200),
        # prescriptions
        Probe("GET", RX + "/requests/{request}", (404,), owner=200),
        Probe("POST", RX + "/requests/{request2}/issue", (404,), issue),
        Probe("GET", RX + "/prescriptions/{key}", (404,), owner=200),
        Probe("POST", RX + "/prescriptions/{key}/cancel", (404,)),
        Probe("GET", RX + "/patients/{pesel}/account-drugs", (200,), owner=200),
        Probe("POST", RX + "/patients/{pesel}/account-drugs", (201,), {"drug": "Betamol 5"}),
        Probe("PUT", RX + "/practitioners/{npwz}/ordering", (200,), {"enabled": False}),
        Probe("POST", RX + "/requests", (422,), request),
        Probe("GET", RX + "/requests", (200,), params={"patient_pesel": "{pesel}"}, owner=200),
        Probe("GET", RX + "/requests", (200,), compare="fresh", owner=200),
        Probe("GET", RX + "/settings", (200,), compare=None, owner=200),
        # notifications
        Probe("GET", NOTE + "/patients/{pesel}/contact", (200,), owner=200),
        Probe("PUT", NOTE + "/patients/{pesel}/contact", (200,), contact),
        Probe("GET", NOTE + "/messages", (200,), compare="fresh", owner=200),
        Probe("GET", NOTE + "/messages", (200,), params={"recipient": "{contact_email}"}, owner=200),
        Probe("POST", NOTE + "/messages/{message}/replay", (404,)),
        # integration
        Probe("GET", INTEG + "/cer/settings", (404,), compare="fresh", owner=200),
        Probe("GET", INTEG + "/cer/outgoing", (200,), compare="fresh", owner=200),
        Probe("GET", INTEG + "/p1/outgoing", (200,), compare="fresh", owner=200),
        Probe("GET", INTEG + "/ikp/status", (200,), compare="fresh"),
        Probe("GET", INTEG + "/ikp/poller/candidates", (200,), compare=None, owner=200),
        Probe("GET", INTEG + "/cer/compliance", (200,), compare="fresh"),
        Probe("GET", INTEG + "/cer/contracts", (200,), compare="fresh"),
        # pharmacy
        Probe("GET", PH + "/products/{product}", (404,), owner=200),
        Probe("PUT", PH + "/products/{product}", (404,), product),
        Probe("GET", PH + "/products", (200,), compare="fresh", owner=200),
        Probe("GET", PH + "/products", (200,), params={"name": SECRET_WORD}, compare="fresh", owner=200),
        Probe(
            "POST",
            PH + "/sales/check",
            (404, 422),
            {"buyer_age": 30, "lines": [{"product_id": "{product}", "packages": 1}]},
        ),
        Probe(
            "POST",
            PH + "/sales/refusals",
            (422,),
            {"lines": [{"product_id": "{product}", "packages": 1}], "reason": "non-medical use"},
        ),
        # The scanned key opens its prescription in any pharmacy (DOMAIN.md 4: it is the patient's secret,
        # shown at the counter), so only what another pharmacy may DO with A's key is probed: realising the
        # rest of a prescription partly realised in A is 409, naming nothing of A.
        Probe("POST", PH + "/realizations", (409,), {"key": "{key}", "packages": 1}, compare=None),
        Probe("GET", PH + "/settings", (200,), compare="fresh"),
        # reimbursement: an order is its issuing facility's; a pharmacy finds one only with the patient's
        # identifier (any pharmacy may realise an order the patient brings: that is eZWM's design)
        Probe("GET", RB + "/orders/{order}", (404,), owner=200, roles=doctors),
        Probe("GET", RB + "/orders/{order}", (404,), params={"pesel": OTHER_PESEL}, roles=(Role.pharmacist,)),
        Probe("POST", RB + "/orders/{order}/end", (404,), {"end_month": alfa.month}),
        Probe("POST", RB + "/orders/{order}/realizations", (404,), {**realisation, "pesel": OTHER_PESEL}),
        Probe("GET", RB + "/settlements", (200,), params={"month": alfa.month}, compare="fresh", owner=200),
        # audit: B's administrator and B's patient of the same PESEL see B's rows (their own probes made
        # some), never A's; A's own see the accesses to A's data. B's rows name B's own users, whose
        # `sub` here carries the PESEL: the listing is probed where the request itself names the PESEL,
        # or for an action of A's that B's probes never achieved (a booking).
        Probe("GET", AUDIT + "/events", (200,), params={"action": "scheduling.booking.create"}, owner=200),
        Probe("GET", AUDIT + "/events", (200,), params={"patient_pesel": "{pesel}"}, compare=None, owner=200),
        Probe("GET", AUDIT + "/me", (200,), compare=None, owner=200),
    ]


def patient_probes() -> list[Probe]:
    """Another patient of facility A (OTHER_PESEL) at the patient's (PESEL's) resources."""
    patient = (Role.patient,)
    contact = {"email": "ktos.inny@example.pl", "channels": ["email"]}
    request = {
        "patient_pesel": "{pesel}",
        "practitioner_npwz": NPWZ,
        "location_id": "{location}",
        "items": [{"drug": "Betamol 5", "packages": 1}],
        "source": "portal",
    }
    return [
        Probe("GET", S + "/bookings/{booking}", (404,), owner=200, roles=patient),
        Probe("POST", S + "/bookings/{booking}/cancel", (404,), roles=patient),
        Probe("GET", RX + "/requests/{request}", (404,), owner=200, roles=patient),
        Probe("GET", RX + "/patients/{pesel}/account-drugs", (404,), owner=200, roles=patient),
        Probe("GET", NOTE + "/patients/{pesel}/contact", (404,), owner=200, roles=patient),
        Probe("PUT", NOTE + "/patients/{pesel}/contact", (404,), contact, roles=patient),
        # API.md: 403 for "wrong tenant": a patient books and orders for themself only
        Probe("POST", S + "/bookings", (403,), {"slot_id": "{slot}", "patient_pesel": "{pesel}"}, roles=patient),
        Probe("POST", RX + "/requests", (403,), request, roles=patient),
        Probe("GET", AUDIT + "/me", (200,), compare=None, owner=200, roles=patient),
    ]


# Operations no cross-tenant probe needs, and why.
NOT_TENANT_SCOPED = {
    f"PUT {RB}/rule-sets/{{valid_from}}/monthly-limits": "global rule data; only the operator, bound to no tenant",
    f"GET {RB}/rule-sets": "the global, dated rule table: the same for everyone",
    f"GET {INTEG}/cer/specialties": "the global, dated CeR table: the same for every facility",
}


async def test_every_operation_with_an_id_or_a_listing_has_a_cross_tenant_probe(suite: Suite, alfa: Alfa) -> None:
    random = values_of(alfa, random_values(alfa))
    probed = {suite.operation(p.method, p.path.format_map(random)).name for p in tenant_probes(alfa)}
    probed |= {suite.operation(p.method, p.path.format_map(random)).name for p in patient_probes()}
    tenant_roles = set(Role) - {Role.operator}
    wanted = {
        op.name
        for op in suite.operations
        if op.roles and op.roles & tenant_roles and ("{" in op.template or op.method == "GET")
    }
    unprobed = sorted(wanted - probed - set(NOT_TENANT_SCOPED))
    assert not unprobed, f"operations with ids or listings that no cross-tenant probe tries: {unprobed}"
    assert not set(NOT_TENANT_SCOPED) - {op.name for op in suite.operations}, "stale NOT_TENANT_SCOPED entries"


async def alfa_state(suite: Suite, alfa: Alfa) -> dict[str, Json]:
    """What facility A and pharmacy A see of their own resources."""
    ids = alfa.ids
    admin, desk = await suite.auth(Role.facility_admin, ALFA), await suite.auth(Role.registrar, ALFA)
    doctor, apteka = await suite.auth(Role.practitioner, ALFA), await suite.auth(Role.pharmacist, ALFA)
    reads: dict[str, tuple[Headers, str]] = {
        "location": (admin, f"{S}/locations/{ids['location']}"),
        "practitioners": (admin, f"{S}/practitioners"),
        "booking": (desk, f"{S}/bookings/{ids['booking']}"),
        "slots": (desk, f"{S}/slots"),
        "bookings": (desk, f"{S}/bookings"),
        "request2": (desk, f"{RX}/requests/{ids['request2']}"),
        "prescription": (admin, f"{RX}/prescriptions/{ids['key']}"),
        "account drugs": (desk, f"{RX}/patients/{PESEL}/account-drugs"),
        "prescription settings": (admin, f"{RX}/settings"),
        "contact": (desk, f"{NOTE}/patients/{PESEL}/contact"),
        "cer settings": (admin, f"{INTEG}/cer/settings"),
        "product": (apteka, f"{PH}/products/{ids['product']}"),
        "pharmacy settings": (apteka, f"{PH}/settings"),
        "order": (doctor, f"{RB}/orders/{ids['order']}"),
        "settlement": (apteka, f"{RB}/settlements?month={alfa.month}"),
    }
    state = {name: await suite.ok("GET", path, headers) for name, (headers, path) in reads.items()}
    state["dispensable"] = await suite.ok("POST", f"{PH}/prescriptions/lookup", apteka, {"key": ids["key"]})
    return state


async def test_another_facility_or_pharmacy_reaches_nothing_of_this_ones(suite: Suite, alfa: Alfa) -> None:
    before = await alfa_state(suite, alfa)

    async def beta(role: Role, values: Values) -> Headers:
        return await suite.auth(role, BETA, values["pesel"])

    mismatches = await run_probes(suite, alfa, tenant_probes(alfa), beta)
    await suite.settle()
    after = await alfa_state(suite, alfa)
    changed = [
        f"{name} of A changed: {before[name]} -> {after[name]}" for name in before if before[name] != after[name]
    ]
    problems = mismatches + changed
    assert not problems, f"{len(problems)} cross-tenant problems:\n" + "\n".join(problems)


async def test_a_patient_reaches_nothing_of_another_patient_of_the_same_facility(suite: Suite, alfa: Alfa) -> None:
    before = await alfa_state(suite, alfa)

    async def other_patient(role: Role, values: Values) -> Headers:
        return await suite.auth(role, ALFA, OTHER_PESEL)

    mismatches = await run_probes(suite, alfa, patient_probes(), other_patient)
    await suite.settle()
    after = await alfa_state(suite, alfa)
    changed = [
        f"{name} of A changed: {before[name]} -> {after[name]}" for name in before if before[name] != after[name]
    ]
    problems = mismatches + changed
    assert not problems, f"{len(problems)} cross-patient problems:\n" + "\n".join(problems)


def signed(secret: str, body: bytes) -> Headers:
    timestamp = int(time.time())
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {
        "content-type": "application/json",
        "x-cer-timestamp": str(timestamp),
        "x-cer-signature": f"sha256={digest}",
    }


async def test_a_cer_notification_signed_for_another_facility_books_nothing_here(suite: Suite, alfa: Alfa) -> None:
    """Runs last: its control books facility A's free slot through A's own CeR notification."""
    admin_a, desk_a = await suite.auth(Role.facility_admin, ALFA), await suite.auth(Role.registrar, ALFA)
    cer_a = await suite.ok("GET", f"{INTEG}/cer/settings", admin_a)
    beta_cer = {"endpoint": f"http://gateway/webhooks/cer/{BETA.facility}", "email": "cer@beta.example.pl"}
    beta_admin = await suite.auth(Role.facility_admin, BETA)
    await suite.ok("PUT", f"{INTEG}/cer/settings", beta_admin, {**beta_cer, "secret": BETA_CER_SECRET})
    assert await suite.ok("GET", f"{INTEG}/cer/settings", admin_a) == cer_a

    def notification() -> bytes:
        return json.dumps(
            {
                "event_id": uuid.uuid4().hex,
                "event_type": "booking_created_ikp",
                "occurred_at": dt.datetime.now(dt.UTC).isoformat(),
                "slot_id": alfa.ids["slot"],
                "patient_pesel": OTHER_PESEL,
            }
        ).encode()

    async def slot_of_a() -> str:
        slots = await suite.ok("GET", f"{S}/slots", desk_a)
        status: str = next(s["status"] for s in slots if s["id"] == alfa.ids["slot"])
        return status

    body = notification()
    to_beta = await suite.client.post(
        f"/webhooks/cer/{BETA.facility}", content=body, headers=signed(BETA_CER_SECRET, body)
    )
    forged = await suite.client.post(
        f"/webhooks/cer/{ALFA.facility}", content=body, headers=signed(BETA_CER_SECRET, body)
    )
    await suite.settle()
    assert to_beta.status_code == 204, show(to_beta)
    assert forged.status_code == 401 and is_problem(forged), show(forged)
    assert ALFA_CER_SECRET not in forged.text and alfa.ids["slot"] not in forged.text
    assert await slot_of_a() == "free"  # B's CeR cannot book A's slot

    control = notification()  # the same notification, signed for A, does book it
    to_alfa = await suite.client.post(
        f"/webhooks/cer/{ALFA.facility}", content=control, headers=signed(ALFA_CER_SECRET, control)
    )
    await suite.settle()
    assert to_alfa.status_code == 204, show(to_alfa)
    assert await slot_of_a() == "booked"

"""An OpenID Connect provider's tokens (Keycloak, Entra ID): checked against the keys it publishes.

A real HTTP server on 127.0.0.1 plays the provider: it publishes a JWKS (and the discovery document)
with keys generated here, and counts how often it is asked.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from shared.auth import Principal, Role, authenticate
from shared.problems import Forbidden, ProblemError, Unauthorized
from shared.settings import Settings

AUDIENCE = "ehealth-api"
PESEL = "44051401359"


@dataclass
class Provider:
    """The identity provider: its signing keys by kid, what it publishes, and how often it was asked."""

    url: str = ""
    keys: dict[str, Any] = field(default_factory=dict)
    published: list[str] = field(default_factory=list)
    jwks_requests: int = 0
    discovery_issuer: str | None = None  # what the discovery document claims; None: the real issuer

    @property
    def issuer(self) -> str:
        return f"{self.url}/realms/clinic"

    def add_rsa(self, kid: str, *, publish: bool = True) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if publish:
            self.published.append(kid)

    def add_ec(self, kid: str) -> None:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())
        self.published.append(kid)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid in self.published:
            key = self.keys[kid]
            if isinstance(key, rsa.RSAPrivateKey):
                jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
                jwk["alg"] = "RS256"
            else:
                jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
                jwk["alg"] = "ES256"
            keys.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": keys}

    def token(self, claims: dict[str, Any], *, kid: str = "k1", algorithm: str | None = None, **changes: Any) -> str:
        now = int(time.time())
        payload = {"iss": self.issuer, "aud": AUDIENCE, "iat": now, "exp": now + 300, "sub": "user-1", **claims}
        payload.update(changes)
        payload = {k: v for k, v in payload.items() if v is not None}
        key = self.keys[kid]
        alg = algorithm or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
        return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})

    def public_pem(self, kid: str) -> bytes:
        return bytes(
            self.keys[kid]
            .public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )


@pytest.fixture
def provider() -> Iterator[Provider]:
    state = Provider()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/realms/clinic/protocol/openid-connect/certs":
                state.jwks_requests += 1
                self._json(state.jwks())
            elif self.path == "/realms/clinic/.well-known/openid-configuration":
                issuer = state.discovery_issuer or state.issuer
                self._json({"issuer": issuer, "jwks_uri": f"{state.issuer}/protocol/openid-connect/certs"})
            else:
                self.send_error(404)

        def _json(self, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    state.add_rsa("k1")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def oidc_settings(provider: Provider, *, discovery: bool = False, **changes: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "oidc_issuer": provider.issuer,
        "oidc_audience": AUDIENCE,
        "oidc_jwks_url": None if discovery else f"{provider.issuer}/protocol/openid-connect/certs",
        **changes,
    }
    return Settings(**values)


KEYCLOAK = {
    "oidc_role_claim": "realm_access.roles",
    "oidc_role_map": {"ehealth-desk": "registrar", "ehealth-doctor": "practitioner"},
    "oidc_facility_id_claim": "ehealth.facility",
    "oidc_npwz_claim": "ehealth.npwz",
    "oidc_sub_claim": "preferred_username",
}


async def principal(token: str, settings: Settings) -> Principal:
    return await authenticate(f"Bearer {token}", settings)


# ----------------------------------------------------------------------------- accepted


async def test_a_keycloak_token_is_mapped_to_the_suites_claims(provider: Provider) -> None:
    settings = oidc_settings(provider, **KEYCLOAK)
    token = provider.token(
        {
            "preferred_username": "dr.nowak",
            "realm_access": {"roles": ["offline_access", "ehealth-doctor", "default-roles-clinic"]},
            "ehealth": {"facility": "clinic-a", "npwz": "5425740"},
        }
    )
    who = await principal(token, settings)
    assert (who.sub, who.role, who.facility_id, who.npwz) == ("dr.nowak", Role.practitioner, "clinic-a", "5425740")


async def test_an_entra_style_token_with_a_roles_list_and_plain_claim_names(provider: Provider) -> None:
    settings = oidc_settings(provider, oidc_role_claim="roles", oidc_sub_claim="oid", oidc_pesel_claim="pesel")
    token = provider.token({"oid": "0f1e-77", "roles": ["patient"], "pesel": PESEL})
    who = await principal(token, settings)
    assert (who.sub, who.role, who.pesel) == ("0f1e-77", Role.patient, PESEL)


async def test_a_claim_name_with_dots_is_read_as_is_first(provider: Provider) -> None:
    settings = oidc_settings(provider, oidc_pharmacy_id_claim="https://ehealth.example/pharmacy_id")
    token = provider.token({"role": "pharmacist", "https://ehealth.example/pharmacy_id": "apteka-7"})
    assert (await principal(token, settings)).pharmacy_id == "apteka-7"


async def test_an_es256_token_is_accepted(provider: Provider) -> None:
    provider.add_ec("ec1")
    token = provider.token({"role": "registrar", "facility_id": "clinic-a"}, kid="ec1")
    assert (await principal(token, oidc_settings(provider))).role == Role.registrar


async def test_the_keys_are_fetched_once_and_then_served_from_the_cache(provider: Provider) -> None:
    settings = oidc_settings(provider)
    for n in range(5):
        token = provider.token({"role": "registrar", "facility_id": "clinic-a", "sub": f"desk-{n}"})
        assert (await principal(token, settings)).sub == f"desk-{n}"
    assert provider.jwks_requests == 1


async def test_an_unknown_kid_refreshes_the_keys_once_a_rotated_key_is_published(provider: Provider) -> None:
    settings = oidc_settings(provider, oidc_jwks_refresh_cooldown_seconds=0)
    await principal(provider.token({"role": "registrar", "facility_id": "clinic-a"}), settings)
    provider.add_rsa("k2")  # the provider rotates its key after the suite cached the set
    rotated = provider.token({"role": "registrar", "facility_id": "clinic-a"}, kid="k2")
    assert (await principal(rotated, settings)).role == Role.registrar
    assert provider.jwks_requests == 2


async def test_unknown_kids_within_the_cooldown_do_not_reach_the_provider(provider: Provider) -> None:
    settings = oidc_settings(provider, oidc_jwks_refresh_cooldown_seconds=3600)
    await principal(provider.token({"role": "registrar", "facility_id": "clinic-a"}), settings)
    provider.add_rsa("random", publish=False)
    for _ in range(3):
        with pytest.raises(Unauthorized, match="key the identity provider does not publish"):
            await principal(provider.token({"role": "registrar", "facility_id": "f"}, kid="random"), settings)
    assert provider.jwks_requests == 1


async def test_the_keys_are_found_through_discovery(provider: Provider) -> None:
    settings = oidc_settings(provider, discovery=True)
    assert (await principal(provider.token({"role": "operator"}), settings)).role == Role.operator


async def test_a_discovery_document_of_another_issuer_is_not_trusted(provider: Provider) -> None:
    provider.discovery_issuer = "https://evil.example/realms/clinic"
    with pytest.raises(ProblemError) as caught:
        await principal(provider.token({"role": "operator"}), oidc_settings(provider, discovery=True))
    assert caught.value.status == 503


async def test_an_unreachable_provider_is_503_not_401(provider: Provider) -> None:
    settings = oidc_settings(provider, oidc_jwks_url="http://127.0.0.1:9/certs", http_timeout_seconds=1)
    with pytest.raises(ProblemError) as caught:
        await principal(provider.token({"role": "operator"}), settings)
    assert (caught.value.status, caught.value.code) == (503, "identity-provider-unavailable")


# ----------------------------------------------------------------------------- refused

ADMIN = {"role": "facility_admin", "facility_id": "clinic-a"}


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"iss": "https://other.example/realms/clinic"}, "issuer"),
        ({"aud": "another-client"}, "audience"),
        ({"aud": None}, "aud"),
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"nbf": int(time.time()) + 600}, "not valid yet"),
        ({"iat": int(time.time()) + 600}, "not valid yet"),
        ({"iat": None}, "iat"),
        ({"exp": None}, "exp"),
        # Valid now, but issued to live 13 hours (the limit is 12) ...
        ({"iat": int(time.time()) - 60, "exp": int(time.time()) + 13 * 3600}, "longer than"),
        # ... or dated back to hide it.
        ({"iat": int(time.time()) - 11 * 3600, "exp": int(time.time()) + 12 * 3600 + 600}, "longer than"),
    ],
)
async def test_a_token_with_a_wrong_claim_is_401(provider: Provider, changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(Unauthorized, match=reason):
        await principal(provider.token(ADMIN, **changes), oidc_settings(provider))


async def test_the_maximum_lifetime_is_configurable(provider: Provider) -> None:
    now = int(time.time())
    token = provider.token(ADMIN, iat=now, exp=now + 600)
    assert (await principal(token, oidc_settings(provider))).role == Role.facility_admin
    with pytest.raises(Unauthorized, match="longer than the 300 seconds"):
        await principal(token, oidc_settings(provider, max_token_ttl_seconds=300, jwt_ttl_seconds=300))


async def test_a_token_signed_by_a_key_the_provider_does_not_publish_is_401(provider: Provider) -> None:
    provider.add_rsa("stolen", publish=False)
    forged = provider.token(ADMIN, kid="stolen")
    # The same kid as the published key: only the signature can tell.
    relabelled = jwt.encode(
        jwt.decode(forged, options={"verify_signature": False}), provider.keys["stolen"], "RS256", {"kid": "k1"}
    )
    for token in (forged, relabelled):
        with pytest.raises(Unauthorized):
            await principal(token, oidc_settings(provider, oidc_jwks_refresh_cooldown_seconds=0))


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_algorithm_confusion_hs256_signed_with_the_public_key_is_401(provider: Provider) -> None:
    # An attacker who knows the provider's public key signs an HS256 token with it as the HMAC secret,
    # hoping the verifier uses "the key" with whatever algorithm the token names.
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": AUDIENCE, "iat": now, "exp": now + 300, "sub": "x", **ADMIN}
    signing_input = (
        f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': 'k1'}).encode())}.{b64(json.dumps(claims).encode())}"
    )
    signature = hmac.new(provider.public_pem("k1"), signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(Unauthorized):
        await principal(f"{signing_input}.{b64(signature)}", oidc_settings(provider))


async def test_an_unsigned_token_is_401(provider: Provider) -> None:
    now = int(time.time())
    claims = {"iss": provider.issuer, "aud": AUDIENCE, "iat": now, "exp": now + 300, "sub": "x", **ADMIN}
    for header in ({"alg": "none", "kid": "k1"}, {"alg": "None", "kid": "k1"}):
        token = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."
        with pytest.raises(Unauthorized):
            await principal(token, oidc_settings(provider))


async def test_an_rs256_token_is_refused_when_no_provider_is_configured(provider: Provider) -> None:
    with pytest.raises(Unauthorized):
        await principal(provider.token(ADMIN), Settings(environment="test"))
    assert provider.jwks_requests == 0


async def test_only_the_configured_algorithms_are_accepted(provider: Provider) -> None:
    token = provider.token(ADMIN, algorithm="RS512")
    with pytest.raises(Unauthorized):
        await principal(token, oidc_settings(provider))
    assert (await principal(token, oidc_settings(provider, oidc_algorithms=["RS512"]))).role == Role.facility_admin


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        (["offline_access", "uma_authorization"], "no role of the suite"),
        ([], "no role of the suite"),
        (["ehealth-desk", "ehealth-doctor"], "more than one role"),
    ],
)
async def test_a_token_granting_no_or_several_suite_roles_is_403(
    provider: Provider, roles: list[str], message: str
) -> None:
    token = provider.token(
        {"preferred_username": "x", "realm_access": {"roles": roles}, "ehealth": {"facility": "clinic-a"}}
    )
    with pytest.raises(Forbidden, match=message):
        await principal(token, oidc_settings(provider, **KEYCLOAK))


async def test_a_role_without_the_claims_it_needs_is_401_naming_them(provider: Provider) -> None:
    token = provider.token({"role": "pharmacist"})
    with pytest.raises(Unauthorized, match="pharmacy_id"):
        await principal(token, oidc_settings(provider))
    bad_pesel = provider.token({"role": "patient", "pesel": "44051401358"})
    with pytest.raises(Unauthorized, match="pesel"):
        await principal(bad_pesel, oidc_settings(provider))


async def test_the_suites_own_tokens_still_work_beside_the_provider(provider: Provider) -> None:
    from shared.auth import Claims, issue_token

    settings = oidc_settings(provider)
    own = issue_token(Claims(sub="scheduling-client", role=Role.registrar, facility_id="clinic-a"), settings)
    assert (await principal(own, settings)).sub == "scheduling-client"
    assert provider.jwks_requests == 0


def test_an_issuer_without_an_audience_is_refused() -> None:
    with pytest.raises(ValueError, match="OIDC_AUDIENCE"):
        Settings(environment="test", oidc_issuer="https://idp.example/realms/clinic")


def test_a_role_map_onto_no_suite_role_is_refused() -> None:
    with pytest.raises(ValueError, match="superuser"):
        Settings(environment="test", oidc_role_map={"admins": "superuser"})


async def test_a_provider_token_goes_through_the_gateway_and_the_service(provider: Provider, tmp_path: Path) -> None:
    from gateway.app import create_app
    from tests.conftest import make_gateway_settings, running_client

    settings = make_gateway_settings(
        tmp_path,
        oidc_issuer=provider.issuer,
        oidc_audience=AUDIENCE,
        oidc_jwks_url=f"{provider.issuer}/protocol/openid-connect/certs",
        **KEYCLOAK,
    )
    desk = provider.token(
        {"preferred_username": "desk", "realm_access": {"roles": ["ehealth-desk"]}, "ehealth": {"facility": "clinic-a"}}
    )
    async for client in running_client(create_app(settings)):
        # The gateway checks the role; the service (which gets the same token) its tenant.
        answer = await client.get("/api/v1/scheduling/locations", headers={"Authorization": f"Bearer {desk}"})
        assert answer.status_code == 200, answer.text
        assert answer.json() == []
        admin_only = await client.post(
            "/api/v1/scheduling/locations", json={"name": "Filia"}, headers={"Authorization": f"Bearer {desk}"}
        )
        assert admin_only.status_code == 403
        foreign = provider.token({"role": "registrar", "facility_id": "clinic-a"}, aud="another-client")
        refused = await client.get("/api/v1/scheduling/locations", headers={"Authorization": f"Bearer {foreign}"})
        assert refused.status_code == 401
        assert refused.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "values",
    [
        {"oidc_issuer": "http://sso.example/realms/clinic"},
        {"oidc_issuer": "https://sso.example/realms/clinic", "oidc_jwks_url": "http://sso.example/certs"},
    ],
)
def test_production_fetches_the_providers_keys_over_https_only(values: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="https"):
        Settings(environment="production", dev_auth=False, jwt_secret="s3" * 20, oidc_audience="api", **values)
    secure = {k: v.replace("http://", "https://") for k, v in values.items()}
    assert Settings(environment="production", dev_auth=False, jwt_secret="s3" * 20, oidc_audience="api", **secure)

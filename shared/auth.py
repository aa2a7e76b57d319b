"""JWT bearer tokens (PyJWT), roles as FastAPI dependencies, and tenant scoping.

Two kinds of token are accepted. The suite's own (HMAC, ``JWT_SECRET``) for service-to-service
calls and the embedded default's dev tokens; and, when ``OIDC_ISSUER`` is set, an OpenID Connect
provider's (RS256/ES256...), checked against the provider's published keys (PyJWT's PyJWKClient)
and mapped to the suite's claims. The token's header says which kind it claims to be, and each kind
is then checked only with its own key and algorithms: an HS256 token signed with the provider's
public key, or an unsigned one, never passes.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import httpx
import jwt
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, Field, ValidationError, model_validator

from shared.identifiers import Npwz, Pesel
from shared.problems import Forbidden, NotFound, ProblemError, Unauthorized
from shared.settings import Settings

ROLES_EXTENSION = "x-roles"


class Role(enum.StrEnum):
    patient = "patient"
    registrar = "registrar"
    practitioner = "practitioner"
    pharmacist = "pharmacist"
    facility_admin = "facility_admin"
    partner = "partner"
    # The suite's operations team: bound to no facility or pharmacy; loads the rule data the law
    # leaves to operators (e.g. the pre-2023 eZWM limit amounts).
    operator = "operator"


ROLE_VALUES = frozenset(role.value for role in Role)
CLINIC_ROLES = frozenset({Role.registrar, Role.practitioner, Role.facility_admin, Role.partner})


class Claims(BaseModel):
    """What a token says about its bearer (also the dev-token request body)."""

    sub: str = Field(min_length=1, max_length=200)
    role: Role
    facility_id: str | None = Field(default=None, min_length=1, max_length=64)
    pharmacy_id: str | None = Field(default=None, min_length=1, max_length=64)
    pesel: Pesel | None = None
    npwz: Npwz | None = None

    @model_validator(mode="after")
    def _tenant_claims(self) -> Claims:
        if self.role in CLINIC_ROLES and not self.facility_id:
            raise ValueError(f"role {self.role} needs facility_id")
        if self.role == Role.pharmacist and not self.pharmacy_id:
            raise ValueError("role pharmacist needs pharmacy_id")
        if self.role == Role.patient and not self.pesel:
            raise ValueError("role patient needs pesel")
        if self.role == Role.practitioner and not self.npwz:
            raise ValueError("role practitioner needs npwz")
        return self


class Principal(Claims):
    def require_facility(self) -> str:
        if not self.facility_id:
            raise Forbidden("this token is not bound to a facility")
        return self.facility_id

    def require_pharmacy(self) -> str:
        if not self.pharmacy_id:
            raise Forbidden("this token is not bound to a pharmacy")
        return self.pharmacy_id


def issue_token(claims: Claims, settings: Settings) -> str:
    """One of the suite's own tokens, with its issuer and audience and ``JWT_TTL_SECONDS`` to live."""
    now = dt.datetime.now(dt.UTC)
    payload: dict[str, Any] = {
        **claims.model_dump(mode="json", exclude_none=True),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now,
        "exp": now + dt.timedelta(seconds=settings.jwt_ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(payload, settings.jwt_secret.get_secret_value(), algorithm=settings.jwt_algorithm)


REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud"]


def _verified(token: str, key: Any, algorithms: list[str], issuer: str, audience: str, settings: Settings) -> Any:
    """The payload of a token whose signature, issuer, audience, exp, nbf and lifetime are right."""
    try:
        payload = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            issuer=issuer,
            audience=audience,
            leeway=settings.jwt_leeway_seconds,
            options={"require": REQUIRED_CLAIMS, "verify_iat": True},
        )
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the token has expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise Unauthorized("the token is not valid yet (nbf or iat in the future)") from exc
    except jwt.InvalidIssuerError as exc:
        raise Unauthorized("the token is from an issuer the suite does not trust") from exc
    except jwt.InvalidAudienceError as exc:
        raise Unauthorized("the token is meant for another audience") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"the token has no {exc.claim} claim") from exc
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("the token is not valid") from exc
    # A token that lives longer than the suite allows is refused even while it is valid: a stolen one
    # must not be good for days. Measured from iat, and from now for a token dated in the past.
    lifetime = payload["exp"] - payload["iat"]
    remaining = payload["exp"] - time.time()
    limit = settings.max_token_ttl_seconds
    if lifetime > limit or remaining > limit + settings.jwt_leeway_seconds:
        raise Unauthorized(f"the token lives longer than the {limit} seconds the suite accepts")
    return payload


def _principal(claims: dict[str, Any]) -> Principal:
    try:
        return Principal.model_validate(claims)
    except ValidationError as exc:
        fields = sorted({str(e["loc"][0]) if e["loc"] else _reason(e) for e in exc.errors()})
        raise Unauthorized(f"the token's claims are not valid for the suite: {', '.join(fields)}") from exc


def _reason(error: Any) -> str:
    return str(error.get("ctx", {}).get("error", error.get("msg", "claims")))


def decode_token(token: str, settings: Settings) -> Principal:
    """One of the suite's own tokens (``issue_token``)."""
    payload = _verified(
        token,
        settings.jwt_secret.get_secret_value(),
        [settings.jwt_algorithm],
        settings.jwt_issuer,
        settings.jwt_audience,
        settings,
    )
    return _principal(payload)


def _bearer(authorization: str | None) -> str:
    if not authorization:
        raise Unauthorized("an Authorization: Bearer token is required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def principal_from_header(authorization: str | None, settings: Settings) -> Principal:
    """The bearer of one of the suite's own tokens (no identity provider: nothing to fetch)."""
    return decode_token(_bearer(authorization), settings)


async def authenticate(authorization: str | None, settings: Settings) -> Principal:
    """The bearer of an ``Authorization`` header, as every request is checked: the identity provider's
    token when its header names one of ``OIDC_ALGORITHMS`` (and OIDC is configured), else the suite's."""
    token = _bearer(authorization)
    if settings.oidc_issuer:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.InvalidTokenError as exc:
            raise Unauthorized("the token is not valid") from exc
        if algorithm in settings.oidc_algorithms:
            return await decode_oidc_token(token, settings)
    return decode_token(token, settings)


# ----------------------------------------------------------------------------- OpenID Connect


class IdentityProviderUnavailable(ProblemError):
    def __init__(self, detail: str) -> None:
        super().__init__(detail, status=503, code="identity-provider-unavailable")


# One key client per JWKS address and cache policy, shared by every request of the process: its cache
# is what keeps the provider from being asked on each request.
_jwks_clients: dict[tuple[str, float, float], jwt.PyJWKClient] = {}
_discovered_jwks_urls: dict[str, str] = {}


async def _jwks_url(settings: Settings) -> str:
    if settings.oidc_jwks_url:
        return settings.oidc_jwks_url
    issuer = str(settings.oidc_issuer)
    known = _discovered_jwks_urls.get(issuer)
    if known:
        return known
    where = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        async with httpx.AsyncClient(timeout=settings.http_timeout_seconds) as client:
            answer = await client.get(where)
            answer.raise_for_status()
            document = answer.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise IdentityProviderUnavailable("the identity provider's configuration could not be read") from exc
    # The document must be the issuer's own (OpenID Connect Discovery 1.0, section 4.3).
    if not isinstance(document, dict) or document.get("issuer") != issuer or not document.get("jwks_uri"):
        raise IdentityProviderUnavailable("the identity provider's configuration names another issuer or no keys")
    url = str(document["jwks_uri"])
    _discovered_jwks_urls[issuer] = url
    return url


def _jwks_client(url: str, settings: Settings) -> jwt.PyJWKClient:
    key = (url, settings.oidc_jwks_cache_seconds, settings.oidc_jwks_refresh_cooldown_seconds)
    client = _jwks_clients.get(key)
    if client is None:
        client = jwt.PyJWKClient(
            url,
            cache_jwk_set=True,
            lifespan=settings.oidc_jwks_cache_seconds,
            cooldown_duration=settings.oidc_jwks_refresh_cooldown_seconds,
            timeout=settings.http_timeout_seconds,
        )
        _jwks_clients[key] = client
    return client


async def _signing_key(token: str, settings: Settings) -> Any:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.InvalidTokenError as exc:
        raise Unauthorized("the token is not valid") from exc
    if not isinstance(kid, str) or not kid:
        raise Unauthorized("the token names no signing key (kid)")
    client = _jwks_client(await _jwks_url(settings), settings)
    # The hot path: keys still fresh in the client's cache are used here, on the event loop.
    cached = client.jwk_set_cache.get() if client.jwk_set_cache is not None else None
    if cached is not None:
        found = next((k for k in cached.keys if k.key_id == kid and k.public_key_use in ("sig", None)), None)
        if found is not None:
            return found.key
    # Otherwise PyJWKClient fetches (once more for an unknown kid: a rotated key), which blocks.
    try:
        found = await asyncio.to_thread(client.get_signing_key, kid)
    except jwt.PyJWKClientConnectionError as exc:
        raise IdentityProviderUnavailable("the identity provider's keys could not be fetched") from exc
    except jwt.PyJWKClientError as exc:
        raise Unauthorized("the token is signed with a key the identity provider does not publish") from exc
    return found.key


def claim(payload: dict[str, Any], name: str) -> Any:
    """A claim by its name, or by a dotted path into nested objects (``realm_access.roles``)."""
    if name in payload:
        return payload[name]
    value: Any = payload
    for part in name.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def suite_role(payload: dict[str, Any], settings: Settings) -> Role:
    granted = claim(payload, settings.oidc_role_claim)
    names = [granted] if isinstance(granted, str) else granted if isinstance(granted, list) else []
    mapped = {settings.oidc_role_map.get(name, name) for name in names if isinstance(name, str)}
    suite_roles = {Role(name) for name in mapped if name in ROLE_VALUES}
    if not suite_roles:
        raise Forbidden(f"the token grants no role of the suite (claim {settings.oidc_role_claim})")
    if len(suite_roles) > 1:
        # Which tenant rules apply depends on the one role: the suite does not guess between them.
        raise Forbidden(f"the token grants more than one role of the suite: {', '.join(sorted(suite_roles))}")
    return suite_roles.pop()


def map_claims(payload: dict[str, Any], settings: Settings) -> Principal:
    """The suite's claims from an identity provider's token, through the OIDC_*_CLAIM mapping."""
    mapped: dict[str, Any] = {"sub": claim(payload, settings.oidc_sub_claim), "role": suite_role(payload, settings)}
    for name, where in (
        ("facility_id", settings.oidc_facility_id_claim),
        ("pharmacy_id", settings.oidc_pharmacy_id_claim),
        ("pesel", settings.oidc_pesel_claim),
        ("npwz", settings.oidc_npwz_claim),
    ):
        value = claim(payload, where)
        if value is not None:
            mapped[name] = value
    return _principal(mapped)


async def decode_oidc_token(token: str, settings: Settings) -> Principal:
    key = await _signing_key(token, settings)
    payload = _verified(
        token, key, list(settings.oidc_algorithms), str(settings.oidc_issuer), str(settings.oidc_audience), settings
    )
    return map_claims(payload, settings)


async def current_principal(request: Request) -> Principal:
    cached = getattr(request.state, "principal", None)
    if isinstance(cached, Principal):
        return cached
    principal = await authenticate(request.headers.get("authorization"), request.app.state.settings)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(current_principal)]


def allow(*roles: Role) -> dict[str, Any]:
    """Route keyword arguments that admit only ``roles`` and document them in the OpenAPI.

    The gateway reads the ``x-roles`` extension to refuse a wrong role before forwarding.
    """
    allowed = frozenset(roles)

    async def check_role(principal: CurrentPrincipal) -> None:
        if principal.role not in allowed:
            raise Forbidden(f"role {principal.role} may not do this; allowed: {', '.join(sorted(allowed))}")

    return {
        "dependencies": [Depends(check_role)],
        "openapi_extra": {ROLES_EXTENSION: sorted(allowed), "security": [{"bearerAuth": []}]},
    }


def ensure_same_tenant(owner_facility_id: str, principal: Principal, what: str = "resource") -> None:
    """Another facility's row answers 404: it must not even reveal that it exists."""
    if principal.facility_id != owner_facility_id:
        raise NotFound(f"{what} not found")


def dev_token_router(settings: Settings) -> APIRouter:
    router = APIRouter()

    class DevToken(BaseModel):
        access_token: str
        token_type: str = "bearer"  # noqa: S105 - a token type, not a secret

    @router.post(
        "/api/v1/auth/dev-token",
        tags=["auth"],
        response_model=DevToken,
        summary="Issue a development token (only when DEV_AUTH is on)",
    )
    async def dev_token(claims: Claims) -> DevToken:
        return DevToken(access_token=issue_token(claims, settings))

    return router


def install_dev_auth(app: FastAPI, settings: Settings) -> None:
    if settings.dev_auth:
        app.include_router(dev_token_router(settings))


AsyncDependency = Callable[..., Coroutine[Any, Any, Any]]

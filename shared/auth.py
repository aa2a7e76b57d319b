"""JWT bearer tokens (PyJWT), roles as FastAPI dependencies, and tenant scoping."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import jwt
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, Field, model_validator

from shared.identifiers import Npwz, Pesel
from shared.problems import Forbidden, NotFound, Unauthorized
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
    now = dt.datetime.now(dt.UTC)
    payload: dict[str, Any] = {
        **claims.model_dump(mode="json", exclude_none=True),
        "iat": now,
        "exp": now + dt.timedelta(seconds=settings.jwt_ttl_seconds),
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(payload, settings.jwt_secret.get_secret_value(), algorithm=settings.jwt_algorithm)


def decode_token(token: str, settings: Settings) -> Principal:
    try:
        payload = jwt.decode(
            token,
            settings.jwt_secret.get_secret_value(),
            algorithms=[settings.jwt_algorithm],
            options={"require": ["exp", "sub"]},
        )
        return Principal.model_validate(payload)
    except jwt.ExpiredSignatureError as exc:
        raise Unauthorized("the token has expired") from exc
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise Unauthorized("the token is not valid") from exc


def principal_from_header(authorization: str | None, settings: Settings) -> Principal:
    if not authorization:
        raise Unauthorized("an Authorization: Bearer token is required")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return decode_token(token.strip(), settings)


async def authenticate(authorization: str | None, settings: Settings) -> Principal:
    """The bearer of an ``Authorization`` header, as every request is checked."""
    return principal_from_header(authorization, settings)


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

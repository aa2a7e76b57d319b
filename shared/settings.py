"""Configuration read from environment variables (pydantic-settings).

Every process (a service, the gateway, the embedded launcher) builds one of these; ``create_app``
receives it explicitly so that nothing is decided from module globals.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105 - refused in production
MIN_SECRET_BYTES = 32
# ENVIRONMENT=test is for the test suite only: in-process under pytest, or a process the test suite
# starts, which it marks with this variable (tests/conftest.py sets it for everything it launches).
TEST_ENVIRONMENT_MARKER = "ALLOW_TEST_ENVIRONMENT"


# Create React App / Next.js, Angular, Vite, Vue CLI and most others: the dev servers a front-end
# developer runs next to `make run`.
DEV_CORS_ORIGINS = tuple(
    f"http://{host}:{port}" for host in ("localhost", "127.0.0.1") for port in (3000, 4200, 5173, 8080)
)

PEER_NAMES = (
    "scheduling",
    "prescriptions",
    "integration",
    "notifications",
    "pharmacy",
    "reimbursement",
    "audit",
    "sandbox",
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    service_name: str = "ehealth"
    environment: Literal["development", "test", "production"] = "development"
    # `{service}` is replaced by the service's name, so one embedded process can give every
    # service its own SQLite file while distributed processes get a full URL each.
    database_url: str = "sqlite+aiosqlite:///./var/{service}.db"
    # The owner's connection for migrations (DDL, grants); unset: DATABASE_URL. In production the
    # service runs as DATABASE_RUNTIME_ROLE, neither owner nor superuser, so grants bind it.
    migration_database_url: str | None = None
    # PostgreSQL roles the migration grants to (unset: no grants, as when everything runs as one user):
    # the runtime role gets what the service's code does (on append-only tables, such as the access
    # audit's, only SELECT and INSERT); the maintenance role may DELETE from append-only tables (retention).
    database_runtime_role: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    database_maintenance_role: str | None = Field(default=None, pattern=r"^[a-z_][a-z0-9_]{0,62}$")
    # None means the in-process bus (embedded default); an amqp:// URL means RabbitMQ.
    amqp_url: str | None = None
    events_exchange: str = "ehealth.events"
    # The suite's own tokens (HS256): service-to-service calls and the embedded default's dev tokens.
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    # HMAC only: "none" or an asymmetric name here would let a token choose how it is checked.
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = Field(default="ehealth-suite", min_length=1)
    jwt_audience: str = Field(default="ehealth-suite", min_length=1)
    jwt_ttl_seconds: int = Field(default=8 * 3600, gt=0)
    # No token, the suite's or an identity provider's, is accepted for longer than this from its iat.
    max_token_ttl_seconds: int = Field(default=12 * 3600, gt=0)
    # Clock skew allowed on exp / nbf / iat between the suite and whoever issued the token.
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    # An OpenID Connect provider's tokens (Keycloak, Entra ID), beside the suite's own: set the issuer
    # and the audience the provider puts in tokens meant for the suite. The keys come from
    # OIDC_JWKS_URL, or from the issuer's /.well-known/openid-configuration when it is not set.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_algorithms: list[Literal["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]] = [
        "RS256",
        "ES256",
    ]
    # How long fetched keys are used before they are fetched again, and the least time between two
    # fetches caused by a token naming an unknown key (so random kids cannot flood the provider).
    oidc_jwks_cache_seconds: float = Field(default=300, gt=0)
    oidc_jwks_refresh_cooldown_seconds: float = Field(default=30, ge=0)
    # Claim mapping: where the suite's claims are in the provider's token. A name is looked up as is
    # first, then as a dotted path into nested objects (Keycloak: realm_access.roles).
    oidc_sub_claim: str = "sub"
    oidc_role_claim: str = "role"
    # The provider's role names for the suite's roles ({"ehealth-registrar": "registrar"}); a value
    # that is a suite role's own name maps to it without an entry. Other roles are ignored.
    oidc_role_map: dict[str, str] = Field(default_factory=dict)
    oidc_facility_id_claim: str = "facility_id"
    oidc_pharmacy_id_claim: str = "pharmacy_id"
    oidc_pesel_claim: str = "pesel"
    oidc_npwz_claim: str = "npwz"
    dev_auth: bool = True
    run_migrations: bool = True
    seed_demo_data: bool = False
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # All request header lines together (the gateway answers 431 past it).
    max_header_bytes: int = Field(default=16 * 1024, ge=4 * 1024)
    outbox_poll_seconds: float = Field(default=0.5, gt=0)
    outbox_batch_size: int = Field(default=100, ge=1)
    bus_max_attempts: int = Field(default=5, ge=1)
    bus_retry_base_seconds: float = Field(default=1.0, gt=0)
    bus_prefetch: int = Field(default=32, ge=1)
    idempotency_ttl_hours: int = Field(default=48, ge=24)
    http_timeout_seconds: float = Field(default=5.0, gt=0)
    timezone: str = "Europe/Warsaw"
    log_level: str = "INFO"
    log_json: bool = True
    # Where the other services are (distributed mode: SCHEDULING_URL=http://...). A service with no
    # URL runs in this process (embedded default) and is reached through its app in memory.
    scheduling_url: str | None = None
    prescriptions_url: str | None = None
    integration_url: str | None = None
    notifications_url: str | None = None
    pharmacy_url: str | None = None
    reimbursement_url: str | None = None
    audit_url: str | None = None
    sandbox_url: str | None = None

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "test" and not running_under_tests():
            raise ValueError(
                f"ENVIRONMENT=test is for the test suite only (set {TEST_ENVIRONMENT_MARKER}=true in a process it"
                " starts); use development or production"
            )
        if self.jwt_ttl_seconds > self.max_token_ttl_seconds:
            raise ValueError(
                f"JWT_TTL_SECONDS ({self.jwt_ttl_seconds}) is over MAX_TOKEN_TTL_SECONDS ({self.max_token_ttl_seconds})"
            )
        if self.oidc_issuer and not self.oidc_audience:
            raise ValueError("OIDC_AUDIENCE must be set with OIDC_ISSUER: a token for another client would pass")
        unknown_roles = sorted(set(self.oidc_role_map.values()) - ROLE_NAMES)
        if unknown_roles:
            raise ValueError(f"OIDC_ROLE_MAP maps to roles the suite does not have: {', '.join(unknown_roles)}")
        secret = self.jwt_secret.get_secret_value()
        if self.environment == "production":
            if secret == DEFAULT_JWT_SECRET:
                raise ValueError("JWT_SECRET must be set in production (not the development default)")
            if len(secret.encode()) < MIN_SECRET_BYTES or len(set(secret)) == 1:
                raise ValueError(
                    f"JWT_SECRET must be set in production: at least {MIN_SECRET_BYTES} bytes,"
                    " not one character repeated"
                )
            if self.dev_auth:
                raise ValueError("DEV_AUTH must be off in production")
            # Keys fetched over plain HTTP can be swapped on the way, and with them any token forged.
            for name, url in (("OIDC_ISSUER", self.oidc_issuer), ("OIDC_JWKS_URL", self.oidc_jwks_url)):
                if url and not url.lower().startswith("https://"):
                    raise ValueError(f"{name} must be an https:// URL in production")
        elif self.environment == "development" and not self.dev_auth and secret == DEFAULT_JWT_SECRET:
            # With dev auth off the secret is what keeps strangers out, and this one is public (a container
            # or docker compose, reachable from other machines, must bring its own).
            raise ValueError("JWT_SECRET must be set when DEV_AUTH is off (the development default is public)")
        return self

    def for_service(self, name: str) -> Settings:
        """A copy for one service of an embedded process, with its own database."""
        return self.model_copy(update={"service_name": name})

    @classmethod
    def from_settings(cls, settings: Settings | None) -> Self:
        """A service's own settings class from the launcher's shared settings: the shared fields are
        taken over, the service's own fields come from the environment."""
        if isinstance(settings, cls):
            return settings
        if settings is None:
            return cls()
        return cls(**settings.model_dump(include=set(Settings.model_fields)))

    def service_url(self, name: str) -> str | None:
        if name not in PEER_NAMES:
            raise KeyError(f"no service named {name!r}")
        value = getattr(self, f"{name}_url", None)
        return value.rstrip("/") if isinstance(value, str) and value else None

    @property
    def resolved_database_url(self) -> str:
        return self._resolved(self.database_url)

    @property
    def resolved_migration_database_url(self) -> str:
        return self._resolved(self.migration_database_url or self.database_url)

    def _resolved(self, template: str) -> str:
        url = template.replace("{service}", self.service_name)
        if url.startswith("sqlite") and ":///" in url:
            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                # Only the service's user may list (or guess) the database files.
                Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        return url


# The suite's roles (shared/auth.py Role), repeated here because auth imports the settings.
ROLE_NAMES = frozenset({"patient", "registrar", "practitioner", "pharmacist", "facility_admin", "partner", "operator"})


def running_under_tests() -> bool:
    return "pytest" in sys.modules or os.environ.get(TEST_ENVIRONMENT_MARKER, "").lower() == "true"


class GatewaySettings(Settings):
    service_name: str = "gateway"
    upstream_timeout_seconds: float = Field(default=10.0, gt=0)
    upstream_max_connections: int = Field(default=200, ge=1)
    # A remote service's OpenAPI document: fetched again this often once loaded (a redeployed service
    # brings new routes); while missing, retried after half a second, doubling up to the maximum.
    openapi_refresh_seconds: float = Field(default=300.0, gt=0)
    openapi_retry_max_seconds: float = Field(default=30.0, gt=0)
    # Browser front-ends allowed to call the gateway from another origin: CORS_ORIGINS as a
    # comma-separated or JSON list ("*" allows any). Unset: the usual local dev-server ports in
    # development (DEV_CORS_ORIGINS), none in test and production.
    cors_origins: Annotated[list[str] | None, NoDecode] = None

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _origins_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [o.strip().rstrip("/") for o in text.split(",") if o.strip()]
        return value

    @property
    def allowed_cors_origins(self) -> list[str]:
        if self.cors_origins is not None:
            return self.cors_origins
        return list(DEV_CORS_ORIGINS) if self.environment == "development" else []

"""Configuration read from environment variables (pydantic-settings).

Every process (a service, the gateway, the embedded launcher) builds one of these; ``create_app``
receives it explicitly so that nothing is decided from module globals.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105 - refused in production


# Create React App / Next.js, Angular, Vite, Vue CLI and most others: the dev servers a front-end
# developer runs next to `make run`.
DEV_CORS_ORIGINS = tuple(
    f"http://{host}:{port}" for host in ("localhost", "127.0.0.1") for port in (3000, 4200, 5173, 8080)
)

PEER_NAMES = ("scheduling", "prescriptions", "integration", "notifications", "pharmacy", "reimbursement", "sandbox")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=None, extra="ignore")

    service_name: str = "ehealth"
    environment: Literal["development", "test", "production"] = "development"
    # `{service}` is replaced by the service's name, so one embedded process can give every
    # service its own SQLite file while distributed processes get a full URL each.
    database_url: str = "sqlite+aiosqlite:///./var/{service}.db"
    # None means the in-process bus (embedded default); an amqp:// URL means RabbitMQ.
    amqp_url: str | None = None
    events_exchange: str = "ehealth.events"
    jwt_secret: SecretStr = SecretStr(DEFAULT_JWT_SECRET)
    jwt_algorithm: str = "HS256"
    jwt_ttl_seconds: int = 8 * 3600
    dev_auth: bool = True
    run_migrations: bool = True
    seed_demo_data: bool = False
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
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
    sandbox_url: str | None = None

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.environment == "production":
            secret = self.jwt_secret.get_secret_value()
            if secret == DEFAULT_JWT_SECRET or len(secret) < 32:
                raise ValueError("JWT_SECRET must be set in production, at least 32 characters")
            if self.dev_auth:
                raise ValueError("DEV_AUTH must be off in production")
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
        url = self.database_url.replace("{service}", self.service_name)
        if url.startswith("sqlite") and ":///" in url:
            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        return url


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

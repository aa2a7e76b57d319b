"""The reimbursement service's settings: the shared ones plus where eZWM is."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.settings import Settings


class ReimbursementSettings(Settings):
    service_name: str = "reimbursement"
    # Base URL of eZWM (the sandbox's ``.../sandbox/ezwm`` or the real system). None: the sandbox
    # app runs inside this process (embedded default), reached through httpx's ASGI transport.
    ezwm_url: str | None = None
    ezwm_timeout_seconds: float = Field(default=5.0, gt=0)
    # How often realisations recorded while eZWM was down are offered to it again.
    ezwm_retry_seconds: float = Field(default=30.0, gt=0)
    ezwm_retry_batch: int = Field(default=50, ge=1)

    @model_validator(mode="after")
    def _real_ezwm_in_production(self) -> ReimbursementSettings:
        if self.environment == "production" and not self.ezwm_url:
            raise ValueError("EZWM_URL must be set in production: the in-process sandbox is for development")
        return self

    @classmethod
    def from_settings(cls, settings: Settings | None) -> ReimbursementSettings:
        """These settings from the launcher's shared ones; the eZWM fields come from the environment."""
        if isinstance(settings, cls):
            return settings
        if settings is None:
            return cls()
        return cls(**settings.model_dump(include=set(Settings.model_fields)))

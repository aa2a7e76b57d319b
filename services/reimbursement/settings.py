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

    def ezwm_base_url(self) -> str | None:
        """EZWM_URL, else the eZWM of the sandbox process at SANDBOX_URL (development only)."""
        if self.ezwm_url:
            return self.ezwm_url.rstrip("/")
        sandbox = self.service_url("sandbox")
        return f"{sandbox}/sandbox/ezwm" if sandbox else None

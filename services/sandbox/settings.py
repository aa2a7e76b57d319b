"""The sandbox's settings: the shared ones plus the simulators' timings and the mail catcher's address."""

from __future__ import annotations

from pydantic import Field

from shared.settings import Settings


class SandboxSettings(Settings):
    service_name: str = "sandbox"
    # P1 confirms a facility's IKP integration some time after it is asked to; 0 confirms at once.
    p1_ikp_confirm_seconds: float = Field(default=2.0, ge=0)
    # CeR retries a notification its facility's endpoint did not take: first delay (doubling), attempts.
    cer_delivery_retry_seconds: float = Field(default=0.5, gt=0)
    cer_delivery_attempts: int = Field(default=8, ge=1, le=50)
    # The mail catcher's SMTP server. The variables are SANDBOX_SMTP_*, not SMTP_*: in one embedded
    # process the notifications service reads SMTP_HOST/SMTP_PORT as the address of a real server.
    # Being aliases, they are not taken by name as keywords: in code use
    # ``model_copy(update={"smtp_port": 0})``. Port 0 binds a free port (``app.state.mail.port``).
    smtp_enabled: bool = Field(default=True, validation_alias="sandbox_smtp_enabled")
    smtp_host: str = Field(default="127.0.0.1", min_length=1, validation_alias="sandbox_smtp_host")
    smtp_port: int = Field(default=1025, ge=0, le=65535, validation_alias="sandbox_smtp_port")

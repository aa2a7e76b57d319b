"""The notifications service's settings: the shared ones plus SMTP, the SMS provider and retries."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from shared.settings import Settings


class NotificationsSettings(Settings):
    service_name: str = "notifications"
    # SMTP server; empty host: the sandbox's mail catcher (development only).
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    mail_from: str = "powiadomienia@ehealth.example"
    # SMS provider (HTTP); empty: the sandbox's SMS provider.
    sms_url: str | None = None
    sms_token: SecretStr = SecretStr("sandbox-token")
    sms_sender: str = "Przychodnia"
    # Delivery: attempts before a message is dead, and the backoff between them.
    send_max_attempts: int = Field(default=6, ge=1)
    send_retry_base_seconds: float = Field(default=2.0, gt=0)
    send_retry_max_seconds: float = Field(default=600.0, gt=0)
    send_interval_seconds: float = Field(default=2.0, gt=0)
    send_batch: int = Field(default=50, ge=1)

    @model_validator(mode="after")
    def _real_providers_in_production(self) -> NotificationsSettings:
        if self.environment == "production" and (not self.smtp_host or not self.sms_url):
            raise ValueError("SMTP_HOST and SMS_URL must be set in production: the sandbox is for development")
        return self

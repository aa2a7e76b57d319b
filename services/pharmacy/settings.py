"""The pharmacy service's settings: the shared ones plus P1 and the wrong-code rate limit."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.settings import Settings


class PharmacySettings(Settings):
    service_name: str = "pharmacy"
    # P1 / gabinet.gov.pl, where e-prescriptions are looked up (see IntegrationSettings.p1_url).
    p1_url: str | None = None
    p1_timeout_seconds: float = Field(default=5.0, gt=0)
    # Wrong access codes one pharmacy may enter in the window before it must wait (code_limit.py).
    lookup_failures_allowed: int = Field(default=5, ge=1)
    lookup_failure_window_seconds: int = Field(default=600, ge=1)
    # Wrong access codes for one PESEL, from all pharmacies together, in the window: enough for a
    # pharmacist's typos, too few to walk the 10,000 codes (a key scan is never limited).
    lookup_failures_allowed_per_pesel: int = Field(default=10, ge=1)
    lookup_failure_window_per_pesel_seconds: int = Field(default=3600, ge=1)
    # A CSV import writes this many products per transaction, so other pharmacies' writes get through
    # between them (SQLite has one write lock); and no pharmacy's catalogue grows past the cap.
    import_batch_products: int = Field(default=500, ge=1)
    max_products_per_pharmacy: int = Field(default=50_000, ge=1)

    @model_validator(mode="after")
    def _real_p1_in_production(self) -> PharmacySettings:
        if self.environment == "production" and not self.p1_url:
            raise ValueError("P1_URL must be set in production: the sandbox is for development")
        return self

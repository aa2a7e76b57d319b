"""The prescriptions service's settings: the shared ones plus IKP grouping."""

from __future__ import annotations

from pydantic import Field

from shared.settings import Settings


class PrescriptionsSettings(Settings):
    service_name: str = "prescriptions"
    # The longest pause between two IKP items that still counts as "one go" (DOMAIN.md 2).
    ikp_group_gap_seconds: float = Field(default=120.0, ge=0)
    # How much longer to wait before sealing a group: an item submitted just before the gap ended
    # may still be on its way from P1 (at least the integration service's poll interval).
    ikp_seal_grace_seconds: float = Field(default=30.0, ge=0)
    ikp_seal_interval_seconds: float = Field(default=5.0, gt=0)

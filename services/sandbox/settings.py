"""The sandbox's settings: the shared ones plus the simulators' timings."""

from __future__ import annotations

from pydantic import Field

from shared.settings import Settings


class SandboxSettings(Settings):
    service_name: str = "sandbox"
    # P1 confirms a facility's IKP integration some time after it is asked to; 0 confirms at once.
    p1_ikp_confirm_seconds: float = Field(default=2.0, ge=0)

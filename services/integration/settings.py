"""The integration service's settings: the shared ones plus where the national systems are."""

from __future__ import annotations

from pydantic import Field, model_validator

from shared.peers import PeerAddress, PeerApps, peer_address
from shared.settings import Settings

EMBEDDED_P1_PATH = "/sandbox/p1"


class IntegrationSettings(Settings):
    service_name: str = "integration"
    # Base URL of P1 / gabinet.gov.pl (the sandbox's ``.../sandbox/p1`` or the real platform). None:
    # the sandbox of this process, or SANDBOX_URL + /sandbox/p1.
    p1_url: str | None = None
    p1_timeout_seconds: float = Field(default=5.0, gt=0)
    # How often the designated poller asks P1 for new IKP requests and pending enablements.
    ikp_poll_seconds: float = Field(default=15.0, gt=0)
    ikp_poll_batch: int = Field(default=100, ge=1, le=500)
    # How often changes queued for P1 are offered again while it is down (doubling up to the max).
    p1_retry_seconds: float = Field(default=2.0, gt=0)
    p1_retry_max_seconds: float = Field(default=300.0, gt=0)

    @model_validator(mode="after")
    def _real_p1_in_production(self) -> IntegrationSettings:
        if self.environment == "production" and not self.p1_url:
            raise ValueError("P1_URL must be set in production: the sandbox is for development")
        return self


def p1_address(p1_url: str | None, settings: Settings, peers: PeerApps | None) -> PeerAddress:
    """Where P1 is for a service: P1_URL, else SANDBOX_URL's P1, else the sandbox app of this process
    (a service started on its own in development gets a sandbox of its own)."""
    if p1_url:
        return PeerAddress(p1_url.rstrip("/"))
    if not settings.service_url("sandbox") and not (peers and "sandbox" in peers):
        from services.sandbox.app import create_app as create_sandbox

        peers = {**(peers or {}), "sandbox": create_sandbox(settings.for_service("sandbox"))}
    sandbox = peer_address("sandbox", settings, peers)
    return PeerAddress(f"{sandbox.base_url}{EMBEDDED_P1_PATH}", sandbox.transport)

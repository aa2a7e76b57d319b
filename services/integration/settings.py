"""The integration service's settings: the shared ones plus where the national systems are."""

from __future__ import annotations

from pydantic import Field, SecretStr, model_validator

from shared.peers import PeerAddress, PeerApps, peer_address
from shared.settings import Settings

EMBEDDED_P1_PATH = "/sandbox/p1"
EMBEDDED_CER_PATH = "/sandbox/cer"


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
    # Base URL of CeR (the sandbox's ``.../sandbox/cer`` or the real registry); None as for P1.
    cer_url: str | None = None
    cer_timeout_seconds: float = Field(default=5.0, gt=0)
    # Changes queued for CeR while it is unreachable are offered again after this (doubling up to the max).
    cer_retry_seconds: float = Field(default=2.0, gt=0)
    cer_retry_max_seconds: float = Field(default=300.0, gt=0)
    # How often CeR's bookings are compared with the local ones (also on demand: POST /cer/reconcile).
    cer_reconcile_seconds: float = Field(default=900.0, gt=0)
    # A Fernet key (``Fernet.generate_key()``) sealing the facilities' CeR secrets at rest; unset: one
    # derived from JWT_SECRET.
    secrets_key: SecretStr | None = None

    @model_validator(mode="after")
    def _real_systems_in_production(self) -> IntegrationSettings:
        if self.environment == "production" and not self.p1_url:
            raise ValueError("P1_URL must be set in production: the sandbox is for development")
        if self.environment == "production" and not self.cer_url:
            raise ValueError("CER_URL must be set in production: the sandbox is for development")
        return self


def p1_address(p1_url: str | None, settings: Settings, peers: PeerApps | None) -> PeerAddress:
    """Where P1 is for a service: P1_URL, else SANDBOX_URL's P1, else the sandbox app of this process
    (a service started on its own in development gets a sandbox of its own)."""
    return national_address(p1_url, EMBEDDED_P1_PATH, settings, peers)


def national_address(url: str | None, sandbox_path: str, settings: Settings, peers: PeerApps | None) -> PeerAddress:
    """A national system at its own URL, else its simulator in the sandbox at ``sandbox_path``."""
    if url:
        return PeerAddress(url.rstrip("/"))
    sandbox = peer_address("sandbox", settings, with_sandbox(settings, peers))
    return PeerAddress(f"{sandbox.base_url}{sandbox_path}", sandbox.transport)


def with_sandbox(settings: Settings, peers: PeerApps | None) -> PeerApps | None:
    """``peers`` with a sandbox app of this process added when there is none to reach."""
    if settings.service_url("sandbox") or (peers and "sandbox" in peers):
        return peers
    from services.sandbox.app import create_app as create_sandbox

    return {**(peers or {}), "sandbox": create_sandbox(settings.for_service("sandbox"))}

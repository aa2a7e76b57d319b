"""Pure rules of the integration service: the CeR webhook signature.

API.md: header ``X-CeR-Timestamp`` (Unix seconds) and ``X-CeR-Signature: sha256=<hex>``, the hex
HMAC-SHA256, keyed with the facility's CeR secret, of ``<timestamp>.<raw body bytes>``; a timestamp
more than 300 s from now is refused (both ways: a stale one is a replay, a future one a clock that
cannot be trusted). The comparison is constant-time, so the answer's timing reveals nothing of the
expected signature.
"""

from __future__ import annotations

import hashlib
import hmac
import re

MAX_SKEW_SECONDS = 300
SIGNATURE_PREFIX = "sha256="
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^sha256=[0-9a-f]{64}$")


class SignatureRejected(ValueError):
    """Why a webhook call is not believed (the API answers 401 with this reason)."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_PREFIX}{digest}"


def verify_signature(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float) -> int:
    """The verified timestamp; raises ``SignatureRejected`` naming what is wrong."""
    if not timestamp or not signature:
        raise SignatureRejected("the X-CeR-Timestamp and X-CeR-Signature headers are required")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise SignatureRejected("X-CeR-Timestamp must be Unix seconds")
    if not _SIGNATURE.fullmatch(signature.strip().lower()):
        raise SignatureRejected("X-CeR-Signature must be sha256=<64 hex digits>")
    sent_at = int(timestamp)
    if abs(now - sent_at) > MAX_SKEW_SECONDS:
        raise SignatureRejected(f"the timestamp is more than {MAX_SKEW_SECONDS} s from now")
    if not hmac.compare_digest(sign(secret, sent_at, body), signature.strip().lower()):
        raise SignatureRejected("the signature does not match")
    return sent_at

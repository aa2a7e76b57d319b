"""The CeR webhook signature: HMAC-SHA256 over ``<timestamp>.<raw body>``, 300 s either way."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from services.integration.domain import MAX_SKEW_SECONDS, SignatureRejected, sign, verify_signature

SECRET = "a-facility-secret-of-enough-length"
BODY = b'{"event_id":"e1","event_type":"booking_created_ikp"}'
NOW = 1_795_000_000


def test_a_signature_made_as_api_md_describes_is_accepted() -> None:
    by_hand = "sha256=" + hmac.new(SECRET.encode(), f"{NOW}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert sign(SECRET, NOW, BODY) == by_hand
    assert verify_signature(SECRET, str(NOW), by_hand, BODY, NOW) == NOW
    assert verify_signature(SECRET, str(NOW), by_hand.upper().replace("SHA256=", "sha256="), BODY, NOW) == NOW


@pytest.mark.parametrize("skew", [-MAX_SKEW_SECONDS, MAX_SKEW_SECONDS])
def test_the_edges_of_the_window_are_accepted(skew: int) -> None:
    sent = NOW + skew
    assert verify_signature(SECRET, str(sent), sign(SECRET, sent, BODY), BODY, NOW) == sent


@pytest.mark.parametrize(
    ("timestamp", "signature", "body", "secret", "reason"),
    [
        (None, sign(SECRET, NOW, BODY), BODY, SECRET, "required"),
        (str(NOW), None, BODY, SECRET, "required"),
        ("yesterday", sign(SECRET, NOW, BODY), BODY, SECRET, "Unix seconds"),
        (str(NOW), "md5=abc", BODY, SECRET, "sha256="),
        (str(NOW - 301), sign(SECRET, NOW - 301, BODY), BODY, SECRET, "300 s"),  # stale: a replay
        (str(NOW + 301), sign(SECRET, NOW + 301, BODY), BODY, SECRET, "300 s"),  # from the future
        (str(NOW), sign(SECRET, NOW, BODY), BODY + b" ", SECRET, "does not match"),  # body changed
        (str(NOW), sign(SECRET, NOW - 1, BODY), BODY, SECRET, "does not match"),  # timestamp changed
        (str(NOW), sign("another-facilitys-secret", NOW, BODY), BODY, SECRET, "does not match"),
    ],
)
def test_anything_else_is_rejected_with_its_reason(
    timestamp: str | None, signature: str | None, body: bytes, secret: str, reason: str
) -> None:
    with pytest.raises(SignatureRejected, match=reason):
        verify_signature(secret, timestamp, signature, body, NOW)


def test_a_cer_secret_needs_32_characters_and_some_variety() -> None:
    from services.integration.domain import weak_secret

    assert weak_secret("a-facility-secret-of-enough-length") is None
    assert weak_secret("x" * 31 + "y") is not None  # 32 long, 2 different
    assert "32 characters" in (weak_secret("Sh0rt-but-varied-secret-0123456") or "")  # 31
    assert "different characters" in (weak_secret("abcabcabc" * 4) or "")  # 36 long, 3 different
    assert weak_secret("0123456789" * 4) is None  # 40 long, 10 different

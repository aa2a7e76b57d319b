"""The CeR secret at rest: sealed with the environment's key, readable only with it."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from services.integration.sealed import PREFIX, SecretBox

SECRET = "a-facility-secret-of-enough-length"


def test_a_sealed_secret_opens_with_its_key_and_never_shows_the_plain_text() -> None:
    box = SecretBox(Fernet.generate_key().decode(), "unused")
    sealed = box.seal(SECRET)
    assert sealed.startswith(PREFIX) and SECRET not in sealed
    assert box.seal(SECRET) != sealed  # a fresh nonce each time: equal secrets do not look equal
    assert box.unseal(sealed) == SECRET


def test_another_key_cannot_open_it() -> None:
    sealed = SecretBox(Fernet.generate_key().decode(), "unused").seal(SECRET)
    with pytest.raises(ValueError, match="SECRETS_KEY"):
        SecretBox(Fernet.generate_key().decode(), "unused").unseal(sealed)


def test_without_a_key_one_is_derived_from_the_jwt_secret_and_stays_the_same() -> None:
    jwt_secret = "the-deployment's-jwt-secret-0123456789"
    sealed = SecretBox(None, jwt_secret).seal(SECRET)
    assert SecretBox(None, jwt_secret).unseal(sealed) == SECRET
    with pytest.raises(ValueError):
        SecretBox(None, "another-deployment's-secret-0123456789").unseal(sealed)


def test_a_secret_stored_before_sealing_is_read_as_it_is() -> None:
    assert SecretBox(None, "x" * 40).unseal(SECRET) == SECRET

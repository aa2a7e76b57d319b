"""Secrets kept at rest only encrypted (Fernet: AES-128-CBC with HMAC-SHA256, from ``cryptography``).

The CeR secret must be read back to verify each notification's HMAC, so it cannot be hashed: it is
stored sealed with a key from the environment (``SECRETS_KEY``, a Fernet key), so a copy of the
database (a backup, a dump handed to support) does not let anyone book in the facility's name.
Without ``SECRETS_KEY`` the key is derived from ``JWT_SECRET`` (HKDF with its own purpose label);
a value written before sealing existed is read as it is and sealed at its next change.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

PREFIX = "fernet:"
_PURPOSE = b"ehealth integration: CeR secrets at rest"


class SecretBox:
    def __init__(self, key: str | None, fallback_material: str) -> None:
        if key:
            self._fernet = Fernet(key.encode())
        else:
            derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(
                fallback_material.encode()
            )
            self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def seal(self, plain: str) -> str:
        return PREFIX + self._fernet.encrypt(plain.encode()).decode()

    def unseal(self, stored: str) -> str:
        if not stored.startswith(PREFIX):
            return stored  # written before secrets were sealed
        try:
            return self._fernet.decrypt(stored.removeprefix(PREFIX).encode()).decode()
        except InvalidToken as exc:
            raise ValueError("a sealed secret does not open with this SECRETS_KEY") from exc

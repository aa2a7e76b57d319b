"""Prescription key, package key and 4-digit access code, drawn with ``secrets``.

DOMAIN.md 4 gives 44 digits for a package key (P1). The sources give no format for a single
prescription's key; we use 44 digits too (the shape of P1 keys). Keys are random, not sequential,
so they cannot be guessed from one another; uniqueness is finally the database's job (10**44
values make a collision practically impossible). The access code is per package, used together
with the PESEL, so it need not be unique. Every function takes an optional ``random.Random`` for
deterministic tests; the default is ``secrets.SystemRandom()``.
"""

from __future__ import annotations

import random
import secrets

KEY_DIGITS = 44
ACCESS_CODE_DIGITS = 4


def _digits(count: int, rng: random.Random | None) -> str:
    source = rng if rng is not None else secrets.SystemRandom()
    return str(source.randrange(10**count)).zfill(count)


def new_prescription_key(rng: random.Random | None = None) -> str:
    return _digits(KEY_DIGITS, rng)


def new_package_key(rng: random.Random | None = None) -> str:
    return _digits(KEY_DIGITS, rng)


def new_access_code(rng: random.Random | None = None) -> str:
    return _digits(ACCESS_CODE_DIGITS, rng)

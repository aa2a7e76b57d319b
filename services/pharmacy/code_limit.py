"""The limit on access-code guesses, as plain functions: who may try a 4-digit code now, and when next.

A package's access code is 4 digits: 10,000 values, found in minutes by anyone who may try freely.
Every try is reserved as an attempt row BEFORE P1 is asked (``dispensing.Dispensing``), so a burst
of parallel guesses from any number of processes is counted guess by guess; this module only judges
the counts the database gave. Two limits apply to every try, each over its own sliding window:

* per pharmacy: a pharmacy guessing codes of many patients;
* per patient (PESEL): many pharmacies guessing one patient's codes (20 tokens x 5 guesses).

A try that found its package is released (its attempt deleted): a busy pharmacy typing right codes
all day is never throttled by its hits, only by its misses. A scanned key is never limited: a
44-digit random key cannot be guessed, and limiting it would let anyone lock a patient out.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import hmac
import math
from collections.abc import Sequence
from dataclasses import dataclass


class Scope(enum.StrEnum):
    pharmacy = "pharmacy"
    patient = "patient"


@dataclass(frozen=True)
class Limit:
    """At most ``allowed`` unreleased attempts in any ``window``."""

    scope: Scope
    allowed: int
    window: dt.timedelta

    def __post_init__(self) -> None:
        if self.allowed < 1 or self.window <= dt.timedelta(0):
            raise ValueError("a limit allows at least one attempt over a positive window")

    def since(self, now: dt.datetime) -> dt.datetime:
        """Attempts at or before this instant have left the window."""
        return now - self.window


def retry_after(limit: Limit, in_window: int, newest_others: Sequence[dt.datetime], now: dt.datetime) -> int | None:
    """None when this attempt may go on; else the whole seconds until one more attempt would be allowed.

    ``in_window``: the attempts of the scope in the window, this one included (the database counted
    them after this one was committed, so of any ``allowed + 1`` parallel attempts the last to commit
    sees all the others). ``newest_others``: the times of the other attempts in the window, newest
    first, at least ``allowed`` of them when over the limit. One more attempt fits once the others
    are down to ``allowed - 1``: when the ``allowed``-th newest of them leaves the window.
    """
    if in_window < 1:
        raise ValueError("the attempt being judged is itself in the window")
    if in_window <= limit.allowed:
        return None
    if len(newest_others) < limit.allowed:
        raise ValueError(f"over the limit of {limit.allowed} the {limit.allowed} newest other attempts are needed")
    frees_at = newest_others[limit.allowed - 1] + limit.window
    return max(1, math.ceil((frees_at - now).total_seconds()))


def pesel_digest(key: bytes, pesel: str) -> str:
    """The PESEL as the attempt rows keep it: keyed (HMAC-SHA256), since all PESELs are few enough
    (a few hundred million) that a plain hash of one is as good as the PESEL itself."""
    return hmac.new(key, pesel.encode(), hashlib.sha256).hexdigest()


def digest_key(secret: str) -> bytes:
    """A key of its own for the PESEL digests, derived from the service's secret (domain-separated,
    so the digests reveal nothing about the secret the tokens are signed with)."""
    return hmac.new(secret.encode(), b"pharmacy/code-attempts/pesel", hashlib.sha256).digest()

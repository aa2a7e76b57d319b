"""Pure rules of the integration service: the CeR webhook signature, compliance, drift, and the
location an IKP item was addressed to.

(What CeR covers from when is the dated table of ``cer_scope``.)

API.md: header ``X-CeR-Timestamp`` (Unix seconds) and ``X-CeR-Signature: sha256=<hex>``, the hex
HMAC-SHA256, keyed with the facility's CeR secret, of ``<timestamp>.<raw body bytes>``; a timestamp
more than 300 s from now is refused (both ways: a stale one is a replay, a future one a clock that
cannot be trusted). The comparison is constant-time, so the answer's timing reveals nothing of the
expected signature.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from services.integration.cer_scope import Coverage

MAX_SKEW_SECONDS = 300
SIGNATURE_PREFIX = "sha256="
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^sha256=[0-9a-f]{64}$")


class SignatureRejected(ValueError):
    """Why a webhook call is not believed (the API answers 401 with this reason)."""


MIN_SECRET_CHARACTERS = 32
MIN_DISTINCT_SECRET_CHARACTERS = 10


def weak_secret(secret: str) -> str | None:
    """Why a CeR secret is too weak to sign with (None: strong enough). Whoever holds it can book and
    cancel visits in the facility's name, so a short or repetitive one ("aaaa...", "12121212...") is refused."""
    if len(secret) < MIN_SECRET_CHARACTERS:
        return f"must be at least {MIN_SECRET_CHARACTERS} characters"
    if len(set(secret)) < MIN_DISTINCT_SECRET_CHARACTERS:
        return f"must use at least {MIN_DISTINCT_SECRET_CHARACTERS} different characters"
    return None


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


# ----------------------------------------------------------------------------- CeR compliance

# DOMAIN.md 6 (art. 154a): schedules must reach CeR by 2026-05-31, or NFZ withholds payment from
# 2026-06-01; from 2026-07-01 NFZ pays only for services booked through CeR. These are the basic
# step's dates (CeR covers it from 2026-01-01).
SCHEDULES_DUE = dt.date(2026, 5, 31)
PAYMENT_WITHHELD_FROM = dt.date(2026, 6, 1)
CER_BOOKINGS_ONLY_FROM = dt.date(2026, 7, 1)

OK = "ok"
AT_RISK = "at_risk"
BREACHED = "breached"
NOT_APPLICABLE = "not_applicable"
SEVERITY = {NOT_APPLICABLE: 0, OK: 1, AT_RISK: 2, BREACHED: 3}


@dataclass(frozen=True)
class PaymentDates:
    schedules_due: dt.date  # the last day to have schedules in CeR
    payment_withheld_from: dt.date  # NFZ withholds payment where they were not
    cer_bookings_only_from: dt.date  # NFZ pays only for services booked through CeR


def payment_dates(covered_from: dt.date) -> PaymentDates:
    """The payment dates of a specialty CeR covers from ``covered_from``.

    Art. 154a's sanctions exist from 2026-05-31 / 06-01 / 07-01: the basic step (covered from
    2026-01-01) keeps exactly those. No source gives a later step its own grace period, so a step
    covered later has none: its schedules are due the day before it is covered, and both payment
    rules bite on its first day (2026-08-01 step: due 07-31, withheld and CeR-only from 08-01).
    """
    due = max(covered_from - dt.timedelta(days=1), SCHEDULES_DUE)
    return PaymentDates(due, due + dt.timedelta(days=1), max(covered_from, CER_BOOKINGS_ONLY_FROM))


@dataclass(frozen=True)
class PaymentRisk:
    date: dt.date
    rule: str
    status: str  # ok, at_risk, breached, not_applicable
    detail: str


@dataclass(frozen=True)
class SpecialtyCompliance:
    specialty: str
    covered_from: dt.date
    draft: bool  # the table's entry comes from a draft, not law in force
    source: str
    contracted: bool  # the facility declared an NFZ contract in this specialty
    schedules: int  # schedules of this specialty the facility sent (or is sending) to CeR
    published: bool  # CeR accepted at least one of them
    first_published_on: dt.date | None
    unsent_changes: int  # changes of this specialty not (yet) in CeR
    risks: tuple[PaymentRisk, ...]

    @property
    def status(self) -> str:
        """The worst of the risks: what the facility must look at first."""
        return max((r.status for r in self.risks), key=SEVERITY.__getitem__, default=NOT_APPLICABLE)


def specialty_compliance(
    coverage: Coverage,
    contracted: bool,
    schedules: int,
    first_published_on: dt.date | None,
    unsent_changes: int,
    today: dt.date,
) -> SpecialtyCompliance:
    """Where the facility stands on each payment date of one specialty, seen from ``today``.

    An NFZ contract is what makes the rules apply (DOMAIN.md 6): a contracted specialty with
    nothing published is at risk before its date and breached after it, never not applicable; a
    specialty without a contract is not applicable, whatever was published.
    """
    dates = payment_dates(coverage.covered_from)
    published = first_published_on is not None
    on_time = first_published_on is not None and first_published_on <= dates.schedules_due
    return SpecialtyCompliance(
        specialty=str(coverage.specialty),
        covered_from=coverage.covered_from,
        draft=coverage.draft,
        source=coverage.source,
        contracted=contracted,
        schedules=schedules,
        published=published,
        first_published_on=first_published_on,
        unsent_changes=unsent_changes,
        risks=(
            _deadline(contracted, on_time, first_published_on, today, dates.schedules_due),
            _withholding(contracted, on_time, first_published_on, today, dates),
            _cer_only(contracted, published, unsent_changes, today, dates.cer_bookings_only_from),
        ),
    )


NO_CONTRACT = "no NFZ contract in this specialty declared"


def _deadline(contracted: bool, on_time: bool, first: dt.date | None, today: dt.date, due: dt.date) -> PaymentRisk:
    rule = "schedules sent to CeR by this date"
    if not contracted:
        return PaymentRisk(due, rule, NOT_APPLICABLE, NO_CONTRACT)
    if on_time:
        return PaymentRisk(due, rule, OK, f"first published on {first}")
    if today <= due:
        left = (due - today).days
        return PaymentRisk(due, rule, AT_RISK, f"not yet accepted by CeR; {left} day{'' if left == 1 else 's'} left")
    late = f"first published on {first}, after the deadline" if first else "never published"
    return PaymentRisk(due, rule, BREACHED, late)


def _withholding(
    contracted: bool, on_time: bool, first: dt.date | None, today: dt.date, dates: PaymentDates
) -> PaymentRisk:
    rule = f"NFZ withholds payment where schedules were not sent by {dates.schedules_due}"
    withheld_from = dates.payment_withheld_from
    if not contracted:
        return PaymentRisk(withheld_from, rule, NOT_APPLICABLE, NO_CONTRACT)
    if on_time:
        return PaymentRisk(withheld_from, rule, OK, "schedules were sent in time")
    if today < withheld_from:
        return PaymentRisk(withheld_from, rule, AT_RISK, "payment will be withheld unless CeR accepts them")
    since = f"withheld since {withheld_from}"
    return PaymentRisk(withheld_from, rule, BREACHED, f"{since}; published on {first}" if first else since)


def _cer_only(contracted: bool, published: bool, unsent: int, today: dt.date, from_: dt.date) -> PaymentRisk:
    rule = "NFZ pays only for services booked through CeR"
    if not contracted:
        return PaymentRisk(from_, rule, NOT_APPLICABLE, NO_CONTRACT)
    if published and unsent == 0:
        return PaymentRisk(from_, rule, OK, "every change is in CeR")
    why = f"{unsent} changes not in CeR" if published else "no schedule in CeR"
    in_force = today >= from_
    return PaymentRisk(
        from_,
        rule,
        BREACHED if in_force else AT_RISK,
        f"{why}: their visits are not paid" if in_force else f"{why}: their visits would not be paid",
    )


# ----------------------------------------------------------------------------- CeR reconciliation


@dataclass(frozen=True)
class BookedVisit:
    """One patient on one slot, as CeR or the local schedule has it; ``reference`` is that side's id."""

    slot_id: uuid.UUID
    patient_pesel: str
    reference: str
    start: dt.datetime
    channel: str = "facility"


@dataclass(frozen=True)
class Drift:
    missing_locally: tuple[BookedVisit, ...]  # confirmed in CeR, not at the facility
    missing_in_cer: tuple[BookedVisit, ...]  # booked here, CeR does not know


def drift(in_cer: list[BookedVisit], local: list[BookedVisit]) -> Drift:
    """Compare by (slot, patient): the one fact both sides must agree on."""
    cer_keys = {(v.slot_id, v.patient_pesel) for v in in_cer}
    local_keys = {(v.slot_id, v.patient_pesel) for v in local}
    return Drift(
        missing_locally=tuple(v for v in in_cer if (v.slot_id, v.patient_pesel) not in local_keys),
        missing_in_cer=tuple(v for v in local if (v.slot_id, v.patient_pesel) not in cer_keys),
    )


def addressed_location(
    department_code: str | None, locations: Iterable[tuple[uuid.UUID, str | None]], poller_location: uuid.UUID
) -> uuid.UUID:
    """The facility's location an IKP item was addressed to, found by the department code P1 gives it.

    KS-SOMED: the duty doctor is searched "w pierwszej kolejności ... lokalizacja, do której zostało
    wystawione zamówienie". Choices where the source is silent: an item without a code, or with a
    code no location of the facility has, goes to the poller's location (the one the facility gave
    P1); when several locations share the code, the poller's wins if it is one of them, else the
    lowest id, so every replica and every poll picks the same one.
    """
    if department_code is None:
        return poller_location
    matching = sorted((lid for lid, code in locations if code == department_code), key=str)
    if not matching or poller_location in matching:
        return poller_location
    return matching[0]

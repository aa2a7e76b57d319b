"""IKP grouping: items a patient submits in one go become one request; comment folding.

Source (KS-SOMED, "Ważne!!!"): items entered "w tym samym czasie (bez zbędnych przerw)" form one
request; an order "rozciągnięte w czasie (w różnych porach dnia lub w kilkuminutowych odstępach)"
gives one request per item. The pause that still counts as "one go" is configurable (default 120 s).

Boundary (our choice, the source gives no number): a gap EQUAL to the configured gap still joins
the request, anything longer (120.000001 s) starts a new one. The setting reads as "the longest
pause tolerated inside one go", so the configured value itself is tolerated. Gaps are measured
between consecutive items (chaining), so five items 100 s apart form one request of 400 s.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import PrescriptionError

DEFAULT_GAP = dt.timedelta(seconds=120)


@dataclass(frozen=True)
class IkpItem:
    """One drug line a patient submitted on IKP."""

    patient_id: str
    drug: str
    packages: int
    submitted_at: dt.datetime
    comment: str | None = None

    def __post_init__(self) -> None:
        if not self.patient_id.strip():
            raise PrescriptionError("patient_id", "the item has no patient")
        if not self.drug.strip():
            raise PrescriptionError("drug", "the item names no drug")
        if isinstance(self.packages, bool) or self.packages < 1:
            raise PrescriptionError("packages", "at least one package must be ordered")
        if self.submitted_at.tzinfo is None or self.submitted_at.utcoffset() is None:
            raise PrescriptionError("submitted_at", "the submission time must carry a time zone")


@dataclass(frozen=True)
class RequestItem:
    drug: str
    packages: int
    comment: str | None


@dataclass(frozen=True)
class GroupedRequest:
    """One prescription request: its items in submission order and the folded global comment."""

    patient_id: str
    items: tuple[RequestItem, ...]
    comment: str | None
    first_submitted_at: dt.datetime
    last_submitted_at: dt.datetime


def normalise_comment(comment: str | None) -> str | None:
    """Surrounding whitespace dropped; None, "" and whitespace-only all mean "no comment"."""
    if comment is None:
        return None
    stripped = comment.strip()
    return stripped or None


def fold_comments(comments: Sequence[str | None]) -> tuple[str | None, tuple[str | None, ...]]:
    """(global comment, per-item comments).

    Every item with the same (normalised) comment: that comment becomes global, the items' are
    cleared - this includes "no item has a comment" (global None). Otherwise every item keeps its
    own normalised comment and there is no global one, also when only some items have one.
    """
    normalised = tuple(normalise_comment(c) for c in comments)
    if not normalised:
        return None, ()
    if len(set(normalised)) == 1:
        return normalised[0], tuple(None for _ in normalised)
    return None, normalised


def group_ikp_items(items: Iterable[IkpItem], gap: dt.timedelta = DEFAULT_GAP) -> list[GroupedRequest]:
    """Requests per patient, items chained while each pause to the previous item is <= ``gap``.

    Items are ordered by submission time (ties keep their input order). The result is ordered by
    each request's first submission, then patient id.
    """
    if gap < dt.timedelta(0):
        raise PrescriptionError("gap", "the grouping gap cannot be negative")
    by_patient: dict[str, list[IkpItem]] = {}
    for item in items:
        by_patient.setdefault(item.patient_id, []).append(item)
    requests: list[GroupedRequest] = []
    for patient_id, patient_items in by_patient.items():
        ordered = sorted(patient_items, key=lambda i: i.submitted_at)
        run: list[IkpItem] = []
        for item in ordered:
            if run and item.submitted_at - run[-1].submitted_at > gap:
                requests.append(_request(patient_id, run))
                run = []
            run.append(item)
        if run:
            requests.append(_request(patient_id, run))
    requests.sort(key=lambda r: (r.first_submitted_at, r.patient_id))
    return requests


def _request(patient_id: str, run: Sequence[IkpItem]) -> GroupedRequest:
    global_comment, comments = fold_comments([i.comment for i in run])
    return GroupedRequest(
        patient_id=patient_id,
        items=tuple(RequestItem(i.drug, i.packages, c) for i, c in zip(run, comments, strict=True)),
        comment=global_comment,
        first_submitted_at=run[0].submitted_at,
        last_submitted_at=run[-1].submitted_at,
    )

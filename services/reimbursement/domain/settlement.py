"""Monthly settlement of a subcontractor (rozliczenie podwykonawcy): rows, totals, documents, retention.

The source is Essity's FAQ for its subcontractors: the documents go to the contractor that holds the
NFZ contract (Essity there), which archives the orders for 5 years on the subcontractors' behalf.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum

from .errors import ReimbursementError
from .months import Month
from .orders import Channel, GroupCode

RETENTION_YEARS = 5
# The months a settlement may be asked for: wide enough for any record kept, narrow enough that the
# dates computed from the month (its days, the retention year) always exist.
FIRST_SETTLEMENT_YEAR = 2000
LAST_SETTLEMENT_YEAR = 2100


@dataclass(frozen=True)
class RealisationRecord:
    """One realisation as it was recorded; the money fields are the quote's rounded amounts."""

    order_number: str
    realized_on: dt.date
    months: tuple[Month, ...]
    group_code: GroupCode
    pieces: int
    unit_price: Decimal
    subsidy: Decimal
    patient_share: Decimal
    channel: Channel
    # Kontynuacja: a later realisation of an order whose doctor's pages went with an earlier settlement.
    continuation: bool = False
    # The pharmacy granted or changed entitlements from a document (legitymacja) at this realisation.
    entitlements_changed: bool = False

    @property
    def total(self) -> Decimal:
        return self.pieces * self.unit_price


class DocumentKind(StrEnum):
    DOCTOR_PAGES = "doctor_pages"
    PHARMACY_PAGES = "pharmacy_pages"
    ENTITLEMENT_DOCUMENT_COPY = "entitlement_document_copy"
    SUMMARY_STATEMENT = "summary_statement"
    ACCOUNTING_NOTE = "accounting_note"


_DESCRIPTIONS = {
    DocumentKind.DOCTOR_PAGES: (
        "original order pages printed by the doctor, with the NFZ confirmation (strony wydrukowane przez lekarza)"
    ),
    DocumentKind.PHARMACY_PAGES: (
        "original realisation pages printed by the pharmacy from eZWM, signed (strony realizacji z eZWM)"
    ),
    DocumentKind.ENTITLEMENT_DOCUMENT_COPY: (
        "copy of the document the entitlements were granted or changed on (kserokopia legitymacji lub dokumentu)"
    ),
    DocumentKind.SUMMARY_STATEMENT: (
        "summary statement of the realised orders (zestawienie zbiorcze zrealizowanych wniosków)"
    ),
    DocumentKind.ACCOUNTING_NOTE: "accounting note for the month (nota księgowa za dany okres)",
}


@dataclass(frozen=True)
class Document:
    kind: DocumentKind
    order_number: str | None = None  # None for the month's own documents

    @property
    def description(self) -> str:
        return _DESCRIPTIONS[self.kind]


@dataclass(frozen=True)
class SettlementTotals:
    realisations: int
    pieces: int
    total: Decimal
    subsidy: Decimal
    patient_share: Decimal


@dataclass(frozen=True)
class Settlement:
    month: Month
    rows: tuple[RealisationRecord, ...]
    totals: SettlementTotals
    documents: tuple[Document, ...]
    retain_until: dt.date


def settlement_month(text: str, field: str = "month") -> Month:
    """The ``YYYY-MM`` a settlement is asked for, in the years 2000 to 2100."""
    month = Month.parse(text, field)
    if not FIRST_SETTLEMENT_YEAR <= month.year <= LAST_SETTLEMENT_YEAR:
        raise ReimbursementError(
            field,
            f"{text} is outside the months that can be settled: "
            f"{FIRST_SETTLEMENT_YEAR}-01 to {LAST_SETTLEMENT_YEAR}-12",
        )
    return month


def settle_month(month: Month, records: Iterable[RealisationRecord]) -> Settlement:
    """Summarise the realisations DATED in ``month`` (a realisation belongs to its date's month)."""
    rows = tuple(sorted(records, key=lambda r: (r.realized_on, r.order_number)))
    _check_rows(month, rows)
    return Settlement(
        month=month,
        rows=rows,
        totals=SettlementTotals(
            realisations=len(rows),
            pieces=sum(r.pieces for r in rows),
            total=sum((r.total for r in rows), Decimal("0.00")),
            subsidy=sum((r.subsidy for r in rows), Decimal("0.00")),
            patient_share=sum((r.patient_share for r in rows), Decimal("0.00")),
        ),
        documents=documents_to_send(rows),
        retain_until=retain_until(month),
    )


def documents_to_send(rows: Iterable[RealisationRecord]) -> tuple[Document, ...]:
    """Per realisation its pages, then the month's summary and accounting note; nothing for no rows."""
    documents: list[Document] = []
    for row in rows:
        # Pages 1-3 go once, with the first realisation, and never for a teleconsultation (nothing printed).
        if not row.continuation and row.channel is Channel.VISIT:
            documents.append(Document(DocumentKind.DOCTOR_PAGES, row.order_number))
        documents.append(Document(DocumentKind.PHARMACY_PAGES, row.order_number))
        if row.entitlements_changed:
            documents.append(Document(DocumentKind.ENTITLEMENT_DOCUMENT_COPY, row.order_number))
    if documents:
        documents += [Document(DocumentKind.SUMMARY_STATEMENT), Document(DocumentKind.ACCOUNTING_NOTE)]
    return tuple(documents)


def retain_until(month: Month) -> dt.date:
    """The last day the month's records must be kept: 5 full calendar years after the month's year.

    The source says "5 lat" without a start; counting from the end of the settlement year (as the
    accounting act does for accounting records) is never shorter than 5 years from any realisation.
    """
    return dt.date(month.year + RETENTION_YEARS, 12, 31)


def _check_rows(month: Month, rows: tuple[RealisationRecord, ...]) -> None:
    seen: set[str] = set()
    for row in rows:
        if Month.of(row.realized_on) != month:
            raise ReimbursementError(
                "month", f"realisation of {row.order_number} on {row.realized_on} is not in {month}"
            )
        if row.order_number in seen:
            # One realisation a month per order: two rows mean a double booking upstream.
            raise ReimbursementError("month", f"order {row.order_number} is realised twice in {month}")
        seen.add(row.order_number)

"""Monthly settlement of a subcontractor: rows, Decimal totals, the documents the source lists, and
the 5-year retention date; plus one walk from order to settlement through every domain step."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.reimbursement.domain import (
    RETENTION_YEARS,
    Channel,
    Document,
    DocumentKind,
    EntitlementGrant,
    GroupCode,
    Month,
    RealisationRecord,
    ReimbursementError,
    check_realisation,
    entitlements_in_force,
    month_span,
    new_order,
    price_realisation,
    record_realisation,
    retain_until,
    settle_month,
    settlement_month,
)
from shared.identifiers import pesel_birth_date

D = Decimal
MARCH = Month(2023, 3)


def record(number: str, day: int, **changes: Any) -> RealisationRecord:
    base: dict[str, Any] = {
        "order_number": number,
        "realized_on": dt.date(2023, 3, day),
        "months": (MARCH,),
        "group_code": GroupCode.parse("P.101.MCH1"),
        "pieces": 60,
        "unit_price": D("1.50"),
        "subsidy": D("63.00"),
        "patient_share": D("27.00"),
        "channel": Channel.VISIT,
    }
    return RealisationRecord(**{**base, **changes})


def test_rows_are_sorted_and_totals_are_decimal_sums() -> None:
    rows = [
        record("B", 20, pieces=30, unit_price=D("0.80"), subsidy=D("16.80"), patient_share=D("7.20")),
        record("A", 3),
        record("C", 3, pieces=1, unit_price=D("0.75"), subsidy=D("0.53"), patient_share=D("0.22")),
    ]
    s = settle_month(MARCH, rows)
    assert [r.order_number for r in s.rows] == ["A", "C", "B"]
    assert s.totals.realisations == 3
    assert s.totals.pieces == 91
    assert s.totals.total == D("114.75")
    assert s.totals.subsidy == D("80.33")
    assert s.totals.patient_share == D("34.42")
    assert s.totals.subsidy + s.totals.patient_share == s.totals.total
    assert all(isinstance(v, Decimal) for v in (s.totals.total, s.totals.subsidy, s.totals.patient_share))


def test_a_first_realisation_at_a_visit_sends_the_doctors_and_the_pharmacys_pages() -> None:
    docs = settle_month(MARCH, [record("A", 3)]).documents
    assert [(d.kind, d.order_number) for d in docs] == [
        (DocumentKind.DOCTOR_PAGES, "A"),
        (DocumentKind.PHARMACY_PAGES, "A"),
        (DocumentKind.SUMMARY_STATEMENT, None),
        (DocumentKind.ACCOUNTING_NOTE, None),
    ]


@pytest.mark.parametrize(
    ("changes", "kinds"),
    [
        ({"channel": Channel.TELECONSULTATION}, [DocumentKind.PHARMACY_PAGES]),  # nothing printed by the doctor
        ({"continuation": True}, [DocumentKind.PHARMACY_PAGES]),  # pages 1-3 went with an earlier month
        ({"continuation": True, "channel": Channel.TELECONSULTATION}, [DocumentKind.PHARMACY_PAGES]),
        (
            {"entitlements_changed": True},
            [DocumentKind.DOCTOR_PAGES, DocumentKind.PHARMACY_PAGES, DocumentKind.ENTITLEMENT_DOCUMENT_COPY],
        ),
        (
            {"entitlements_changed": True, "continuation": True},
            [DocumentKind.PHARMACY_PAGES, DocumentKind.ENTITLEMENT_DOCUMENT_COPY],
        ),
    ],
)
def test_documents_per_realisation(changes: dict[str, Any], kinds: list[DocumentKind]) -> None:
    docs = settle_month(MARCH, [record("A", 3, **changes)]).documents
    assert [d.kind for d in docs] == [*kinds, DocumentKind.SUMMARY_STATEMENT, DocumentKind.ACCOUNTING_NOTE]


def test_the_months_documents_come_once_after_every_realisations_pages() -> None:
    docs = settle_month(MARCH, [record("A", 3), record("B", 4, continuation=True)]).documents
    assert [d.kind for d in docs].count(DocumentKind.SUMMARY_STATEMENT) == 1
    assert [d.kind for d in docs].count(DocumentKind.ACCOUNTING_NOTE) == 1
    assert docs[-2:] == (Document(DocumentKind.SUMMARY_STATEMENT), Document(DocumentKind.ACCOUNTING_NOTE))


def test_every_document_has_a_description_with_the_polish_name() -> None:
    assert "zestawienie zbiorcze" in Document(DocumentKind.SUMMARY_STATEMENT).description
    assert "nota księgowa" in Document(DocumentKind.ACCOUNTING_NOTE).description
    assert all(Document(kind).description for kind in DocumentKind)


def test_an_empty_month_has_zero_totals_and_nothing_to_send() -> None:
    s = settle_month(MARCH, [])
    assert (s.totals.pieces, s.totals.subsidy, s.totals.patient_share) == (0, D("0.00"), D("0.00"))
    assert s.documents == ()
    assert s.retain_until == dt.date(2028, 12, 31)


@pytest.mark.parametrize(
    ("month", "until"),
    [
        (Month(2023, 1), dt.date(2028, 12, 31)),
        (Month(2023, 12), dt.date(2028, 12, 31)),
        (Month(2024, 2), dt.date(2029, 12, 31)),
    ],
)
def test_retention_runs_five_full_years_after_the_settlement_year(month: Month, until: dt.date) -> None:
    assert retain_until(month) == until


@given(st.builds(Month, st.integers(2000, 2100), st.integers(1, 12)))
def test_retention_is_never_shorter_than_five_years_from_any_day_of_the_month(month: Month) -> None:
    assert retain_until(month) >= Month(month.year + RETENTION_YEARS, month.month).last_day


def test_a_realisation_from_another_month_is_refused() -> None:
    with pytest.raises(ReimbursementError, match="is not in 2023-03") as caught:
        settle_month(MARCH, [record("A", 3), record("B", 1, realized_on=dt.date(2023, 4, 1))])
    assert caught.value.field == "month"


def test_one_order_twice_in_a_month_is_refused() -> None:
    with pytest.raises(ReimbursementError, match="realised twice"):
        settle_month(MARCH, [record("A", 3), record("A", 20)])


def test_a_december_to_february_realisation_is_settled_in_december() -> None:
    rec = record("A", 3, realized_on=dt.date(2023, 12, 5), months=month_span(Month(2023, 12), 3))
    assert settle_month(Month(2023, 12), [rec]).totals.realisations == 1
    with pytest.raises(ReimbursementError):
        settle_month(Month(2024, 1), [rec])


def test_from_order_to_settlement() -> None:
    order = new_order(
        code="P.100",
        group="MCH2",
        pieces_per_month=90,
        months=12,
        start_month="2023-11",
        entitlements=["47ZN"],
        channel="visit",
        today=dt.date(2023, 10, 20),
    )
    realized_on = dt.date(2023, 11, 6)
    request = check_realisation(order, realized_on=realized_on, months=month_span(Month(2023, 11), 3), pieces=250)
    # The pharmacy adds 47IW from a document shown at the counter (and must send its copy).
    check = entitlements_in_force(
        pesel_birth_date("44051401359"),
        [EntitlementGrant("47ZN"), EntitlementGrant("47IW", valid_until=dt.date(2024, 6, 30))],
        realized_on,
    )
    quote = price_realisation(
        group_code=order.group_code,
        pieces=request.pieces,
        months=len(request.months),
        unit_price=D("2.49"),
        entitlements=check.in_force,
        realized_on=realized_on,
    )
    # 250 x 2.30 = 575.00 at 100 %; the patient pays 250 x 0.19 = 47.50 over the limit.
    assert (quote.subsidy, quote.patient_share) == (D("575.00"), D("47.50"))
    order = record_realisation(order, request)
    rec = RealisationRecord(
        order_number="ZWM-1",
        realized_on=realized_on,
        months=request.months,
        group_code=order.group_code,
        pieces=request.pieces,
        unit_price=D("2.49"),
        subsidy=quote.subsidy,
        patient_share=quote.patient_share,
        channel=order.channel,
        continuation=False,
        entitlements_changed=True,
    )
    settlement = settle_month(Month(2023, 11), [rec])
    assert settlement.totals.subsidy == D("575.00")
    assert [d.kind for d in settlement.documents] == [
        DocumentKind.DOCTOR_PAGES,
        DocumentKind.PHARMACY_PAGES,
        DocumentKind.ENTITLEMENT_DOCUMENT_COPY,
        DocumentKind.SUMMARY_STATEMENT,
        DocumentKind.ACCOUNTING_NOTE,
    ]
    assert settlement.retain_until == dt.date(2028, 12, 31)
    assert order.months_realized == frozenset(request.months)


@pytest.mark.parametrize("text", ["2000-01", "2030-03", "2100-12"])
def test_a_settlement_month_from_2000_to_2100_is_read(text: str) -> None:
    assert str(settlement_month(text)) == text


@pytest.mark.parametrize("text", ["1999-12", "2101-01", "0001-01", "9999-12"])
def test_a_settlement_month_outside_2000_to_2100_is_refused(text: str) -> None:
    with pytest.raises(ReimbursementError) as caught:
        settlement_month(text)
    assert caught.value.field == "month"
    assert caught.value.message == f"{text} is outside the months that can be settled: 2000-01 to 2100-12"


def test_a_settlement_month_is_read_strictly() -> None:
    with pytest.raises(ReimbursementError, match="YYYY-MM"):
        settlement_month("2030-3")

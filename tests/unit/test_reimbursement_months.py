"""Month arithmetic (YYYY-MM): parsing, adding across year ends, distance, ordering, day bounds."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.reimbursement.domain import Month, ReimbursementError, month_span

months = st.builds(Month, st.integers(1900, 2200), st.integers(1, 12))
offsets = st.integers(-600, 600)


def m(text: str) -> Month:
    return Month.parse(text)


@pytest.mark.parametrize(
    ("text", "year", "month"),
    [("2023-01", 2023, 1), ("2023-12", 2023, 12), ("1999-07", 1999, 7), ("0001-01", 1, 1)],
)
def test_parse_reads_year_and_month(text: str, year: int, month: int) -> None:
    assert Month.parse(text) == Month(year, month)
    assert str(Month.parse(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "2023-1",
        "2023-13",
        "2023-00",
        "23-01",
        "2023-01-05",
        "",
        " 2023-01",
        "2023/01",
        "0000-05",
        "２０２３-01",
        "2023-01\n",
    ],
)
def test_parse_refuses_anything_but_yyyy_mm_and_names_the_field(text: str) -> None:
    with pytest.raises(ReimbursementError) as caught:
        Month.parse(text, "start_month")
    assert caught.value.field == "start_month"
    assert "month" in caught.value.message


@pytest.mark.parametrize(("year", "month"), [(2023, 0), (2023, 13), (0, 5), (10000, 1)])
def test_a_month_cannot_be_built_out_of_range(year: int, month: int) -> None:
    with pytest.raises(ReimbursementError):
        Month(year, month)


@pytest.mark.parametrize(
    ("start", "offset", "expected"),
    [
        ("2023-12", 1, "2024-01"),
        ("2023-11", 2, "2024-01"),
        ("2023-07", 6, "2024-01"),
        ("2023-06", 11, "2024-05"),  # a 12-month order from June ends in May
        ("2023-11", 14, "2025-01"),
        ("2023-01", 0, "2023-01"),
        ("2024-01", -1, "2023-12"),
        ("2024-03", -15, "2022-12"),
        ("1999-12", 1, "2000-01"),
    ],
)
def test_adding_months_crosses_year_ends(start: str, offset: int, expected: str) -> None:
    assert m(start) + offset == m(expected)


@pytest.mark.parametrize(
    ("later", "earlier", "distance"),
    [("2024-02", "2023-11", 3), ("2024-01", "2023-12", 1), ("2023-05", "2023-05", 0), ("2022-12", "2023-01", -1)],
)
def test_subtracting_months_counts_the_months_between(later: str, earlier: str, distance: int) -> None:
    assert m(later) - m(earlier) == distance


@pytest.mark.parametrize(
    ("day", "expected"),
    [(dt.date(2023, 12, 31), "2023-12"), (dt.date(2024, 1, 1), "2024-01"), (dt.date(2024, 2, 29), "2024-02")],
)
def test_the_month_of_a_date(day: dt.date, expected: str) -> None:
    assert Month.of(day) == m(expected)


def test_ordering_is_chronological_year_first() -> None:
    unsorted = [m("2024-01"), m("2023-12"), m("2022-12"), m("2023-02"), m("2023-11")]
    assert sorted(unsorted) == [m("2022-12"), m("2023-02"), m("2023-11"), m("2023-12"), m("2024-01")]
    assert m("2023-12") < m("2024-01")
    assert m("2023-02") > m("2022-12")  # a month-number comparison would say the opposite


@pytest.mark.parametrize(
    ("text", "first", "last"),
    [
        ("2024-02", dt.date(2024, 2, 1), dt.date(2024, 2, 29)),
        ("2023-02", dt.date(2023, 2, 1), dt.date(2023, 2, 28)),
        ("2023-12", dt.date(2023, 12, 1), dt.date(2023, 12, 31)),
        ("2023-04", dt.date(2023, 4, 1), dt.date(2023, 4, 30)),
    ],
)
def test_first_and_last_day(text: str, first: dt.date, last: dt.date) -> None:
    assert m(text).first_day == first
    assert m(text).last_day == last


def test_month_span_runs_across_the_year_end() -> None:
    assert month_span(m("2023-11"), 4) == (m("2023-11"), m("2023-12"), m("2024-01"), m("2024-02"))
    assert month_span(m("2023-11"), 0) == ()


def test_months_are_hashable_values() -> None:
    assert {m("2023-01"), Month(2023, 1)} == {Month(2023, 1)}


@given(months, offsets, offsets)
def test_adding_is_associative(start: Month, a: int, b: int) -> None:
    assert (start + a) + b == start + (a + b)


@given(months, offsets)
def test_subtraction_undoes_addition(start: Month, n: int) -> None:
    assert (start + n) - start == n
    assert (start + n > start) == (n > 0)


@given(months)
def test_parse_reads_what_str_writes(month: Month) -> None:
    assert Month.parse(str(month)) == month


@given(months)
def test_a_month_holds_exactly_its_days(month: Month) -> None:
    assert Month.of(month.first_day) == month
    assert Month.of(month.last_day) == month
    assert Month.of(month.last_day + dt.timedelta(days=1)) == month + 1
    assert Month.of(month.first_day - dt.timedelta(days=1)) == month + -1

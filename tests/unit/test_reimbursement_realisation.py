"""Realisation rules, each at its boundary: 1-6 months, consecutive, from the realisation date's
month, nothing passed, nothing supplied twice, inside the (possibly shortened) validity, pieces."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pytest

from services.reimbursement.domain import (
    RULE_SETS,
    RULES_2023,
    Month,
    Order,
    ProductCode,
    ProductGroup,
    RealisationConflict,
    ReimbursementError,
    check_realisation,
    end_order,
    month_span,
    realisation_date,
    record_realisation,
    replace_rule_set,
)

ON = dt.date(2023, 3, 15)


def m(text: str) -> Month:
    return Month.parse(text)


def span(first: str, count: int) -> tuple[Month, ...]:
    return month_span(m(first), count)


def an_order(**changes: Any) -> Order:
    base: dict[str, Any] = {
        "code": ProductCode.P101,
        "group": ProductGroup.MCH1,
        "pieces_per_month": 60,
        "months": 12,
        "start_month": m("2023-01"),
    }
    return Order(**{**base, **changes})


def refused(order: Order, **kwargs: Any) -> ReimbursementError:
    with pytest.raises(ReimbursementError) as caught:
        check_realisation(order, **kwargs)
    return caught.value


# ----------------------------------------------------------------------------- 1 to 6 months


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 6])
def test_one_to_six_months_are_accepted(count: int) -> None:
    request = check_realisation(an_order(), realized_on=ON, months=span("2023-03", count), pieces=60 * count)
    assert request.months == span("2023-03", count)
    assert request.pieces == 60 * count
    assert request.realized_on == ON


def test_seven_months_are_refused() -> None:
    error = refused(an_order(), realized_on=ON, months=span("2023-03", 7), pieces=60)
    assert error.field == "months"
    assert error.message == "one realisation covers 1 to 6 months, not 7"


def test_no_month_at_all_is_refused() -> None:
    error = refused(an_order(), realized_on=ON, months=[], pieces=60)
    assert error.field == "months"
    assert "not 0" in error.message


def test_six_months_across_the_year_end() -> None:
    order = an_order(start_month=m("2023-10"))
    request = check_realisation(order, realized_on=dt.date(2023, 11, 5), months=span("2023-11", 6), pieces=360)
    assert request.months[-1] == m("2024-04")


def test_the_maximum_comes_from_the_rule_set_in_force() -> None:
    # Before January 2020 one realisation covered at most 3 months; such a table is honoured.
    three_months = dataclasses.replace(RULES_2023, valid_from=dt.date(2024, 1, 1), max_months_per_realisation=3)
    rules = replace_rule_set(RULE_SETS, three_months)
    order = an_order(start_month=m("2024-01"))
    on = dt.date(2024, 1, 10)
    assert check_realisation(order, realized_on=on, months=span("2024-01", 3), pieces=1, rule_sets=rules)
    error = refused(order, realized_on=on, months=span("2024-01", 4), pieces=1, rule_sets=rules)
    assert error.message == "one realisation covers 1 to 3 months, not 4"


# ----------------------------------------------------------------------------- consecutive


def test_months_may_come_in_any_order_and_are_sorted() -> None:
    request = check_realisation(an_order(), realized_on=ON, months=[m("2023-04"), m("2023-03")], pieces=1)
    assert request.months == (m("2023-03"), m("2023-04"))


def test_a_gap_is_refused() -> None:
    error = refused(an_order(), realized_on=ON, months=[m("2023-03"), m("2023-05")], pieces=1)
    assert error.field == "months"
    assert error.message == "the months must be consecutive: 2023-04 is missing between 2023-03 and 2023-05"


def test_a_month_listed_twice_is_refused() -> None:
    error = refused(an_order(), realized_on=ON, months=[m("2023-03"), m("2023-03")], pieces=1)
    assert error.field == "months"
    assert error.message == "2023-03 is listed twice"


# ----------------------------------------------------------------------------- realisation date's month


def test_a_passed_month_is_refused() -> None:
    error = refused(an_order(), realized_on=ON, months=span("2023-02", 2), pieces=1)
    assert error.field == "months"
    assert error.message == "2023-02 has already passed: a realisation on 2023-03-15 cannot supply it"


def test_the_last_day_of_a_month_still_supplies_it_and_the_next_day_does_not() -> None:
    assert check_realisation(an_order(), realized_on=dt.date(2023, 3, 31), months=span("2023-03", 1), pieces=1)
    error = refused(an_order(), realized_on=dt.date(2023, 4, 1), months=span("2023-03", 2), pieces=1)
    assert "2023-03 has already passed" in error.message


def test_a_passed_month_across_the_year_end_is_refused() -> None:
    error = refused(
        an_order(start_month=m("2023-10")), realized_on=dt.date(2024, 1, 2), months=span("2023-12", 2), pieces=1
    )
    assert error.message == "2023-12 has already passed: a realisation on 2024-01-02 cannot supply it"


def test_months_must_start_with_the_month_of_the_realisation_date() -> None:
    error = refused(an_order(), realized_on=ON, months=span("2023-04", 2), pieces=1)
    assert error.field == "months"
    assert error.message == "the months must start with the month of the realisation date (2023-03), not 2023-04"


def test_a_future_realisation_date_is_refused_when_today_is_known() -> None:
    order = an_order()
    assert check_realisation(order, realized_on=ON, months=span("2023-03", 1), pieces=1, today=ON)
    error = refused(order, realized_on=ON, months=span("2023-03", 1), pieces=1, today=ON - dt.timedelta(days=1))
    assert error.field == "realized_on"
    assert error.message == "2023-03-15 is in the future (today is 2023-03-14)"


def test_an_offline_paper_date_passes_the_order_checks() -> None:
    # Once realisation_date has accepted a paper date, the months are judged against that date.
    assert check_realisation(an_order(), realized_on=ON, months=span("2023-03", 1), pieces=1, today=dt.date(2023, 5, 2))


# ----------------------------------------------------------------------------- the realisation date


def dated(requested: dt.date | None, today: dt.date, *, offline: bool = False, statement: bool = False) -> dt.date:
    return realisation_date(requested, today=today, offline=offline, patient_statement=statement)


def refused_date(requested: dt.date, today: dt.date, **kwargs: bool) -> ReimbursementError:
    with pytest.raises(ReimbursementError) as caught:
        dated(requested, today, **kwargs)
    return caught.value


def test_the_realisation_date_defaults_to_today() -> None:
    assert dated(None, ON) == ON
    assert dated(ON, ON) == ON
    assert dated(None, ON, offline=True) == ON  # a paper realisation registered the same day


def test_a_future_date_is_refused_even_offline() -> None:
    error = refused_date(ON + dt.timedelta(days=1), ON, offline=True, statement=True)
    assert error.field == "realized_on"
    assert error.message == "2023-03-16 is in the future (today is 2023-03-15)"


@pytest.mark.parametrize("earlier", [ON - dt.timedelta(days=1), dt.date(2023, 2, 28), dt.date(2022, 12, 31)])
def test_an_earlier_date_without_the_offline_path_is_refused(earlier: dt.date) -> None:
    error = refused_date(earlier, ON, statement=True)
    assert error.field == "realized_on"
    assert "offline" in error.message and "dated today (2023-03-15)" in error.message


def test_an_earlier_offline_date_needs_the_patients_statement() -> None:
    error = refused_date(ON - dt.timedelta(days=1), ON, offline=True)
    assert error.field == "patient_statement"
    assert "signed statement" in error.message
    assert dated(ON - dt.timedelta(days=1), ON, offline=True, statement=True) == ON - dt.timedelta(days=1)


def test_a_paper_date_on_the_last_day_of_a_month_still_supplies_that_month() -> None:
    # Paper realisation on 31 March, registered on 2 April: March had not passed on the paper date.
    paper = dated(dt.date(2023, 3, 31), dt.date(2023, 4, 2), offline=True, statement=True)
    request = check_realisation(
        an_order(), realized_on=paper, months=span("2023-03", 2), pieces=1, today=dt.date(2023, 4, 2)
    )
    assert (request.realized_on, request.months) == (dt.date(2023, 3, 31), span("2023-03", 2))


def test_a_paper_date_on_the_first_of_the_next_month_never_supplies_the_month_before() -> None:
    paper = dated(dt.date(2023, 4, 1), dt.date(2023, 4, 2), offline=True, statement=True)
    error = refused(an_order(), realized_on=paper, months=span("2023-03", 2), pieces=1, today=dt.date(2023, 4, 2))
    assert error.field == "months"
    assert error.message == "2023-03 has already passed: a realisation on 2023-04-01 cannot supply it"


# ----------------------------------------------------------------------------- supplied before (once a month)


def test_a_month_supplied_before_is_a_conflict() -> None:
    order = an_order(months_realized=frozenset({m("2023-04")}))
    with pytest.raises(RealisationConflict) as caught:
        check_realisation(order, realized_on=ON, months=span("2023-03", 3), pieces=1)
    assert caught.value.field == "months"
    assert caught.value.message == "already supplied by an earlier realisation of this order: 2023-04"


def test_a_second_realisation_in_the_same_month_is_a_conflict() -> None:
    order = record_realisation(
        an_order(), check_realisation(an_order(), realized_on=dt.date(2023, 3, 1), months=span("2023-03", 1), pieces=60)
    )
    with pytest.raises(RealisationConflict, match="2023-03"):
        check_realisation(order, realized_on=dt.date(2023, 3, 31), months=span("2023-03", 2), pieces=1)


def test_a_continuation_follows_the_months_already_supplied() -> None:
    first = check_realisation(an_order(), realized_on=dt.date(2023, 1, 10), months=span("2023-01", 4), pieces=240)
    order = record_realisation(an_order(), first)
    assert order.months_realized == frozenset(span("2023-01", 4))
    # Kontynuacja: after four months the patient comes for the next two.
    second = check_realisation(order, realized_on=dt.date(2023, 5, 3), months=span("2023-05", 2), pieces=120)
    assert record_realisation(order, second).months_realized == frozenset(span("2023-01", 6))
    with pytest.raises(RealisationConflict, match="2023-04"):
        check_realisation(order, realized_on=dt.date(2023, 4, 20), months=span("2023-04", 2), pieces=1)


# ----------------------------------------------------------------------------- validity


def test_the_last_month_of_validity_is_allowed_and_the_one_after_refused() -> None:
    order = an_order(start_month=m("2023-07"), months=6)  # until 2023-12
    on = dt.date(2023, 12, 31)
    assert check_realisation(order, realized_on=on, months=span("2023-12", 1), pieces=60)
    error = refused(order, realized_on=dt.date(2023, 11, 2), months=span("2023-11", 3), pieces=60)
    assert error.field == "months"
    assert error.message == "2024-01 is after the order's validity, which ends with 2023-12"


def test_a_realisation_dated_after_the_validity_is_refused() -> None:
    order = an_order(start_month=m("2023-07"), months=6)
    error = refused(order, realized_on=dt.date(2024, 1, 1), months=span("2024-01", 1), pieces=1)
    assert error.field == "realized_on"
    assert error.message == "the order is valid until 2023-12: it cannot be realised on 2024-01-01"


def test_a_realisation_dated_before_the_validity_is_refused() -> None:
    order = an_order(start_month=m("2023-07"))
    assert check_realisation(order, realized_on=dt.date(2023, 7, 1), months=span("2023-07", 1), pieces=1)
    error = refused(order, realized_on=dt.date(2023, 6, 30), months=span("2023-06", 2), pieces=1)
    assert error.field == "realized_on"
    assert error.message == "the order is valid from 2023-07: it cannot be realised on 2023-06-30"


def test_after_a_shortening_the_new_last_month_is_the_limit() -> None:
    order = end_order(an_order(start_month=m("2023-01"), months=12), m("2023-09"))
    assert check_realisation(order, realized_on=dt.date(2023, 9, 30), months=span("2023-09", 1), pieces=60)
    error = refused(order, realized_on=dt.date(2023, 8, 1), months=span("2023-08", 3), pieces=60)
    assert error.field == "months"
    assert error.message == (
        "2023-10 is after the order's validity, which ends with 2023-09 "
        "(ended or shortened by the doctor; issued until 2023-12)"
    )
    late = refused(order, realized_on=dt.date(2023, 10, 1), months=span("2023-10", 1), pieces=1)
    assert late.field == "realized_on"
    assert "ended or shortened" in late.message


# ----------------------------------------------------------------------------- pieces


@pytest.mark.parametrize("count", [1, 3, 6])
def test_pieces_up_to_the_monthly_maximum_times_months(count: int) -> None:
    limit = 60 * count
    assert check_realisation(an_order(), realized_on=ON, months=span("2023-03", count), pieces=limit).pieces == limit
    error = refused(an_order(), realized_on=ON, months=span("2023-03", count), pieces=limit + 1)
    assert error.field == "pieces"
    assert error.message == f"at most {limit} pieces for {count} month(s) at 60 a month, not {limit + 1}"


def test_the_patient_may_take_fewer_pieces_than_ordered() -> None:
    assert check_realisation(an_order(), realized_on=ON, months=span("2023-03", 2), pieces=1).pieces == 1


@pytest.mark.parametrize(("pieces", "fragment"), [(0, "at least 1"), (-1, "at least 1"), (True, "whole number")])
def test_pieces_must_be_a_positive_whole_number(pieces: Any, fragment: str) -> None:
    error = refused(an_order(), realized_on=ON, months=span("2023-03", 1), pieces=pieces)
    assert error.field == "pieces"
    assert fragment in error.message


# ----------------------------------------------------------------------------- dates without rules


def test_a_realisation_before_any_known_rules_is_refused() -> None:
    order = an_order(start_month=m("2019-07"))
    error = refused(order, realized_on=dt.date(2019, 12, 31), months=span("2019-12", 1), pieces=1)
    assert error.field == "realized_on"
    assert error.message == "no reimbursement rules are known for 2019-12-31 (earliest: 2020-01-01)"


def test_a_2022_realisation_is_checked_even_though_its_amounts_are_not_loaded() -> None:
    # The size rules of 2020-2022 are known; only the money needs the operator's amounts.
    order = an_order(start_month=m("2022-10"))
    request = check_realisation(order, realized_on=dt.date(2022, 12, 20), months=span("2022-12", 3), pieces=180)
    assert request.months == (m("2022-12"), m("2023-01"), m("2023-02"))


def test_an_offline_paper_date_never_reaches_past_a_shortened_end() -> None:
    # Shortened to March; a paper realisation of 31 March registered in April supplies March only.
    order = end_order(an_order(start_month=m("2023-01"), months=12), m("2023-03"))
    paper = dt.date(2023, 3, 31)
    today = dt.date(2023, 4, 3)
    assert check_realisation(order, realized_on=paper, months=span("2023-03", 1), pieces=60, today=today)
    error = refused(order, realized_on=paper, months=span("2023-03", 2), pieces=60, today=today)
    assert error.field == "months"
    assert "2023-04 is after the order's validity" in error.message
    late = refused(order, realized_on=dt.date(2023, 4, 1), months=span("2023-04", 1), pieces=60, today=today)
    assert late.field == "realized_on"

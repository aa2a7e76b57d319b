"""Order value objects: codes, groups, entitlements, channel, validity, ending and shortening."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from services.reimbursement.domain import (
    MAX_ORDER_MONTHS,
    Channel,
    GroupCode,
    Month,
    Order,
    ProductCode,
    ProductGroup,
    ReimbursementError,
    check_continuation,
    end_order,
    new_order,
    normalise_entitlements,
)

VALID: dict[str, Any] = {
    "code": "P.100",
    "group": "MCH1",
    "pieces_per_month": 60,
    "months": 12,
    "start_month": "2023-06",
    "entitlements": [" 47zn", "47OR", "47ZN"],
    "channel": "visit",
    "today": dt.date(2023, 6, 1),
}


def m(text: str) -> Month:
    return Month.parse(text)


def order(**changes: Any) -> Order:
    return new_order(**{**VALID, **changes})


def test_a_valid_order_is_normalised() -> None:
    o = order()
    assert o.code is ProductCode.P100
    assert o.group is ProductGroup.MCH1
    assert o.group_code == GroupCode(ProductCode.P100, ProductGroup.MCH1)
    assert str(o.group_code) == "P.100.MCH1"
    assert o.pieces_per_month == 60
    assert o.entitlements == frozenset({"47ZN", "47OR"})
    assert o.channel is Channel.VISIT
    assert o.end_month is None
    assert o.months_realized == frozenset()


def test_a_twelve_month_order_runs_across_the_year_end() -> None:
    o = order(start_month="2023-06", months=12)
    assert o.issued_last_month == o.last_month == m("2024-05")
    assert o.valid_months[0] == m("2023-06")
    assert o.valid_months[-1] == m("2024-05")
    assert len(o.valid_months) == 12


@pytest.mark.parametrize(("code", "group"), [(c.value, g.value) for c in ProductCode for g in ProductGroup])
def test_every_code_and_group_is_accepted(code: str, group: str) -> None:
    o = order(code=code, group=group.lower())
    assert str(o.group_code) == f"{code}.{group}"
    assert GroupCode.parse(f"{code}.{group}") == o.group_code
    assert GroupCode.parse(f" {code.lower()}.{group.lower()} ") == o.group_code


def test_teleconsultation_channel() -> None:
    assert order(channel="Teleconsultation").channel is Channel.TELECONSULTATION


@pytest.mark.parametrize("months", [1, MAX_ORDER_MONTHS])
def test_months_at_the_bounds_are_accepted(months: int) -> None:
    assert order(months=months).months == months


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"code": "P.102"}, "code", "P.100 or P.101"),
        ({"code": "P100"}, "code", "P.100 or P.101"),
        ({"group": "MCH3"}, "group", "PW, MCH1, PP, MCH2, PM2"),
        ({"group": "P.100.MCH1"}, "group", "product group"),
        ({"pieces_per_month": 0}, "pieces_per_month", "at least 1"),
        ({"pieces_per_month": -5}, "pieces_per_month", "at least 1"),
        ({"pieces_per_month": True}, "pieces_per_month", "whole number"),
        ({"pieces_per_month": 1.5}, "pieces_per_month", "whole number"),
        ({"months": 0}, "months", "at least 1"),
        ({"months": 13}, "months", "at most 12"),
        ({"start_month": "2023-13"}, "start_month", "calendar month"),
        ({"start_month": "June 2023"}, "start_month", "YYYY-MM"),
        ({"entitlements": "47ZN"}, "entitlements", "list of codes"),
        ({"entitlements": ["47 ZN"]}, "entitlements", "entitlement code"),
        ({"entitlements": [""]}, "entitlements", "entitlement code"),
        ({"entitlements": ["4"]}, "entitlements", "entitlement code"),
        ({"channel": "phone"}, "channel", "visit or teleconsultation"),
    ],
)
def test_each_bad_input_names_its_field(changes: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(ReimbursementError) as caught:
        order(**changes)
    assert caught.value.field == field
    assert fragment in caught.value.message


@pytest.mark.parametrize("text", ["MCH1", "P.100", "P.100.XL", "P.102.MCH1", ""])
def test_a_bad_full_group_code_is_refused(text: str) -> None:
    with pytest.raises(ReimbursementError) as caught:
        GroupCode.parse(text)
    assert caught.value.field == "group"


def test_entitlements_may_be_empty_and_unknown_codes_are_kept() -> None:
    assert normalise_entitlements([]) == frozenset()
    # Only the rule set decides what a code is worth; an unknown one is kept, not guessed at.
    assert normalise_entitlements(["99xx"]) == frozenset({"99XX"})


# ----------------------------------------------------------------------------- ending / shortening


def test_shortening_moves_the_last_month_and_keeps_the_issued_one() -> None:
    shortened = end_order(order(start_month="2023-06", months=12), m("2023-12"))
    assert shortened.end_month == m("2023-12")
    assert shortened.last_month == m("2023-12")
    assert shortened.issued_last_month == m("2024-05")
    assert shortened.valid_months[-1] == m("2023-12")


def test_ending_on_the_issued_last_month_or_the_first_month_is_allowed() -> None:
    o = order(start_month="2023-06", months=12)
    assert end_order(o, m("2024-05")).last_month == m("2024-05")
    assert end_order(o, m("2023-06")).valid_months == (m("2023-06"),)


def test_an_order_cannot_be_extended_also_after_a_shortening() -> None:
    o = order(start_month="2023-06", months=12)
    with pytest.raises(ReimbursementError, match="not extended") as caught:
        end_order(o, m("2024-06"))
    assert caught.value.field == "end_month"
    shortened = end_order(o, m("2023-10"))
    with pytest.raises(ReimbursementError, match="not extended"):
        end_order(shortened, m("2023-11"))
    assert end_order(shortened, m("2023-08")).last_month == m("2023-08")


def test_an_order_cannot_end_before_it_starts() -> None:
    with pytest.raises(ReimbursementError, match="first month 2023-06") as caught:
        end_order(order(start_month="2023-06"), m("2023-05"))
    assert caught.value.field == "end_month"


def test_an_order_cannot_end_before_a_month_already_supplied() -> None:
    o = Order(
        code=ProductCode.P101,
        group=ProductGroup.PW,
        pieces_per_month=30,
        months=12,
        start_month=m("2023-06"),
        months_realized=frozenset({m("2023-06"), m("2023-07"), m("2023-08")}),
    )
    assert end_order(o, m("2023-08")).last_month == m("2023-08")
    with pytest.raises(ReimbursementError, match="2023-08, which has already been supplied") as caught:
        end_order(o, m("2023-07"))
    assert caught.value.field == "end_month"


def test_an_order_built_directly_checks_its_end_month() -> None:
    with pytest.raises(ReimbursementError) as caught:
        Order(ProductCode.P100, ProductGroup.PW, 30, 3, m("2023-06"), end_month=m("2023-09"))
    assert caught.value.field == "end_month"


# ----------------------------------------------------------------------------- nothing in the past


@pytest.mark.parametrize(
    ("today", "start_month"),
    [
        (dt.date(2023, 6, 30), "2023-06"),  # the current month, on its last day
        (dt.date(2023, 6, 1), "2023-07"),
        (dt.date(2023, 12, 31), "2023-12"),
        (dt.date(2023, 12, 31), "2024-01"),
    ],
)
def test_an_order_starts_with_the_current_month_or_later(today: dt.date, start_month: str) -> None:
    assert order(today=today, start_month=start_month).start_month == m(start_month)


@pytest.mark.parametrize(
    ("today", "start_month"),
    [
        (dt.date(2023, 7, 1), "2023-06"),  # the first day of the next month: June has passed
        (dt.date(2024, 1, 1), "2023-12"),  # across the year end
        (dt.date(2023, 6, 15), "2020-01"),
    ],
)
def test_an_order_for_a_month_that_has_passed_is_refused(today: dt.date, start_month: str) -> None:
    with pytest.raises(ReimbursementError) as caught:
        order(today=today, start_month=start_month)
    assert caught.value.field == "start_month"
    assert caught.value.message == (
        f"{start_month} has already passed (today is {today}): an order starts with the current month or later"
    )


def test_an_order_running_off_the_calendar_names_the_start_month() -> None:
    with pytest.raises(ReimbursementError) as caught:
        order(start_month="9999-06", months=12)
    assert caught.value.field == "start_month"


# ----------------------------------------------------------------------------- short form: a continuation


def original(**changes: Any) -> Order:
    return order(**{"start_month": "2023-06", "months": 6, **changes})  # June to November 2023


def short(**changes: Any) -> dict[str, Any]:
    return {"start_month": "2023-12", "months": 6, "short_form": True, **changes}


def test_a_short_form_order_may_start_the_month_after_the_original_ends() -> None:
    continued = order(**short(continues=original()))
    assert continued.start_month == m("2023-12")


def test_a_short_form_order_may_start_any_later_month() -> None:
    # The patient came back in February: December and January have passed and cannot be issued.
    assert order(**short(start_month="2024-02", continues=original(), today=dt.date(2024, 2, 5)))


def test_a_short_form_order_may_not_start_in_the_originals_last_month() -> None:
    with pytest.raises(ReimbursementError) as caught:
        order(**short(start_month="2023-11", continues=original()))
    assert caught.value.field == "start_month"
    assert "runs until 2023-11" in caught.value.message and "starts with 2023-12 or later" in caught.value.message


def test_a_shortened_original_ends_at_its_new_end() -> None:
    shortened = end_order(original(), m("2023-08"))
    assert order(**short(start_month="2023-09", continues=shortened)).start_month == m("2023-09")
    with pytest.raises(ReimbursementError) as caught:
        order(**short(start_month="2023-08", continues=shortened))
    assert caught.value.field == "start_month"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"code": "P.101"}, "code"),
        ({"group": "MCH2"}, "group"),
        ({"pieces_per_month": 59}, "pieces_per_month"),
        ({"pieces_per_month": 61}, "pieces_per_month"),
    ],
)
def test_a_short_form_order_continues_the_original_unchanged(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ReimbursementError) as caught:
        order(**short(continues=original(), **changes))
    assert caught.value.field == field
    assert "unchanged" in caught.value.message


def test_a_short_form_order_without_an_original_is_refused() -> None:
    with pytest.raises(ReimbursementError) as caught:
        order(**short())
    assert caught.value.field == "continues_order"
    assert "continuation of an original order" in caught.value.message


def test_only_a_short_form_order_names_an_original() -> None:
    with pytest.raises(ReimbursementError) as caught:
        order(**short(short_form=False, continues=original()))
    assert caught.value.field == "continues_order"


def test_the_continuation_check_alone_compares_the_two_orders() -> None:
    check_continuation(original(), original(start_month="2023-12"))
    with pytest.raises(ReimbursementError):
        check_continuation(original(), original(start_month="2023-07"))

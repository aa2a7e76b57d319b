"""The order (zlecenie na wyroby medyczne) as a value object, and the checks on its inputs."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from enum import StrEnum

from .errors import ReimbursementError
from .months import Month, month_span

MAX_ORDER_MONTHS = 12  # "Maksymalnie 12 miesięcy, może wypisać również na mniej"
# The source names codes such as 47ZN, 47DN, 47ZND, 47OR, 47IB, 47IW but no closed list, so any
# short code of digits and capitals is accepted; which ones change the money is rule-set data.
_ENTITLEMENT_CODE = re.compile(r"[0-9A-Z]{2,12}")


class ProductCode(StrEnum):
    """Kod środka: since 2023 it no longer sets the limit, it still tells the kind of condition."""

    P100 = "P.100"
    P101 = "P.101"


class ProductGroup(StrEnum):
    """Grupa produktowa (by absorbency, chłonność): the per-piece limit depends on it from 2023."""

    PW = "PW"
    MCH1 = "MCH1"
    PP = "PP"
    MCH2 = "MCH2"
    PM2 = "PM2"


class Channel(StrEnum):
    VISIT = "visit"  # pages 1-3 printed and signed
    TELECONSULTATION = "teleconsultation"  # teleporada: the patient gets only the number


@dataclass(frozen=True)
class GroupCode:
    """The full group code the limit table is keyed by, e.g. ``P.100.MCH1``."""

    code: ProductCode
    group: ProductGroup

    @classmethod
    def parse(cls, text: str, field: str = "group") -> GroupCode:
        code, _, group = text.strip().upper().rpartition(".")
        if not code:
            raise ReimbursementError(field, f"{text!r} is not a full group code such as P.100.MCH1")
        return cls(parse_code(code, field), parse_group(group, field))

    def __str__(self) -> str:
        return f"{self.code.value}.{self.group.value}"


@dataclass(frozen=True)
class Order:
    """An issued order with what realisations need to know of its state.

    ``end_month`` is set when the doctor ends or shortens the order (zakończenie / skrócenie okresu
    ważności): nothing after it is realisable anywhere, and what is left stays with the locking
    pharmacy; the patient changes pharmacy with the doctor's new order. ``months_realized`` holds
    every month already supplied, by any earlier realisation.
    """

    code: ProductCode
    group: ProductGroup
    pieces_per_month: int
    months: int
    start_month: Month
    entitlements: frozenset[str] = frozenset()
    channel: Channel = Channel.VISIT
    end_month: Month | None = None
    months_realized: frozenset[Month] = frozenset()

    def __post_init__(self) -> None:
        require_whole("pieces_per_month", self.pieces_per_month, minimum=1)
        require_whole("months", self.months, minimum=1, maximum=MAX_ORDER_MONTHS)
        if self.end_month is not None and not self.start_month <= self.end_month <= self.issued_last_month:
            raise ReimbursementError(
                "end_month", f"must lie between the order's first month {self.start_month} and {self.issued_last_month}"
            )

    @property
    def group_code(self) -> GroupCode:
        return GroupCode(self.code, self.group)

    @property
    def issued_last_month(self) -> Month:
        return self.start_month + (self.months - 1)

    @property
    def last_month(self) -> Month:
        """The last month it may be realised for, after any ending or shortening."""
        return self.end_month if self.end_month is not None else self.issued_last_month

    @property
    def valid_months(self) -> tuple[Month, ...]:
        return month_span(self.start_month, self.last_month - self.start_month + 1)


def new_order(
    *,
    code: str,
    group: str,
    pieces_per_month: int,
    months: int,
    start_month: str,
    entitlements: Iterable[str],
    channel: str,
    today: dt.date,
    short_form: bool = False,
    continues: Order | None = None,
) -> Order:
    """Build an order from the API's raw values; every bad one is reported under its own name.

    ``today`` is the issuing day: no order is issued for a month that has passed. A short-form
    order must name (``continues``) the original it continues; a full-form order names none.
    """
    order = Order(
        code=parse_code(code),
        group=parse_group(group),
        pieces_per_month=pieces_per_month,
        months=months,
        start_month=Month.parse(start_month, "start_month"),
        entitlements=normalise_entitlements(entitlements),
        channel=_parse_channel(channel),
    )
    try:
        order.issued_last_month  # noqa: B018 - only whether it exists on the calendar
    except ReimbursementError:
        raise ReimbursementError(
            "start_month", f"{order.start_month} + {order.months} months is off the calendar"
        ) from None
    check_not_passed(order.start_month, today)
    if short_form and continues is None:
        raise ReimbursementError(
            "continues_order",
            "a short-form order exists only as the continuation of an original order that has ended: name it",
        )
    if continues is not None:
        if not short_form:
            raise ReimbursementError(
                "continues_order", "only a short-form order (short_form: true) names an order it continues"
            )
        check_continuation(continues, order)
    return order


def check_not_passed(start_month: Month, today: dt.date) -> None:
    """An order is issued from the current month on: a month gone can no longer be supplied."""
    current = Month.of(today)
    if start_month < current:
        raise ReimbursementError(
            "start_month",
            f"{start_month} has already passed (today is {today}): an order starts with the current month or later",
        )


def check_continuation(original: Order, continuation: Order) -> None:
    """A short-form order continues an original that has ended, with nothing changed.

    "Zlecenie na skróconym wzorze może być wypisane, jeśli skończy się zlecenie pierwotne i dane nie
    uległy zmianie": the same code, product group and pieces a month, starting after the original's
    last month (as ended or shortened by the doctor). It may start any month after that, not only
    the next one: a patient who comes back late cannot be issued months that have passed.
    """
    unchanged = (
        ("code", original.code.value, continuation.code.value),
        ("group", original.group.value, continuation.group.value),
        ("pieces_per_month", original.pieces_per_month, continuation.pieces_per_month),
    )
    for field, before, now in unchanged:
        if before != now:
            raise ReimbursementError(
                field,
                f"a short-form order continues the original unchanged: the original has {field} {before}, not {now}",
            )
    if continuation.start_month <= original.last_month:
        raise ReimbursementError(
            "start_month",
            f"a short-form order starts after the original has ended: the original runs until {original.last_month}, "
            f"so the continuation starts with {original.last_month + 1} or later, not {continuation.start_month}",
        )


def end_order(order: Order, end_month: Month) -> Order:
    """The doctor ends or shortens the order: it may only get shorter, never lose supplied months."""
    if end_month > order.last_month:
        raise ReimbursementError(
            "end_month", f"an order can be ended or shortened, not extended: it is valid until {order.last_month}"
        )
    if end_month < order.start_month:
        raise ReimbursementError("end_month", f"must not be before the order's first month {order.start_month}")
    if order.months_realized and end_month < max(order.months_realized):
        # Goods for those months were handed over and settled; cutting them off would orphan that settlement.
        raise ReimbursementError(
            "end_month", f"must not be before {max(order.months_realized)}, which has already been supplied"
        )
    return replace(order, end_month=end_month)


def parse_code(text: str, field: str = "code") -> ProductCode:
    try:
        return ProductCode(text.strip().upper())
    except ValueError:
        raise ReimbursementError(field, f"{text!r} is not an order code: use P.100 or P.101") from None


def parse_group(text: str, field: str = "group") -> ProductGroup:
    try:
        return ProductGroup(text.strip().upper())
    except ValueError:
        names = ", ".join(g.value for g in ProductGroup)
        raise ReimbursementError(field, f"{text!r} is not a product group: use one of {names}") from None


def _parse_channel(text: str) -> Channel:
    try:
        return Channel(text.strip().lower())
    except ValueError:
        raise ReimbursementError("channel", f"{text!r} is not a channel: use visit or teleconsultation") from None


def normalise_entitlements(codes: Iterable[str], field: str = "entitlements") -> frozenset[str]:
    """Upper-case, trimmed entitlement codes (uprawnienia dodatkowe); a duplicate is harmless."""
    if isinstance(codes, str):
        # A bare string would be read letter by letter: "47ZN" as {"4", "7", "Z", "N"}.
        raise ReimbursementError(field, "must be a list of codes, not a single string")
    return frozenset(normalise_entitlement(raw, field) for raw in codes)


def normalise_entitlement(raw: str, field: str = "entitlements") -> str:
    code = raw.strip().upper()
    if not _ENTITLEMENT_CODE.fullmatch(code):
        raise ReimbursementError(field, f"{raw!r} is not an entitlement code such as 47ZN or 47OR")
    return code


def require_whole(name: str, value: int, *, minimum: int, maximum: int | None = None) -> None:
    # bool is an int in Python; True pieces would silently mean 1.
    if type(value) is not int:
        raise ReimbursementError(name, "must be a whole number")
    if value < minimum:
        raise ReimbursementError(name, f"must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ReimbursementError(name, f"must be at most {maximum}, not {value}")

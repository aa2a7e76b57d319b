"""Whether a realisation (realizacja zlecenia) may supply the months and pieces asked for.

The source's rules, in the order they are checked: 1 to 6 months at once; consecutive months; the
realisation date inside the months supplied and none of them already passed, which together mean
the months start with the month of the realisation date (and so at most one realisation a month);
all inside the order's validity; none supplied before; pieces at most pieces per month x months.

The realisation date is today's (the server's date). An earlier one exists only as the later
registration of a paper realisation made while eZWM was down ("odnotować zlecenie w systemie, kiedy
zacznie działać"): it says it is offline and carries the patient's signed statement of the right to
benefits, which the source requires for any back-dated realisation ("wsteczna realizacja"). Its
months still start with the month of its paper date, so it never covers a month passed on that date.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from .errors import RealisationConflict, ReimbursementError
from .months import Month
from .orders import Order, require_whole
from .rules import RULE_SETS, RuleSet, rule_set_on

MIN_MONTHS_PER_REALISATION = 1


@dataclass(frozen=True)
class RealisationRequest:
    """A realisation that passed every check; ``months`` are in calendar order."""

    realized_on: dt.date
    months: tuple[Month, ...]
    pieces: int


def realisation_date(requested: dt.date | None, *, today: dt.date, offline: bool, patient_statement: bool) -> dt.date:
    """The date a realisation is recorded with: today, or an offline registration's earlier paper date."""
    if requested is None or requested == today:
        return today
    if requested > today:
        raise ReimbursementError("realized_on", f"{requested} is in the future (today is {today})")
    if not offline:
        raise ReimbursementError(
            "realized_on",
            f"a realisation is dated today ({today}), not {requested}: an earlier date is only the paper date of an "
            "offline realisation registered later (offline: true, with the patient's signed statement)",
        )
    if not patient_statement:
        raise ReimbursementError(
            "patient_statement",
            f"an offline realisation dated {requested}, before today ({today}), needs the patient's signed statement "
            "of the right to benefits (patient_statement: true)",
        )
    return requested


def check_realisation(
    order: Order,
    *,
    realized_on: dt.date,
    months: Iterable[Month],
    pieces: int,
    today: dt.date | None = None,
    rule_sets: Sequence[RuleSet] = RULE_SETS,
) -> RealisationRequest:
    """Check a realisation against the order's state; the first rule broken is raised.

    ``today`` (the service's date in Europe/Warsaw) refuses a realisation dated in the future;
    whether an earlier ``realized_on`` may be recorded at all is ``realisation_date``'s decision.
    """
    rules = rule_set_on(realized_on, rule_sets)
    _check_realisation_date(order, realized_on, today)
    supplied = _consecutive_months(months, rules.max_months_per_realisation)
    _check_first_month(supplied, realized_on)
    _check_inside_validity(order, supplied)
    _check_not_supplied_before(order, supplied)
    _check_pieces(order, pieces, len(supplied))
    return RealisationRequest(realized_on=realized_on, months=supplied, pieces=pieces)


def record_realisation(order: Order, realisation: RealisationRequest) -> Order:
    """The order after the realisation: its months count as supplied from now on."""
    return replace(order, months_realized=order.months_realized | frozenset(realisation.months))


def _check_realisation_date(order: Order, realized_on: dt.date, today: dt.date | None) -> None:
    if today is not None and realized_on > today:
        raise ReimbursementError("realized_on", f"{realized_on} is in the future (today is {today})")
    month = Month.of(realized_on)
    if month < order.start_month:
        raise ReimbursementError(
            "realized_on", f"the order is valid from {order.start_month}: it cannot be realised on {realized_on}"
        )
    if month > order.last_month:
        raise ReimbursementError(
            "realized_on", f"the order is valid until {_validity_end(order)}: it cannot be realised on {realized_on}"
        )


def _consecutive_months(months: Iterable[Month], max_months: int) -> tuple[Month, ...]:
    supplied = tuple(sorted(months))
    if not MIN_MONTHS_PER_REALISATION <= len(supplied) <= max_months:
        raise ReimbursementError(
            "months",
            f"one realisation covers {MIN_MONTHS_PER_REALISATION} to {max_months} months, not {len(supplied)}",
        )
    for earlier, later in itertools.pairwise(supplied):
        if later == earlier:
            raise ReimbursementError("months", f"{later} is listed twice")
        if later - earlier != 1:
            raise ReimbursementError(
                "months", f"the months must be consecutive: {earlier + 1} is missing between {earlier} and {later}"
            )
    return supplied


def _check_first_month(supplied: tuple[Month, ...], realized_on: dt.date) -> None:
    current = Month.of(realized_on)
    first = supplied[0]
    if first < current:
        raise ReimbursementError(
            "months", f"{first} has already passed: a realisation on {realized_on} cannot supply it"
        )
    if first > current:
        raise ReimbursementError(
            "months", f"the months must start with the month of the realisation date ({current}), not {first}"
        )


def _check_inside_validity(order: Order, supplied: tuple[Month, ...]) -> None:
    # The first month is the realisation date's, already known to be inside; only the end can overflow.
    last = supplied[-1]
    if last > order.last_month:
        raise ReimbursementError(
            "months", f"{last} is after the order's validity, which ends with {_validity_end(order)}"
        )


def _check_not_supplied_before(order: Order, supplied: tuple[Month, ...]) -> None:
    already = sorted(m for m in supplied if m in order.months_realized)
    if already:
        listed = ", ".join(str(m) for m in already)
        raise RealisationConflict("months", f"already supplied by an earlier realisation of this order: {listed}")


def _check_pieces(order: Order, pieces: int, month_count: int) -> None:
    # Limit sztukowy: the doctor's monthly maximum grows in proportion to the months supplied.
    require_whole("pieces", pieces, minimum=1)
    limit = order.pieces_per_month * month_count
    if pieces > limit:
        raise ReimbursementError(
            "pieces",
            f"at most {limit} pieces for {month_count} month(s) at {order.pieces_per_month} a month, not {pieces}",
        )


def _validity_end(order: Order) -> str:
    if order.end_month is not None and order.end_month < order.issued_last_month:
        return f"{order.last_month} (ended or shortened by the doctor; issued until {order.issued_last_month})"
    return str(order.last_month)

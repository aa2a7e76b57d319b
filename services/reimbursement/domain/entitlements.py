"""Entitlements (uprawnienia dodatkowe) as they stand on the day the pharmacy accepts the order.

The pharmacy must check the patient's age and the validity of additional entitlements and update
them to the facts of that day ("na dzień przyjęcia do realizacji"); it pays for a wrong limit. The
source names no age threshold, only that age matters "especially for children with a significant
disability", so ``ENTITLEMENT_AGE_LIMITS`` is empty data an operator fills when the law says more.
"""

from __future__ import annotations

import calendar
import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import ReimbursementError
from .orders import normalise_entitlement


@dataclass(frozen=True)
class EntitlementGrant:
    """One entitlement with the validity of the document behind it; a None end means no end date."""

    code: str
    valid_from: dt.date | None = None
    valid_until: dt.date | None = None  # the last day it holds, inclusive


@dataclass(frozen=True)
class AgeLimit:
    """An entitlement that holds only while the patient is younger than ``below_age`` full years."""

    code: str
    below_age: int


@dataclass(frozen=True)
class DroppedEntitlement:
    code: str
    reason: str


@dataclass(frozen=True)
class EntitlementCheck:
    age: int  # full years on the realisation date, shown to the pharmacist who must check it
    in_force: frozenset[str]
    dropped: tuple[DroppedEntitlement, ...]


ENTITLEMENT_AGE_LIMITS: tuple[AgeLimit, ...] = ()


def age_on(birth_date: dt.date, day: dt.date) -> int:
    """Full years on ``day``; one is a year older from the start of the birthday (art. 112 k.c.).

    Someone born on 29 February has the birthday on 28 February in a common year: the civil code
    ends a period lacking its day on the last day of that month.
    """
    if day < birth_date:
        raise ReimbursementError("birth_date", f"{birth_date} is after {day}")
    years = day.year - birth_date.year
    return years if day >= _anniversary(birth_date, day.year) else years - 1


def _anniversary(birth_date: dt.date, year: int) -> dt.date:
    last_day = calendar.monthrange(year, birth_date.month)[1]
    return dt.date(year, birth_date.month, min(birth_date.day, last_day))


def entitlements_in_force(
    birth_date: dt.date,
    grants: Iterable[EntitlementGrant],
    on: dt.date,
    age_limits: Iterable[AgeLimit] = ENTITLEMENT_AGE_LIMITS,
) -> EntitlementCheck:
    """The entitlements that hold on ``on``; each one dropped is listed with the reason."""
    age = age_on(birth_date, on)
    limits = {normalise_entitlement(limit.code): limit.below_age for limit in age_limits}
    in_force: set[str] = set()
    dropped: list[DroppedEntitlement] = []
    for grant in grants:
        code = _grant_code(grant)
        reason = _why_not_in_force(grant, code, on, age, limits)
        if reason is None:
            in_force.add(code)
        else:
            dropped.append(DroppedEntitlement(code, reason))
    # A code both dropped (an old document) and in force (a renewed one) holds: only one grant must.
    return EntitlementCheck(
        age=age,
        in_force=frozenset(in_force),
        dropped=tuple(d for d in dropped if d.code not in in_force),
    )


def _grant_code(grant: EntitlementGrant) -> str:
    code = normalise_entitlement(grant.code)
    if grant.valid_from is not None and grant.valid_until is not None and grant.valid_until < grant.valid_from:
        raise ReimbursementError("entitlements", f"{code} ends on {grant.valid_until}, before it starts")
    return code


def _why_not_in_force(
    grant: EntitlementGrant, code: str, on: dt.date, age: int, below_age: dict[str, int]
) -> str | None:
    if grant.valid_from is not None and on < grant.valid_from:
        return f"{code} is valid only from {grant.valid_from}"
    if grant.valid_until is not None and on > grant.valid_until:
        return f"{code} expired on {grant.valid_until}"
    if code in below_age and age >= below_age[code]:
        return f"{code} holds only below the age of {below_age[code]}; the patient is {age}"
    return None

"""The audit's rules, without I/O: who sees which rows, how a row is shown, what retention keeps."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from shared.audit import AccessRecorded
from shared.auth import Principal, Role
from shared.logging import mask_pesel


@dataclass(frozen=True)
class Scope:
    """Whose rows a reader may list: one facility's, or (``tenant`` None) everybody's."""

    tenant: str | None


def events_scope(who: Principal) -> Scope:
    """facility_admin: rows of its facility; operator: all (the route admits no one else)."""
    if who.role == Role.operator:
        return Scope(tenant=None)
    return Scope(tenant=who.require_facility())


def my_scope(who: Principal) -> Scope:
    """A patient's token from a facility's portal is that facility's, like everything else it reads (a
    token of another facility with the same PESEL must not learn of this one); a token bound to no
    facility (a national portal) sees every facility's accesses to the patient's data."""
    return Scope(tenant=who.facility_id)


def masked(pesel: str | None) -> str | None:
    """A PESEL as the audit shows it: the birth year's two digits, the rest hidden."""
    return None if pesel is None else mask_pesel(pesel)


def rows_of(event_id: uuid.UUID, payload: AccessRecorded) -> list[dict[str, Any]]:
    """One row per entry, numbered so that a redelivery of the same event collides on (event, position)."""
    return [
        {
            "event_id": event_id,
            "position": position,
            "at": payload.at,
            "actor": payload.actor,
            "role": payload.role,
            "tenant": payload.tenant,
            "action": payload.action,
            "resource": entry.resource,
            "patient_pesel": entry.patient_pesel,
            "request_id": payload.request_id,
        }
        for position, entry in enumerate(payload.entries)
    ]


def retention_cutoff(now: dt.datetime, years: int, tz: ZoneInfo) -> dt.datetime:
    """Rows from before this instant are past retention.

    As for medical documentation (ustawa o prawach pacjenta, art. 29 ust. 1: 20 years counted from the
    end of the calendar year of the entry): a row of year Y is kept through 31 December of Y + ``years``
    (the suite's timezone), so the cutoff is 1 January of (this year - ``years``), local midnight.
    """
    if years < 1:
        raise ValueError("retention is at least one year")
    return dt.datetime(now.astimezone(tz).year - years, 1, 1, tzinfo=tz)

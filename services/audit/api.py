"""Audit HTTP API: the accesses of a facility (its administrator) or all (the operator), and a
patient's own ("who saw my data"). Read-only: no route updates or deletes a row."""

from __future__ import annotations

import datetime as dt
from typing import Annotated
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query

from services.audit import domain, schemas, service
from services.audit.models import AccessEvent
from shared.app import ContextDep
from shared.auth import CurrentPrincipal, Role, allow
from shared.identifiers import Pesel
from shared.problems import PROBLEM_RESPONSES, Unprocessable

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], responses=PROBLEM_RESPONSES)

Limit = Annotated[int, Query(ge=1, le=500, description="rows per page")]
Before = Annotated[
    int | None, Query(ge=1, description="the `id` of the last row of the previous page: the rows older than it")
]


def _local_day_start(day: dt.date, tz: ZoneInfo) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=tz)


def _event_view(row: AccessEvent) -> schemas.AuditEventOut:
    return schemas.AuditEventOut(
        id=row.id,
        at=row.at,
        actor=row.actor,
        role=row.role,
        tenant=row.tenant,
        action=row.action,
        resource=row.resource,
        patient=domain.masked(row.patient_pesel),
        request_id=row.request_id,
    )


@router.get(
    "/events",
    response_model=list[schemas.AuditEventOut],
    summary="Who read or changed patient data (facility_admin: its facility; operator: all), newest first",
    **allow(Role.facility_admin, Role.operator),
)
async def list_events(
    ctx: ContextDep,
    who: CurrentPrincipal,
    patient_pesel: Annotated[Pesel | None, Query(description="only accesses to this patient's data")] = None,
    actor: Annotated[str | None, Query(min_length=1, max_length=200, description="a token's `sub`")] = None,
    action: Annotated[
        str | None, Query(max_length=80, pattern=r"^[a-z][a-z0-9_.]*$", examples=["scheduling.booking.create"])
    ] = None,
    date_from: Annotated[dt.date | None, Query(description="from this day (Europe/Warsaw)")] = None,
    date_to: Annotated[dt.date | None, Query(description="to this day, inclusive (Europe/Warsaw)")] = None,
    limit: Limit = 100,
    before: Before = None,
) -> list[schemas.AuditEventOut]:
    if date_from and date_to and date_to < date_from:
        raise Unprocessable.field("query.date_to", "must not be before date_from")
    scope = domain.events_scope(who)
    tz = ZoneInfo(ctx.settings.timezone)
    async with ctx.sessions() as session:
        rows = await service.list_events(
            session,
            tenant=scope.tenant,
            patient_pesel=patient_pesel,
            actor=actor,
            action=action,
            at_from=_local_day_start(date_from, tz) if date_from else None,
            at_to=_local_day_start(date_to + dt.timedelta(days=1), tz) if date_to else None,
            before=before,
            limit=limit,
        )
    return [_event_view(r) for r in rows]


@router.get(
    "/me",
    response_model=list[schemas.MyAccessOut],
    summary="Who read or changed my data (a patient), newest first",
    description="A token of a facility's portal sees the accesses in that facility; a token bound to no "
    "facility, every access to the patient's data.",
    **allow(Role.patient),
)
async def my_accesses(
    ctx: ContextDep, who: CurrentPrincipal, limit: Limit = 100, before: Before = None
) -> list[schemas.MyAccessOut]:
    async with ctx.sessions() as session:
        rows = await service.list_events(
            session, tenant=domain.my_scope(who).tenant, patient_pesel=who.pesel, before=before, limit=limit
        )
    return [
        schemas.MyAccessOut(id=r.id, at=r.at, actor_role=r.role, tenant=r.tenant, action=r.action, resource=r.resource)
        for r in rows
    ]

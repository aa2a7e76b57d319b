"""Prescription-ordering HTTP API: parse, authorise, call a use case, shape the answer."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query

from services.prescriptions import domain, schemas, service
from services.prescriptions.models import REQUEST_STATUSES
from services.prescriptions.service import RequestDraft, Requests
from services.scheduling.client import SchedulingClient, SchedulingClientError
from shared.app import ContextDep
from shared.auth import CurrentPrincipal, Principal, Role, allow
from shared.identifiers import Npwz, Pesel
from shared.problems import PROBLEM_RESPONSES, Forbidden, NotFound, ProblemError, Unprocessable

router = APIRouter(prefix="/api/v1/prescriptions", tags=["prescriptions"], responses=PROBLEM_RESPONSES)

ADMIN = (Role.facility_admin,)
CLINIC = (Role.facility_admin, Role.registrar, Role.practitioner, Role.partner)
ORDERING = (Role.facility_admin, Role.registrar, Role.partner, Role.patient)
ACCOUNT_EDITORS = (Role.facility_admin, Role.registrar, Role.practitioner)
KEY = Annotated[str, Path(pattern=r"^[0-9]{44}$", description="the 44-digit prescription key")]


def _now_and_today(ctx: ContextDep) -> tuple[dt.datetime, dt.date]:
    return ctx.clock.now(), ctx.today()


def _own_patient(who: Principal, pesel: str) -> None:
    """A patient sees and orders only for themself; another PESEL answers 404 (nothing revealed)."""
    if who.role == Role.patient and who.pesel != pesel:
        raise NotFound("not found")


# ----------------------------------------------------------------------------- settings


@router.put(
    "/settings",
    response_model=schemas.SettingsOut,
    summary="Switch prescription ordering on (demo once, or full) or off, with the drug scope and notice e-mail",
    description=(
        "The activation (demo) or purchase (full) date is the server's date, today: `activated_on` may be "
        "left out, and any other date is refused. Demo mode can be used once per facility; after that, asking "
        "for it answers 422 naming `mode`, and the service can only be bought (full). Asking for the mode that "
        "is running changes the other settings and keeps its period."
    ),
    **allow(*ADMIN),
)
async def put_settings(body: schemas.SettingsIn, ctx: ContextDep, who: CurrentPrincipal) -> schemas.SettingsOut:
    async with ctx.uow() as uow:
        return await service.put_settings(uow, who.require_facility(), body, _now_and_today(ctx)[1])


@router.get("/settings", response_model=schemas.SettingsOut, **allow(*CLINIC))
async def get_settings(ctx: ContextDep, who: CurrentPrincipal) -> schemas.SettingsOut:
    async with ctx.sessions() as session:
        return await service.get_settings(session, who.require_facility(), _now_and_today(ctx)[1])


@router.put("/practitioners/{npwz}/ordering", response_model=schemas.OrderingOut, **allow(*ADMIN))
async def set_ordering(
    npwz: Npwz, body: schemas.OrderingIn, ctx: ContextDep, who: CurrentPrincipal
) -> schemas.OrderingOut:
    async with ctx.uow() as uow:
        return await service.set_ordering(uow, who.require_facility(), npwz, body.enabled)


# ----------------------------------------------------------------------------- the patient's account


@router.post(
    "/patients/{pesel}/account-drugs",
    status_code=201,
    response_model=list[schemas.AccountDrugOut],
    **allow(*ACCOUNT_EDITORS),
)
async def add_account_drug(
    pesel: Pesel, body: schemas.AccountDrugIn, ctx: ContextDep, who: CurrentPrincipal
) -> list[schemas.AccountDrugOut]:
    """Record a drug previously prescribed to the patient (e.g. before this system was used)."""
    facility = who.require_facility()
    async with ctx.uow() as uow:
        await service.add_account_drugs(
            uow.session, facility, pesel, [body.drug], _now_and_today(ctx)[1], service.RECORDED
        )
        await uow.commit()
    async with ctx.sessions() as session:
        return [schemas.AccountDrugOut.model_validate(d) for d in await service.account_drugs(session, facility, pesel)]


@router.get(
    "/patients/{pesel}/account-drugs", response_model=list[schemas.AccountDrugOut], **allow(*CLINIC, Role.patient)
)
async def list_account_drugs(pesel: Pesel, ctx: ContextDep, who: CurrentPrincipal) -> list[schemas.AccountDrugOut]:
    _own_patient(who, pesel)
    async with ctx.sessions() as session:
        rows = await service.account_drugs(session, who.require_facility(), pesel)
    return [schemas.AccountDrugOut.model_validate(d) for d in rows]


# ----------------------------------------------------------------------------- requests


@router.post(
    "/requests",
    status_code=201,
    response_model=schemas.RequestOut,
    summary="Order repeat prescriptions: routed to a prescription slot",
    description=(
        "A `portal` request is taken only for a practitioner with ordering enabled (422 naming "
        "`practitioner_npwz` otherwise, never rerouted), only while the service is active, and, under the "
        "`patient_account` drug scope, only for drugs on the patient's account (422 naming each refused item). "
        "It books the practitioner's earliest prescription slot, else the duty doctor's. An `ikp` request is "
        "taken as P1 delivers it (the drug scope is the portal's) and goes to the duty doctor when its own "
        "doctor cannot take it. Every refusal, and every reroute, sends the facility a problem notice."
    ),
    responses={
        422: {
            **PROBLEM_RESPONSES[422],
            "description": "bad input, or refused: practitioner not offered, service inactive, drug outside scope",
        },
        503: {"description": "the scheduling service is unavailable; nothing was stored"},
    },
    **allow(*ORDERING),
)
async def create_request(body: schemas.RequestIn, ctx: ContextDep, who: CurrentPrincipal) -> schemas.RequestOut:
    if who.role == Role.patient:
        if body.patient_pesel != who.pesel:
            raise Forbidden("a patient may order only for themself")
        if body.source is not domain.RequestSource.PORTAL:
            raise Unprocessable.field("body.source", "a patient orders through the portal (source 'portal')")
    global_comment, comments = domain.fold_comments([i.comment for i in body.items])
    draft = RequestDraft(
        facility_id=who.require_facility(),
        patient_pesel=body.patient_pesel,
        npwz=body.practitioner_npwz,
        location_id=body.location_id,
        source=body.source,
        items=tuple(domain.RequestItem(i.drug, i.packages, c) for i, c in zip(body.items, comments, strict=True)),
        comment=global_comment,
    )
    requests: Requests = ctx.extras["requests"]
    now, today = _now_and_today(ctx)
    row = await requests.accept(ctx.sessions, ctx.uow, draft, now, today)
    assert row is not None  # only sealing IKP items can lose a race and answer None
    return service.request_out(row)


@router.get("/requests", response_model=list[schemas.RequestOut], **allow(*CLINIC))
async def list_requests(
    ctx: ContextDep,
    who: CurrentPrincipal,
    status: Annotated[str | None, Query(pattern="^(" + "|".join(REQUEST_STATUSES) + ")$")] = None,
    patient_pesel: Pesel | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[schemas.RequestOut]:
    async with ctx.sessions() as session:
        rows = await service.list_requests(
            session, who.require_facility(), status=status, patient_pesel=patient_pesel, limit=limit
        )
    return [service.request_out(r) for r in rows]


@router.get("/requests/{request_id}", response_model=schemas.RequestOut, **allow(*CLINIC, Role.patient))
async def get_request(request_id: uuid.UUID, ctx: ContextDep, who: CurrentPrincipal) -> schemas.RequestOut:
    async with ctx.sessions() as session:
        row = await service.get_request(session, who.require_facility(), request_id)
    if who.role == Role.patient and who.pesel != row.patient_pesel:
        # Word for word the answer for an unknown id: another patient's request must not show it exists.
        raise NotFound(f"prescription request {request_id} not found")
    return service.request_out(row)


# ----------------------------------------------------------------------------- issuing


@router.post(
    "/requests/{request_id}/issue",
    status_code=201,
    response_model=schemas.IssueOut,
    responses={409: {"description": "every item of the request was refused"}},
    **allow(Role.practitioner),
)
async def issue(
    request_id: uuid.UUID, body: schemas.IssueIn, ctx: ContextDep, who: CurrentPrincipal
) -> schemas.IssueOut:
    if who.npwz is None:
        raise Forbidden("this token names no NPWZ: a practitioner issues under their own")
    if body.issuer_npwz is not None and body.issuer_npwz != who.npwz:
        raise Forbidden("a practitioner issues under their own NPWZ only")
    scheduling: SchedulingClient = ctx.extras["scheduling"]
    try:
        registered = await scheduling.practitioner_by_npwz(who.require_facility(), who.npwz)
    except SchedulingClientError as exc:
        raise ProblemError(
            "the scheduling service cannot confirm the issuer's record; try again",
            status=503,
            code="scheduling-unavailable",
        ) from exc
    async with ctx.uow() as uow:
        return await service.issue(uow, who.require_facility(), request_id, body, _now_and_today(ctx)[1], registered)


@router.get("/prescriptions/{key}", response_model=schemas.PrescriptionOut, **allow(*CLINIC))
async def get_prescription(key: KEY, ctx: ContextDep, who: CurrentPrincipal) -> schemas.PrescriptionOut:
    async with ctx.sessions() as session:
        return await service.get_prescription(session, who.require_facility(), key)


@router.post(
    "/prescriptions/{key}/cancel",
    response_model=schemas.PrescriptionOut,
    responses={409: {"description": "already realised (partly)"}},
    **allow(Role.practitioner),
)
async def cancel_prescription(key: KEY, ctx: ContextDep, who: CurrentPrincipal) -> schemas.PrescriptionOut:
    async with ctx.uow() as uow:
        return await service.cancel_prescription(uow, who.require_facility(), key, who.npwz)

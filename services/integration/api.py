"""Integration HTTP API (IKP part): parse, authorise, call a use case, shape the answer."""

from __future__ import annotations

from typing import Annotated

import sqlalchemy as sa
from fastapi import APIRouter, Query, Request, Response

from services.integration import cer_service, schemas
from services.integration.cer_service import Reconciler
from services.integration.models import CerOutgoing, CerSettings, OutgoingMixin, P1Outgoing
from services.integration.sealed import SecretBox
from services.integration.service import Ikp
from shared.app import ContextDep
from shared.auth import CurrentPrincipal, Role, allow
from shared.db import utcnow
from shared.periodic import Periodic
from shared.problems import PROBLEM_RESPONSES, NotFound

router = APIRouter(prefix="/api/v1/integration", tags=["integration"], responses=PROBLEM_RESPONSES)

ADMIN = (Role.facility_admin,)
CLINIC = (Role.facility_admin, Role.registrar, Role.practitioner, Role.partner)


def _secrets(ctx: ContextDep) -> SecretBox:
    box: SecretBox = ctx.extras["secrets"]
    return box


def _ikp(ctx: ContextDep) -> Ikp:
    ikp: Ikp = ctx.extras["ikp"]
    return ikp


@router.post(
    "/ikp/enable",
    response_model=schemas.IkpStatusOut,
    responses={503: {"description": "P1 or scheduling unreachable: nothing changed"}},
    **allow(*ADMIN),
)
async def enable_ikp(ctx: ContextDep, who: CurrentPrincipal) -> schemas.IkpStatusOut:
    """Asks P1 to enable IKP requests for the facility: ``pending`` until P1 confirms (within an hour)."""
    today = ctx.today()
    async with ctx.uow() as uow:
        return await _ikp(ctx).enable(uow, who.require_facility(), today)


@router.post("/ikp/disable", response_model=schemas.IkpStatusOut, **allow(*ADMIN))
async def disable_ikp(ctx: ContextDep, who: CurrentPrincipal) -> schemas.IkpStatusOut:
    async with ctx.uow() as uow:
        return await _ikp(ctx).disable(uow, who.require_facility())


@router.get("/ikp/status", response_model=schemas.IkpStatusOut, **allow(*CLINIC))
async def ikp_status(ctx: ContextDep, who: CurrentPrincipal) -> schemas.IkpStatusOut:
    return await _ikp(ctx).refresh(ctx.uow, who.require_facility())


@router.get("/ikp/poller/candidates", response_model=schemas.PollerCandidatesOut, **allow(*ADMIN))
async def poller_candidates(ctx: ContextDep, who: CurrentPrincipal) -> schemas.PollerCandidatesOut:
    """Who may poll P1: an NPWZ and a schedule at a location with a department code."""
    return await _ikp(ctx).candidates(who.require_facility())


@router.put("/ikp/poller", response_model=schemas.IkpStatusOut, **allow(*ADMIN))
async def designate_poller(body: schemas.PollerIn, ctx: ContextDep, who: CurrentPrincipal) -> schemas.IkpStatusOut:
    async with ctx.uow() as uow:
        return await _ikp(ctx).designate_poller(uow, who.require_facility(), body.practitioner_npwz)


StatusFilter = Annotated[str | None, Query(pattern="^(pending|sent|rejected)$")]
Limit = Annotated[int, Query(ge=1, le=500)]


async def _queued(
    ctx: ContextDep, model: type[OutgoingMixin], facility_id: str, status: str | None, limit: int
) -> list[OutgoingMixin]:
    query = sa.select(model).where(model.facility_id == facility_id)
    if status:
        query = query.where(model.status == status)
    async with ctx.sessions() as session:
        return list(await session.scalars(query.order_by(model.id.desc()).limit(limit)))


@router.get("/p1/outgoing", response_model=list[schemas.OutgoingOut], **allow(*ADMIN))
async def p1_outgoing(
    ctx: ContextDep, who: CurrentPrincipal, status: StatusFilter = None, limit: Limit = 100
) -> list[OutgoingMixin]:
    """What this facility's changes to P1 are doing: pending while P1 is down, rejected needs a person."""
    return await _queued(ctx, P1Outgoing, who.require_facility(), status, limit)


@router.get("/cer/outgoing", response_model=list[schemas.OutgoingOut], **allow(*ADMIN))
async def cer_outgoing(
    ctx: ContextDep, who: CurrentPrincipal, status: StatusFilter = None, limit: Limit = 100
) -> list[OutgoingMixin]:
    """This facility's changes for CeR, newest first: pending while CeR is unreachable, sent in order."""
    return await _queued(ctx, CerOutgoing, who.require_facility(), status, limit)


# ----------------------------------------------------------------------------- CeR


@router.put("/cer/settings", response_model=schemas.CerSettingsOut, **allow(*ADMIN))
async def put_cer_settings(
    body: schemas.CerSettingsIn, ctx: ContextDep, who: CurrentPrincipal
) -> schemas.CerSettingsOut:
    """The endpoint, e-mail and shared secret of CeR's notifications (the secret is never returned)."""
    async with ctx.uow() as uow:
        row = await uow.session.get(CerSettings, who.require_facility(), with_for_update=True)
        if row is None:
            row = CerSettings(facility_id=who.require_facility())
            uow.session.add(row)
        row.endpoint, row.email = str(body.endpoint), str(body.email)
        secret = body.secret.get_secret_value()
        row.secret = _secrets(ctx).seal(secret)
        row.updated_at = utcnow()
        cer_service.queue_endpoint(uow.session, row, secret)
        await uow.commit()
    forwarding: Periodic = ctx.extras["cer_forwarding"]
    forwarding.wake.set()
    return schemas.CerSettingsOut(endpoint=row.endpoint, email=row.email, secret_set=True)


@router.get("/cer/settings", response_model=schemas.CerSettingsOut, **allow(*ADMIN))
async def get_cer_settings(ctx: ContextDep, who: CurrentPrincipal) -> schemas.CerSettingsOut:
    async with ctx.sessions() as session:
        row = await session.get(CerSettings, who.require_facility())
    if row is None:
        raise NotFound("CeR is not configured for this facility")
    return schemas.CerSettingsOut(endpoint=row.endpoint, email=row.email, secret_set=bool(row.secret))


@router.post(
    "/cer/reconcile",
    response_model=schemas.ReconcileOut,
    responses={503: {"description": "CeR or scheduling unreachable: nothing compared"}},
    **allow(*ADMIN),
)
async def reconcile_cer(ctx: ContextDep, who: CurrentPrincipal) -> schemas.ReconcileOut:
    """Compare CeR's bookings (from today on) with the local ones: book here what CeR confirmed and
    the facility lacks, report what CeR lacks; new differences are e-mailed to the CeR address."""
    facility = who.require_facility()
    async with ctx.sessions() as session:
        if await session.get(CerSettings, facility) is None:
            raise NotFound("CeR is not configured for this facility")
    reconciler: Reconciler = ctx.extras["reconciler"]
    return await reconciler.reconcile(facility)


@router.get("/cer/compliance", response_model=schemas.ComplianceOut, **allow(*ADMIN, Role.registrar))
async def cer_compliance(ctx: ContextDep, who: CurrentPrincipal) -> schemas.ComplianceOut:
    """Per specialty of the dated CeR table: its own dates (and whether they come from a draft),
    whether the facility declared an NFZ contract in it, schedules published or not, and the
    payment dates at risk from today. Without a contract a specialty is not applicable; with one,
    nothing published is at risk before its dates and breached after them."""
    today = ctx.today()
    async with ctx.sessions() as session:
        return await cer_service.compliance(session, who.require_facility(), today)


# ----------------------------------------------------------------------------- the dated CeR table


@router.get(
    "/cer/specialties", response_model=list[schemas.CoverageOut], **allow(Role.operator, *ADMIN, Role.registrar)
)
async def cer_specialties(ctx: ContextDep) -> list[schemas.CoverageOut]:
    """The dated table of what CeR covers: each specialty, the day CeR covers it from, the source
    and whether that source is a draft; the same for every facility."""
    async with ctx.sessions() as session:
        return await cer_service.coverage_view(session)


@router.put("/cer/specialties", response_model=list[schemas.CoverageOut], **allow(Role.operator))
async def correct_cer_specialties(
    body: schemas.CoverageCorrections, ctx: ContextDep, who: CurrentPrincipal
) -> list[schemas.CoverageOut]:
    """An operator corrects or adds entries (``[{specialty, covered_from, source, draft}]``); entries
    not named stay as they are. Each change is kept in the history (who, when, old and new values)
    and reaches the scheduling service, which decides from it whether a new schedule goes to CeR.
    422 names the entry's field: an unknown specialty, a date that is not one, a specialty twice."""
    async with ctx.uow() as uow:
        return await cer_service.correct_coverage(uow, body, who, ctx.clock.now())


@router.get("/cer/specialties/history", response_model=list[schemas.CoverageChangeOut], **allow(Role.operator))
async def cer_specialties_history(ctx: ContextDep, limit: Limit = 100) -> list[schemas.CoverageChangeOut]:
    """Every change of the dated CeR table, newest first (append-only: part of the audit)."""
    async with ctx.sessions() as session:
        return await cer_service.coverage_history(session, limit)


@router.get("/cer/contracts", response_model=schemas.ContractsOut, **allow(*ADMIN, Role.registrar))
async def cer_contracts(ctx: ContextDep, who: CurrentPrincipal) -> schemas.ContractsOut:
    """The NFZ contracts in CeR specialties the facility declared (the compliance report uses them)."""
    async with ctx.sessions() as session:
        return await cer_service.contracts(session, who.require_facility())


@router.put("/cer/contracts", response_model=schemas.ContractsOut, **allow(*ADMIN))
async def put_cer_contracts(body: schemas.ContractsIn, ctx: ContextDep, who: CurrentPrincipal) -> schemas.ContractsOut:
    """Declare every CeR specialty the facility holds an NFZ contract in (replaces the earlier list;
    an empty list: none). A contracted specialty with nothing published is at risk or breached in
    the compliance report, never not applicable. 422 names an unknown specialty."""
    async with ctx.uow() as uow:
        return await cer_service.declare_contracts(uow, who.require_facility(), body, who.sub, ctx.clock.now())


webhooks = APIRouter(tags=["integration: webhooks"], responses=PROBLEM_RESPONSES)


@webhooks.post(
    "/webhooks/cer/{facility_id}",
    status_code=204,
    responses={401: {"description": "bad or missing signature, or a timestamp more than 300 s from now"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schemas.CerNotificationIn.model_json_schema()}},
        }
    },
)
async def cer_webhook(facility_id: str, request: Request, ctx: ContextDep) -> Response:
    """A CeR notification, signed with the facility's secret (no token). The same event id twice
    answers 204 and changes nothing."""
    raw = await request.body()
    async with ctx.uow() as uow:
        await cer_service.accept_notification(
            uow,
            facility_id,
            raw,
            request.headers.get("x-cer-timestamp"),
            request.headers.get("x-cer-signature"),
            ctx.clock.timestamp(),
            _secrets(ctx).unseal,
        )
    return Response(status_code=204)

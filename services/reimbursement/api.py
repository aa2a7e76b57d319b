"""Reimbursement HTTP API (eZWM orders): parse, authorise, call a use case, shape the answer.

A clinic's doctor (practitioner) or administrator issues and ends orders of their facility; a
pharmacist finds orders by number + PESEL or birth date, realises them and settles the month of
their own pharmacy.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Path, Query, Response

from services.integration.ezwm import EzwmClient
from services.reimbursement import schemas, service
from services.reimbursement.domain import EntitlementCheck, ReimbursementError, settlement_month
from services.reimbursement.models import PENDING_REGISTRATION, REGISTRATION_REJECTED, Order, Realisation
from services.reimbursement.registration import Registrar, pln
from shared.app import ContextDep, ServiceContext
from shared.auth import CurrentPrincipal, Role, allow
from shared.identifiers import Pesel
from shared.problems import PROBLEM_RESPONSES, NotFound, Unprocessable

router = APIRouter(prefix="/api/v1/reimbursement", tags=["reimbursement"], responses=PROBLEM_RESPONSES)

DOCTORS = (Role.practitioner, Role.facility_admin)
PHARMACY = (Role.pharmacist,)
OrderNumber = Annotated[str, Path(min_length=1, max_length=40, description="numer ewidencyjny zlecenia from eZWM")]


def today(ctx: ServiceContext) -> dt.date:
    """Today in the rules' time zone (Europe/Warsaw), from the service's clock: tests fix it."""
    return ctx.today()


def ezwm(ctx: ServiceContext) -> EzwmClient:
    client: EzwmClient = ctx.extras["ezwm"]
    return client


def registrar(ctx: ServiceContext) -> Registrar:
    found: Registrar = ctx.extras["registrar"]
    return found


# ----------------------------------------------------------------------------- orders


@router.post(
    "/orders",
    status_code=201,
    response_model=schemas.OrderOut,
    responses={
        409: {"description": "the original named in `continues_order` is already continued by another order"},
        503: {"description": "eZWM is unreachable: nothing was issued"},
    },
    summary="Issue an order: eZWM verifies it and assigns its number, positive or negative",
    description="The order starts with the current month or later: a month that has passed is 422 naming "
    "`start_month`. A short-form order (`short_form: true`) exists only as the continuation of an original order "
    "that has ended and names it in `continues_order`: the same patient, code, group and pieces a month, starting "
    "after the original's (possibly shortened) last month. It holds no pharmacy lock.",
    **allow(*DOCTORS),
)
async def issue_order(body: schemas.OrderIn, ctx: ContextDep, who: CurrentPrincipal) -> schemas.OrderOut:
    async with ctx.uow() as uow:
        row = await service.issue_order(
            uow, ezwm(ctx), facility_id=who.require_facility(), issued_by=who.sub, data=body, today=today(ctx)
        )
    return service.order_view(row, [], today(ctx))


@router.get(
    "/orders/{number}",
    response_model=schemas.OrderOut,
    summary="Find an order by its number and the patient's PESEL or birth date",
    description="A pharmacist must give `pesel` or `birth_date`; the issuing facility's doctors need neither. "
    "A number that does not match the identifier answers 404, like an unknown one.",
    **allow(*PHARMACY, *DOCTORS),
)
async def get_order(
    number: OrderNumber,
    ctx: ContextDep,
    who: CurrentPrincipal,
    pesel: Annotated[Pesel | None, Query()] = None,
    birth_date: Annotated[dt.date | None, Query()] = None,
) -> schemas.OrderOut:
    async with ctx.sessions() as session:
        if who.role == Role.pharmacist:
            if pesel is None and birth_date is None:
                raise Unprocessable.field("query.pesel", "give the patient's pesel or birth_date with the number")
            row = await service.patient_order(session, number, pesel=pesel, birth_date=birth_date)
        else:
            row = await service.issued_order(session, number, who.require_facility())
        realized = await service.months_realized(session, number)
    return service.order_view(row, realized, today(ctx))


@router.post(
    "/orders/{number}/end",
    response_model=schemas.OrderOut,
    responses={503: {"description": "eZWM is unreachable: the order was not ended"}},
    summary="End or shorten an order: nothing after its new end is realisable in any pharmacy",
    description="The order is never extended, nor ended before a month already supplied. The pharmacy that "
    "locked it keeps the lock for what is left up to the new end; the patient takes the doctor's new order (a "
    "short-form continuation naming this one, or a new order) to another pharmacy.",
    **allow(*DOCTORS),
)
async def end_order(
    number: OrderNumber, body: schemas.EndIn, ctx: ContextDep, who: CurrentPrincipal
) -> schemas.OrderOut:
    async with ctx.uow() as uow:
        row, realized = await service.end_order(
            uow, ezwm(ctx), facility_id=who.require_facility(), number=number, end_month=body.end_month
        )
    return service.order_view(row, realized, today(ctx))


# ----------------------------------------------------------------------------- realisations


@router.post(
    "/orders/{number}/realizations",
    status_code=201,
    response_model=schemas.RealisationOut,
    responses={409: {"description": "the order is locked by another pharmacy, or a month was already realised"}},
    summary="Realise 1 to 6 months of an order; the first pharmacy locks it for its whole validity",
    description="Recorded here first, then registered in eZWM. When eZWM is unreachable the answer is still 201 "
    "with `ezwm_status: pending_registration`, and the service registers it as soon as eZWM answers again. "
    "The realisation is dated today; an earlier `realized_on` is only the paper date of an offline realisation "
    "(`offline: true`) with the patient's signed statement (`patient_statement: true`), and its months start "
    "with that date's month. Months after an ended or shortened order's new end are refused in every pharmacy.",
    **allow(*PHARMACY),
)
async def realise(
    number: OrderNumber, body: schemas.RealisationIn, ctx: ContextDep, who: CurrentPrincipal
) -> schemas.RealisationOut:
    pharmacy_id = who.require_pharmacy()
    async with ctx.uow() as uow:
        realisation, check = await service.realise(
            uow, number=number, pharmacy_id=pharmacy_id, realised_by=who.sub, data=body, today=today(ctx)
        )
    # After the commit: the realisation stands whatever eZWM answers, and is retried if it does not.
    outcome = await registrar(ctx).register(realisation.id)
    async with ctx.sessions() as session:
        fresh = await session.get(Realisation, realisation.id)
        locked_by = await session.scalar(sa.select(Order.locked_by).where(Order.number == number))
    if fresh is None:  # committed above and never deleted; only a wiped database gets here
        raise NotFound(f"realisation {realisation.id} vanished")
    return _realisation_view(fresh, locked_by, check, _notes(outcome, fresh))


def _notes(outcome: str, row: Realisation) -> list[str]:
    if outcome == PENDING_REGISTRATION:
        return [service.OFFLINE_NOTE]
    if outcome == REGISTRATION_REJECTED:
        return [f"eZWM refused to register this realisation: {row.last_registration_error}"]
    return []


def _realisation_view(
    row: Realisation, locked_by: str | None, check: EntitlementCheck, notes: list[str]
) -> schemas.RealisationOut:
    return schemas.RealisationOut(
        id=row.id,
        order_number=row.order_number,
        months=list(row.months),
        pieces=row.pieces,
        unit_price=pln(row.unit_price_grosze),
        realized_on=row.realized_on,
        per_piece_limit=pln(row.per_piece_limit_grosze) if row.per_piece_limit_grosze is not None else None,
        value_limit=pln(row.value_limit_grosze),
        rate=pln(row.rate_percent),
        total=pln(row.unit_price_grosze * row.pieces),
        subsidy=pln(row.subsidy_grosze),
        patient_share=pln(row.patient_share_grosze),
        rules_valid_from=row.rules_valid_from,
        patient_age=row.patient_age,
        offline=row.offline,
        patient_statement=row.patient_statement,
        entitlements_in_force=list(row.entitlements),
        entitlements_dropped=[schemas.DroppedEntitlementOut(code=d.code, reason=d.reason) for d in check.dropped],
        continuation=row.continuation,
        ezwm_status=schemas.EzwmStatus(row.ezwm_status),
        ezwm_registration_number=row.ezwm_registration_number,
        locked_by_pharmacy=locked_by,
        notes=notes,
    )


# ----------------------------------------------------------------------------- settlements


@router.get(
    "/settlements",
    response_model=schemas.SettlementOut,
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"}},
    summary="The month's settlement of your pharmacy: one row per realisation, totals, documents, retention",
    **allow(*PHARMACY),
)
async def settlement(
    ctx: ContextDep,
    who: CurrentPrincipal,
    month: Annotated[str, Query(max_length=7, examples=["2030-01"], description="YYYY-MM, 2000-01 to 2100-12")],
    output: Annotated[schemas.SettlementFormat, Query(alias="format")] = schemas.SettlementFormat.json,
) -> Any:
    try:
        settled_month = settlement_month(month)
    except ReimbursementError as exc:
        raise service.problem_for(exc, where="query") from exc
    async with ctx.sessions() as session:
        settled = await service.settlement(session, who.require_pharmacy(), settled_month)
    if output is schemas.SettlementFormat.csv:
        return Response(
            service.settlement_csv(settled),
            media_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="settlement-{settled.month}.csv"'},
        )
    return settled


# ----------------------------------------------------------------------------- rule sets


@router.get("/rule-sets", response_model=list[schemas.RuleSetOut], **allow(Role.operator, *PHARMACY))
async def list_rule_sets(ctx: ContextDep) -> list[schemas.RuleSetOut]:
    """The dated rule table: which rules apply from when, and whether their amounts are loaded."""
    async with ctx.sessions() as session:
        return [service.rule_set_view(r) for r in await service.rule_sets(session)]


@router.put("/rule-sets/{valid_from}/monthly-limits", response_model=schemas.RuleSetOut, **allow(Role.operator))
async def load_monthly_limits(
    valid_from: dt.date, body: schemas.MonthlyLimitsIn, ctx: ContextDep, who: CurrentPrincipal
) -> schemas.RuleSetOut:
    """Load the monthly amounts of an older rule set (the source gives its shape, not its amounts)."""
    async with ctx.uow() as uow:
        return service.rule_set_view(await service.load_monthly_limits(uow, valid_from, body, who.sub))

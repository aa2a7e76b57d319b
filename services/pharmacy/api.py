"""Pharmacy HTTP API (psychoactive OTC sales, e-prescription realisation): parse, authorise, call a use
case, shape the answer.

Only a pharmacist works here, always inside the pharmacy of their token: a clinic's roles
(facility_admin included) have no pharmacy, and there is no pharmacy administrator role, so the
pharmacist also sets the pharmacy's policy.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from services.pharmacy import domain, schemas, service
from services.pharmacy.dispensing import LOOKUP_CODE, LOOKUP_CODE_MISS, LOOKUP_KEY, Dispensing, prescription_resource
from services.pharmacy.models import Product
from services.pharmacy.settings import PharmacySettings
from shared.app import ContextDep
from shared.audit import AuditEntry, record_read
from shared.auth import CurrentPrincipal, Role, allow
from shared.problems import PROBLEM_RESPONSES, NotFound, ProblemError, Unprocessable

router = APIRouter(prefix="/api/v1/pharmacy", tags=["pharmacy"], responses=PROBLEM_RESPONSES)

PHARMACY = (Role.pharmacist,)
CSV_MEDIA_TYPES = ("text/csv", "text/plain")
CSV_EXAMPLE = (
    "name,marketed_on,substance,mg_per_package\n"
    "Advil Zatoki 4 tabl.,2017-03-01,Pseudoephedrinum,120\n"
    "Gripex 12 tabl.,2018-05-10,pseudoephedrine,360\n"
    "Gripex 12 tabl.,2018-05-10,Dextromethorphanum,120\n"
)


def _with_openapi(route: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``allow(...)`` route arguments with more OpenAPI (``allow`` owns ``openapi_extra``)."""
    return {**route, "openapi_extra": {**route["openapi_extra"], **extra}}


def _product_view(product: Product) -> schemas.ProductOut:
    return schemas.ProductOut.model_validate(product)


# ----------------------------------------------------------------------------- products


@router.post("/products", status_code=201, response_model=schemas.ProductOut, **allow(*PHARMACY))
async def create_product(body: schemas.ProductIn, ctx: ContextDep, who: CurrentPrincipal) -> schemas.ProductOut:
    async with ctx.uow() as uow:
        product = await service.create_product(uow, who.require_pharmacy(), body, ctx.today())
    return _product_view(product)


@router.put(
    "/products/{product_id}",
    response_model=schemas.ProductOut,
    summary="Rewrite a product card (e.g. fill in a missing amount)",
    **allow(*PHARMACY),
)
async def update_product(
    product_id: uuid.UUID, body: schemas.ProductIn, ctx: ContextDep, who: CurrentPrincipal
) -> schemas.ProductOut:
    async with ctx.uow() as uow:
        product = await service.update_product(uow, who.require_pharmacy(), product_id, body, ctx.today())
    return _product_view(product)


IMPORT_BODY = {
    "requestBody": {
        "required": True,
        "description": "The product file as the raw request body (`Content-Type: text/csv`, UTF-8 unless a "
        "`charset` is given), at most 10 MiB. Header `name,marketed_on,substance,mg_per_package`; one line per "
        "substance, lines with the same name and marketed_on are one product; an empty mg_per_package means "
        "'not filled in'. A product with an invalid line is not imported at all.",
        "content": {"text/csv": {"schema": {"type": "string"}, "example": CSV_EXAMPLE}},
    }
}


@router.post(
    "/products/import",
    response_model=schemas.ImportOut,
    summary="Import products in bulk from a CSV file",
    responses={415: {"description": "the body is not text/csv"}},
    **_with_openapi(allow(*PHARMACY), IMPORT_BODY),
)
async def import_products(request: Request, ctx: ContextDep, who: CurrentPrincipal) -> schemas.ImportOut:
    pharmacy_id = who.require_pharmacy()
    text = _csv_text(request.headers.get("content-type", ""), await request.body())
    async with ctx.sessions() as session:
        limits = await service.limit_table(session)
    # A 10 MiB file takes a second to parse: off the event loop, and before the write transaction
    # (on SQLite that holds the database's one write lock).
    parsed = await asyncio.to_thread(service.read_catalogue, text, limits)
    config = PharmacySettings.from_settings(ctx.settings)
    return await service.import_products(
        ctx.uow,
        pharmacy_id,
        parsed,
        limits,
        ctx.today(),
        batch_size=config.import_batch_products,
        max_products=config.max_products_per_pharmacy,
    )


def _csv_text(content_type: str, body: bytes) -> str:
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() not in CSV_MEDIA_TYPES:
        raise ProblemError(
            "send the file as the request body with Content-Type: text/csv", status=415, code="unsupported-media-type"
        )
    charset = "utf-8-sig"  # a spreadsheet's UTF-8 export starts with a byte-order mark
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"').lower()
    if charset in ("utf-8", "utf8"):
        charset = "utf-8-sig"
    try:
        return body.decode(charset)
    except LookupError as exc:
        raise ProblemError(f"unknown charset {charset!r}", status=415, code="unsupported-media-type") from exc
    except UnicodeDecodeError as exc:
        raise Unprocessable.field(
            "body", f"the file is not valid {charset} at byte {exc.start}; give its charset, e.g. windows-1250"
        ) from exc


@router.get("/products", response_model=list[schemas.ProductOut], **allow(*PHARMACY))
async def list_products(
    ctx: ContextDep,
    who: CurrentPrincipal,
    name: Annotated[str | None, Query(max_length=200, description="part of the name, any case")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[schemas.ProductOut]:
    async with ctx.sessions() as session:
        rows = await service.list_products(session, who.require_pharmacy(), name=name, limit=limit, offset=offset)
        return [_product_view(p) for p in rows]


@router.get("/products/{product_id}", response_model=schemas.ProductOut, **allow(*PHARMACY))
async def get_product(product_id: uuid.UUID, ctx: ContextDep, who: CurrentPrincipal) -> schemas.ProductOut:
    async with ctx.sessions() as session:
        return _product_view(await service.get_product(session, who.require_pharmacy(), product_id))


# ----------------------------------------------------------------------------- settings


@router.get("/settings", response_model=schemas.SettingsOut, **allow(*PHARMACY))
async def get_settings(ctx: ContextDep, who: CurrentPrincipal) -> schemas.SettingsOut:
    async with ctx.sessions() as session:
        return schemas.SettingsOut(psychoactive_policy=await service.get_policy(session, who.require_pharmacy()))


@router.put("/settings", response_model=schemas.SettingsOut, **allow(*PHARMACY))
async def put_settings(body: schemas.SettingsIn, ctx: ContextDep, who: CurrentPrincipal) -> schemas.SettingsOut:
    async with ctx.uow() as uow:
        policy = await service.set_policy(uow, who.require_pharmacy(), body.psychoactive_policy)
    return schemas.SettingsOut(psychoactive_policy=policy)


# ----------------------------------------------------------------------------- sale check


@router.post(
    "/sales/check",
    response_model=schemas.SaleCheckOut,
    summary="Check one OTC sale against the psychoactive-substance limits",
    **allow(*PHARMACY),
)
async def check_sale(body: schemas.SaleCheckIn, ctx: ContextDep, who: CurrentPrincipal) -> schemas.SaleCheckOut:
    on = body.on_date or ctx.today()
    async with ctx.sessions() as session:
        check, policy = await service.check_sale(session, who.require_pharmacy(), body, on)
    return sale_check_view(check, policy, on)


@router.post(
    "/sales/refusals",
    status_code=201,
    response_model=schemas.RefusalOut,
    summary="Record a refused sale (suspected non-medical use), kept with the sale checks",
    **allow(*PHARMACY),
)
async def record_refusal(body: schemas.RefusalIn, ctx: ContextDep, who: CurrentPrincipal) -> schemas.RefusalOut:
    """Art. 8 ust. 3: the pharmacist refuses a product with a psychoactive substance when they judge it may
    be used for non-medical purposes. Dated by the server (Europe/Warsaw)."""
    async with ctx.uow() as uow:
        return await service.record_refusal(uow, who.require_pharmacy(), who.sub, body, ctx.clock.now(), ctx.today())


def sale_check_view(check: domain.SaleCheck, policy: domain.Policy, on: dt.date) -> schemas.SaleCheckOut:
    return schemas.SaleCheckOut(
        decision=check.decision,
        reasons=[
            schemas.ReasonOut(
                key=r.key,
                pl=r.pl,
                en=r.en,
                substance=r.substance,
                product_id=uuid.UUID(r.product_id) if r.product_id else None,
            )
            for r in check.reasons
        ],
        substances=[
            schemas.SubstanceTotalOut(
                substance=t.substance,
                total_multiplier=float(t.total_multiplier),
                total_mg=float(t.total_mg),
                max_mg_per_sale=float(t.max_mg),
            )
            for t in check.substances
        ],
        policy=policy,
        on_date=on,
    )


# ----------------------------------------------------------------------------- e-prescription realisation


def _dispensing(ctx: ContextDep) -> Dispensing:
    dispensing: Dispensing = ctx.extras["dispensing"]
    return dispensing


@router.post(
    "/prescriptions/lookup",
    response_model=schemas.DispensableOut | schemas.PackageLookupOut,
    responses={
        404: {"description": "P1 knows no such key, or no package matches the access code and PESEL"},
        429: {
            "description": "too many wrong access codes from this pharmacy, or for this PESEL from any pharmacy: "
            "`Retry-After` says how many seconds to wait (a key is never limited)"
        },
        503: {"description": "P1 is unreachable (realise on the printout with an outage statement)"},
    },
    **allow(*PHARMACY),
)
async def lookup_prescription(
    body: schemas.LookupIn, ctx: ContextDep, who: CurrentPrincipal
) -> schemas.DispensableOut | schemas.PackageLookupOut:
    """By the key scanned from the printout, the e-mail PDF or mObywatel (it opens that prescription), or by
    the package's access code + PESEL (it opens every prescription of the package; wrong codes are limited
    per pharmacy and per PESEL). A prescription with nothing dispensable here says why in `reason`."""
    pharmacy = who.require_pharmacy()
    if body.key is not None:
        found = await _dispensing(ctx).lookup_key(pharmacy, body.key)
        await record_read(
            ctx.uow, who, LOOKUP_KEY, [AuditEntry(resource=prescription_resource(body.key))], at=ctx.clock.now()
        )
        return found
    assert body.access_code is not None and body.pesel is not None  # the schema requires both together
    try:
        package = await _dispensing(ctx).lookup_code(pharmacy, body.access_code, body.pesel)
    except NotFound:
        # A miss is audited too: guesses at a patient's code are an access attempt on their data.
        await record_read(
            ctx.uow,
            who,
            LOOKUP_CODE_MISS,
            [AuditEntry(resource="package", patient_pesel=body.pesel)],
            at=ctx.clock.now(),
        )
        raise
    await record_read(
        ctx.uow,
        who,
        LOOKUP_CODE,
        [AuditEntry(resource=prescription_resource(package.package_key), patient_pesel=body.pesel)],
        at=ctx.clock.now(),
    )
    return package


@router.post(
    "/realizations",
    status_code=201,
    response_model=schemas.RealisationOut,
    responses={
        404: {"description": "P1 knows no prescription with this key"},
        409: {"description": "partly realised in another pharmacy, or cancelled"},
    },
    **allow(*PHARMACY),
)
async def realise_prescription(
    body: schemas.RealisationIn, ctx: ContextDep, who: CurrentPrincipal
) -> schemas.RealisationOut:
    """Dated today (Europe/Warsaw) by the server; `on_date` only on an outage realisation (P1 down), from
    the day P1 went down through today. At most 180 days of use per visit: everything this pharmacy
    dispenses of one prescription on one day counts together."""
    return await _dispensing(ctx).realise(ctx.uow, who.require_pharmacy(), who, body)

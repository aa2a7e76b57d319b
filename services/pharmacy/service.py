"""Pharmacy use cases for psychoactive OTC sales: each is one transaction of one pharmacy."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.pharmacy import domain, schemas
from services.pharmacy.catalogue_csv import CsvFileError, ParsedCatalogue, ProductDraft, parse_catalogue
from services.pharmacy.models import (
    Base,
    PharmacySettings,
    Product,
    ProductSubstance,
    PsychoactiveLimit,
    SaleRefusal,
)
from shared.db import upsert_insert, utcnow
from shared.outbox import UnitOfWork
from shared.problems import Conflict, FieldError, NotFound, Unprocessable

# Names per IN (...) when looking for products already in the catalogue: under SQLite's bound-variable limit.
LOOKUP_CHUNK = 500
ALREADY_IN_CATALOGUE = "a product with this name and marketed_on is already in your catalogue"
ADDED_MEANWHILE = "a product of this part of the file was added by another request at the same time; send it again"


async def limit_table(session: AsyncSession) -> domain.LimitTable:
    rows = (await session.scalars(sa.select(PsychoactiveLimit))).all()
    return domain.LimitTable(domain.LimitRule(r.substance, r.max_mg_per_sale, r.valid_from) for r in rows)


def _substance_rows(contents: Iterable[domain.Content], limits: domain.LimitTable, on: dt.date) -> list[dict[str, Any]]:
    """The card's substance rows with the limit and multiplier in force on ``on`` (for display)."""
    rows = []
    for position, content in enumerate(contents):
        figures = domain.content_figures(content, limits, on)
        rows.append(
            {
                "position": position,
                "substance": figures.substance,
                "mg_per_package": figures.mg_per_package,
                "max_mg_per_sale": figures.max_mg,
                "multiplier": figures.multiplier,
            }
        )
    return rows


# ----------------------------------------------------------------------------- products


def _contents(data: schemas.ProductIn, limits: domain.LimitTable) -> list[domain.Content]:
    contents: list[domain.Content] = []
    for index, given in enumerate(data.substances):
        meant = domain.looks_like_limited(given.substance, limits.substances)
        if meant is not None:
            raise Unprocessable.field(
                f"body.substances.{index}.substance",
                f"{given.substance!r} looks like {meant}; write {meant} so that its limit is checked",
            )
        content = domain.Content(domain.canonical_substance(given.substance), given.mg_per_package)
        earlier = next((i for i, c in enumerate(contents) if c.substance == content.substance), None)
        if earlier is not None:
            raise Unprocessable.field(
                f"body.substances.{index}.substance",
                f"{content.substance} is already given as substances.{earlier}; give each substance once",
            )
        contents.append(content)
    return contents


async def create_product(uow: UnitOfWork, pharmacy_id: str, data: schemas.ProductIn, today: dt.date) -> Product:
    limits = await limit_table(uow.session)
    contents = _contents(data, limits)
    product = Product(
        pharmacy_id=pharmacy_id,
        name=data.name,
        marketed_on=data.marketed_on,
        substances=[ProductSubstance(**row) for row in _substance_rows(contents, limits, today)],
    )
    uow.session.add(product)
    await _commit_card(uow)
    return product


async def _commit_card(uow: UnitOfWork) -> None:
    """Commit a product card; the same name and marketing date twice is the database's 409."""
    try:
        await uow.commit()
    except IntegrityError as exc:
        raise Conflict(
            ALREADY_IN_CATALOGUE,
            code="product-exists",
            errors=[FieldError(field="body.name", message=ALREADY_IN_CATALOGUE)],
        ) from exc


async def update_product(
    uow: UnitOfWork, pharmacy_id: str, product_id: uuid.UUID, data: schemas.ProductIn, today: dt.date
) -> Product:
    """Rewrite a card (KS-AOW "F4 ZMIEŃ"), e.g. to fill in an amount that was missing."""
    session = uow.session
    product = await get_product(session, pharmacy_id, product_id)
    limits = await limit_table(session)
    contents = _contents(data, limits)
    # The old rows go first: inserted beside them, a substance kept would collide on its unique key.
    product.substances.clear()
    await session.flush()
    product.name, product.marketed_on = data.name, data.marketed_on
    product.substances.extend(ProductSubstance(**row) for row in _substance_rows(contents, limits, today))
    await _commit_card(uow)
    return product


def read_catalogue(text: str, limits: domain.LimitTable) -> ParsedCatalogue:
    """Parse a product file (CPU only: run it outside the transaction, it may take a second)."""
    try:
        return parse_catalogue(text, limits.substances)
    except CsvFileError as exc:
        raise Unprocessable.field("body", str(exc)) from exc


async def import_products(
    new_uow: Callable[[], UnitOfWork],
    pharmacy_id: str,
    parsed: ParsedCatalogue,
    limits: domain.LimitTable,
    today: dt.date,
    *,
    batch_size: int,
    max_products: int,
) -> schemas.ImportOut:
    """Writes the file's products in transactions of ``batch_size``: a 10 MiB file no longer holds the
    database's write lock (SQLite's only one) for the whole import. A batch is all or nothing; what a
    batch could not take is rejected line by line with the reason, never dropped."""
    drafts, imported = list(parsed.products), []
    for start in range(0, len(drafts), batch_size):
        batch = drafts[start : start + batch_size]
        async with new_uow() as uow:
            present = await _already_in_catalogue(uow.session, pharmacy_id, batch)
            fresh = [draft for draft in batch if draft.key not in present]
            held = await uow.session.scalar(
                sa.select(sa.func.count()).select_from(Product).where(Product.pharmacy_id == pharmacy_id)
            )
            room = max(max_products - int(held or 0), 0)
            taken, over_cap = fresh[:room], fresh[room:]
            await _insert_products(uow, pharmacy_id, taken, limits, today)
            try:
                await uow.commit()
            except IntegrityError:
                parsed.reject_products([d.key for d in taken], ADDED_MEANWHILE)
                taken = []
        parsed.reject_products(present, ALREADY_IN_CATALOGUE)
        parsed.reject_products([d.key for d in over_cap], f"the catalogue holds at most {max_products} products")
        imported.extend(taken)
    parsed.products = imported
    return schemas.ImportOut(
        imported=parsed.imported_lines,
        products=len(parsed.products),
        rejected=[schemas.ImportRejection(line=r.line, error=r.error) for r in parsed.rejected],
    )


async def _insert_products(
    uow: UnitOfWork, pharmacy_id: str, drafts: Sequence[ProductDraft], limits: domain.LimitTable, today: dt.date
) -> None:
    products: list[dict[str, Any]] = []
    substances: list[dict[str, Any]] = []
    now = utcnow()
    for draft in drafts:
        product_id = uuid.uuid4()
        products.append(
            {
                "id": product_id,
                "pharmacy_id": pharmacy_id,
                "name": draft.name,
                "marketed_on": draft.marketed_on,
                "created_at": now,
            }
        )
        substances += [
            {"id": uuid.uuid4(), "product_id": product_id, **row}
            for row in _substance_rows(draft.contents, limits, today)
        ]
    if products:
        # Core executemany on the tables: a 10 MiB file through the ORM's insert went row by row (5× slower).
        await uow.session.execute(sa.insert(Base.metadata.tables[Product.__tablename__]), products)
        await uow.session.execute(sa.insert(Base.metadata.tables[ProductSubstance.__tablename__]), substances)


async def _already_in_catalogue(
    session: AsyncSession, pharmacy_id: str, drafts: Sequence[ProductDraft]
) -> set[tuple[str, dt.date]]:
    wanted = {draft.key for draft in drafts}
    names = sorted({name for name, _ in wanted})
    found: set[tuple[str, dt.date]] = set()
    for start in range(0, len(names), LOOKUP_CHUNK):
        rows = await session.execute(
            sa.select(Product.name, Product.marketed_on).where(
                Product.pharmacy_id == pharmacy_id, Product.name.in_(names[start : start + LOOKUP_CHUNK])
            )
        )
        found.update((name, marketed_on) for name, marketed_on in rows)
    return found & wanted


async def list_products(
    session: AsyncSession, pharmacy_id: str, *, name: str | None, limit: int, offset: int
) -> Sequence[Product]:
    query = sa.select(Product).where(Product.pharmacy_id == pharmacy_id)
    if name:
        query = query.where(sa.func.lower(Product.name).contains(name.lower(), autoescape=True))
    query = query.order_by(Product.name, Product.marketed_on, Product.id).limit(limit).offset(offset)
    return (await session.scalars(query)).all()


async def get_product(session: AsyncSession, pharmacy_id: str, product_id: uuid.UUID) -> Product:
    product = await session.get(Product, product_id)
    # Another pharmacy's product answers as if it did not exist.
    if product is None or product.pharmacy_id != pharmacy_id:
        raise NotFound(f"product {product_id} not found")
    return product


# ----------------------------------------------------------------------------- settings


async def get_policy(session: AsyncSession, pharmacy_id: str) -> domain.Policy:
    row = await session.get(PharmacySettings, pharmacy_id)
    return domain.Policy(row.psychoactive_policy) if row else domain.DEFAULT_POLICY


async def set_policy(uow: UnitOfWork, pharmacy_id: str, policy: domain.Policy) -> domain.Policy:
    # An upsert: two first-time PUTs of one pharmacy at the same moment must not collide on the key.
    insert = upsert_insert(uow.session)
    values = {"psychoactive_policy": policy.value, "updated_at": utcnow()}
    await uow.session.execute(
        insert(PharmacySettings)
        .values(pharmacy_id=pharmacy_id, **values)
        .on_conflict_do_update(index_elements=[PharmacySettings.pharmacy_id], set_=values)
    )
    await uow.commit()
    return policy


# ----------------------------------------------------------------------------- sale check


def _card(product: Product) -> domain.ProductCard:
    contents = tuple(domain.Content(s.substance, s.mg_per_package) for s in product.substances)
    return domain.ProductCard(str(product.id), product.name, product.marketed_on, contents)


async def _catalogue_lines(
    session: AsyncSession, pharmacy_id: str, lines: Sequence[schemas.SaleLineIn]
) -> dict[uuid.UUID, Product]:
    """The products of the sale lines, each in this pharmacy's catalogue, or 422 naming the lines that are not."""
    wanted = {line.product_id for line in lines}
    found = await session.scalars(sa.select(Product).where(Product.pharmacy_id == pharmacy_id, Product.id.in_(wanted)))
    products = {p.id: p for p in found}
    unknown = [
        FieldError(field=f"body.lines.{index}.product_id", message="no product with this id in your pharmacy")
        for index, line in enumerate(lines)
        if line.product_id not in products
    ]
    if unknown:
        raise Unprocessable("a sale line names a product that is not in your catalogue", errors=unknown)
    return products


async def record_refusal(
    uow: UnitOfWork, pharmacy_id: str, pharmacist: str, data: schemas.RefusalIn, now: dt.datetime, today: dt.date
) -> schemas.RefusalOut:
    await _catalogue_lines(uow.session, pharmacy_id, data.lines)
    refusal = SaleRefusal(
        pharmacy_id=pharmacy_id,
        pharmacist=pharmacist,
        lines=[{"product_id": str(line.product_id), "packages": line.packages} for line in data.lines],
        reason=data.reason,
        buyer_age=data.buyer_age,
        on_date=today,
        refused_at=now,
    )
    uow.session.add(refusal)
    await uow.commit()
    return schemas.RefusalOut(
        id=refusal.id,
        lines=data.lines,
        reason=data.reason,
        buyer_age=data.buyer_age,
        pharmacist=pharmacist,
        refused_at=now,
        on_date=today,
    )


async def check_sale(
    session: AsyncSession, pharmacy_id: str, data: schemas.SaleCheckIn, on: dt.date
) -> tuple[domain.SaleCheck, domain.Policy]:
    products = await _catalogue_lines(session, pharmacy_id, data.lines)
    limits = await limit_table(session)
    # Before 2017 the one-package rule of art. 8 ust. 2 applies (domain.check_sale); from then on the table.
    if on >= domain.LIMITS_START and (limits.starts_on is None or on < limits.starts_on):
        raise Unprocessable.field(
            "body.on_date",
            f"the limit table starts on {limits.starts_on}; the rules before it are not known to this service",
        )
    policy = await get_policy(session, pharmacy_id)
    check = domain.check_sale(
        [domain.SaleLine(_card(products[line.product_id]), line.packages) for line in data.lines],
        buyer_age=data.buyer_age,
        policy=policy,
        confirmed=data.confirmed,
        on=on,
        limits=limits,
    )
    return check, policy

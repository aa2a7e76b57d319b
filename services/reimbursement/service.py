"""Reimbursement use cases: each is one transaction, with its events written to the outbox.

eZWM is asked before the transaction opens (issuing) or after it commits (registering a
realisation), so no database lock waits on the network; only ending an order holds its row while
eZWM agrees, because a realisation must not slip in between the two.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from collections.abc import Awaitable, Iterable, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.integration.ezwm import (
    EzwmBadAnswer,
    EzwmClient,
    EzwmRefused,
    EzwmUnavailable,
    OrderToVerify,
    OrderVerification,
)
from services.reimbursement import domain, events, schemas
from services.reimbursement.domain import Month, RealisationConflict, ReimbursementError
from services.reimbursement.models import NEGATIVE, POSITIVE, MonthlyLimitAmounts, Order, OrderMonth, Realisation
from services.reimbursement.registration import pln
from shared.db import updated_rows, utcnow
from shared.identifiers import pesel_birth_date
from shared.outbox import UnitOfWork
from shared.problems import Conflict, FieldError, NotFound, ProblemError, Unprocessable

# How each backend names the violated "each month once" key (SQLite names columns, not the key).
MONTH_TAKEN = ("pk_order_months", "UNIQUE constraint failed: order_months")
CONTINUED_ALREADY = ("uq_orders_continues_order", "UNIQUE constraint failed: orders.continues_order")
# Domain fields whose input the API names differently.
_FIELD_ALIASES = {"birth_date": "realized_on"}
OFFLINE_NOTE = (
    "eZWM is unreachable: fill in page 4 by hand and have it signed; this realisation is registered in eZWM "
    "as soon as it answers again"
)
T = TypeVar("T")


def grosze(amount: Decimal) -> int:
    return int(domain.to_cents(amount).scaleb(2))


def problem_for(exc: ReimbursementError, where: str = "body") -> ProblemError:
    """A broken eZWM rule as problem+json naming the input at fault; a month supplied twice is 409."""
    field = f"{where}.{_FIELD_ALIASES.get(exc.field, exc.field)}"
    if isinstance(exc, RealisationConflict):
        return Conflict(
            exc.message, code="month-already-realised", errors=[FieldError(field=field, message=exc.message)]
        )
    return Unprocessable.field(field, exc.message)


async def ask_ezwm(call: Awaitable[T], *, doing: str, refused_field: str) -> T:
    try:
        return await call
    except EzwmUnavailable as exc:
        raise ProblemError(
            f"eZWM is unavailable, so this service could not {doing}; try again later ({exc.message})",
            status=503,
            code="ezwm-unavailable",
        ) from exc
    except EzwmRefused as exc:
        raise Unprocessable.field(refused_field, f"eZWM refused: {exc.message}") from exc
    except EzwmBadAnswer as exc:
        raise ProblemError(f"eZWM gave an invalid answer: {exc.message}", status=502, code="ezwm-bad-answer") from exc


# ----------------------------------------------------------------------------- the order as the rules see it


def entitlement_codes(row: Order) -> list[str]:
    return sorted({str(grant["code"]) for grant in row.entitlements})


def _grants(stored: Iterable[dict[str, Any]]) -> list[domain.EntitlementGrant]:
    def day(value: Any) -> dt.date | None:
        return dt.date.fromisoformat(value) if isinstance(value, str) else None

    return [
        domain.EntitlementGrant(str(g["code"]), day(g.get("valid_from")), day(g.get("valid_until"))) for g in stored
    ]


def _stored(grants: Sequence[schemas.EntitlementIn]) -> list[dict[str, Any]]:
    return [
        {
            "code": grant.code.upper(),
            "valid_from": grant.valid_from.isoformat() if grant.valid_from else None,
            "valid_until": grant.valid_until.isoformat() if grant.valid_until else None,
        }
        for grant in grants
    ]


def domain_order(row: Order, months_realized: Iterable[str]) -> domain.Order:
    return domain.Order(
        code=domain.ProductCode(row.code),
        group=domain.ProductGroup(row.product_group),
        pieces_per_month=row.pieces_per_month,
        months=row.months,
        start_month=Month.parse(row.start_month),
        entitlements=frozenset(entitlement_codes(row)),
        channel=domain.Channel(row.channel),
        end_month=Month.parse(row.end_month) if row.end_month else None,
        months_realized=frozenset(Month.parse(m) for m in months_realized),
    )


async def months_realized(session: AsyncSession, number: str) -> list[str]:
    query = sa.select(OrderMonth.month).where(OrderMonth.order_number == number).order_by(OrderMonth.month)
    return list((await session.scalars(query)).all())


def order_status(row: Order, order: domain.Order, today: dt.date) -> schemas.OrderStatus:
    if row.verification == NEGATIVE:
        return schemas.OrderStatus.negative
    if set(order.valid_months) <= order.months_realized:
        return schemas.OrderStatus.completed
    if Month.of(today) > order.last_month:
        return schemas.OrderStatus.expired
    return schemas.OrderStatus.active


def order_view(row: Order, realized: list[str], today: dt.date) -> schemas.OrderOut:
    order = domain_order(row, realized)
    return schemas.OrderOut(
        number=row.number,
        verification=schemas.Verification(row.verification),
        reasons=list(row.reasons),
        status=order_status(row, order, today),
        locked_by_pharmacy=row.locked_by,
        months_realized=realized,
        code=order.code,
        group=order.group,
        group_code=str(order.group_code),
        pieces_per_month=row.pieces_per_month,
        months=row.months,
        start_month=row.start_month,
        valid_until=str(order.last_month),
        end_month=row.end_month,
        entitlements=entitlement_codes(row),
        channel=order.channel,
        short_form=row.short_form,
        continues_order=row.continues_order,
        patient_age=domain.age_on(row.patient_birth_date, max(today, row.patient_birth_date)),
    )


# ----------------------------------------------------------------------------- issuing


async def issue_order(
    uow: UnitOfWork, ezwm: EzwmClient, *, facility_id: str, issued_by: str, data: schemas.OrderIn, today: dt.date
) -> Order:
    """Verify the order in eZWM and keep it with the number eZWM assigned, positive or negative."""
    original = await _original(uow.session, data) if data.continues_order is not None else None
    try:
        order = domain.new_order(
            code=data.code.value,
            group=data.group.value,
            pieces_per_month=data.pieces_per_month,
            months=data.months,
            start_month=data.start_month,
            entitlements=data.entitlements,
            channel=data.channel.value,
            today=today,
            short_form=data.short_form,
            continues=original,
        )
    except ReimbursementError as exc:
        raise problem_for(exc) from exc
    verification = await ask_ezwm(
        ezwm.verify_order(_to_verify(order, data, facility_id)), doing="issue the order", refused_field="body"
    )
    row = Order(
        number=verification.number,
        facility_id=facility_id,
        issued_by=issued_by,
        patient_pesel=data.patient_pesel,
        patient_birth_date=pesel_birth_date(data.patient_pesel),
        code=order.code.value,
        product_group=order.group.value,
        pieces_per_month=order.pieces_per_month,
        months=order.months,
        start_month=str(order.start_month),
        entitlements=[{"code": code} for code in sorted(order.entitlements)],
        channel=order.channel.value,
        short_form=data.short_form,
        continues_order=data.continues_order,
        verification=verification.verification,
        reasons=list(verification.reasons),
    )
    uow.session.add(row)
    if order.channel is domain.Channel.TELECONSULTATION:
        _announce_number(uow, row, verification, facility_id)
    try:
        await uow.commit()
    except IntegrityError as exc:
        if any(marker in str(exc.orig) for marker in CONTINUED_ALREADY):
            raise _continued_already(data.continues_order) from exc
        raise ProblemError(
            f"eZWM assigned number {verification.number}, which this service already holds",
            status=502,
            code="ezwm-bad-answer",
        ) from exc
    return row


async def _original(session: AsyncSession, data: schemas.OrderIn) -> domain.Order:
    """The order a short-form order continues: the same patient's, positively verified, not yet continued.

    Another patient's number is as unknown as a wrong one. "Not yet continued" is asked here for a
    clear early answer before eZWM is asked; the unique index decides a race.
    """
    number = data.continues_order
    row = await session.get(Order, number) if number is not None else None
    if row is None or row.patient_pesel != data.patient_pesel:
        raise Unprocessable.field("body.continues_order", f"no order {number} for this patient")
    if row.verification != POSITIVE:
        raise Unprocessable.field(
            "body.continues_order",
            f"order {row.number} was verified negatively by eZWM: there is no original order to continue",
        )
    if await session.scalar(sa.select(Order.number).where(Order.continues_order == row.number)) is not None:
        raise _continued_already(row.number)
    return domain_order(row, await months_realized(session, row.number))


def _continued_already(number: str | None) -> Conflict:
    return Conflict(
        f"order {number} is already continued by another short-form order: continue that one once it has ended",
        code="order-already-continued",
        errors=[FieldError(field="body.continues_order", message="already continued")],
    )


def _to_verify(order: domain.Order, data: schemas.OrderIn, facility_id: str) -> OrderToVerify:
    return OrderToVerify(
        patient_pesel=data.patient_pesel,
        code=order.code.value,
        group=order.group.value,
        pieces_per_month=order.pieces_per_month,
        months=order.months,
        start_month=str(order.start_month),
        entitlements=sorted(order.entitlements),
        channel=order.channel.value,
        short_form=data.short_form,
        facility_id=facility_id,
    )


def _announce_number(uow: UnitOfWork, row: Order, verification: OrderVerification, facility_id: str) -> None:
    # Teleporada: nothing is printed, so the number reaches the patient only through notifications.
    uow.emit(
        events.OrderNumberIssued(
            number=row.number,
            patient_pesel=row.patient_pesel,
            channel=row.channel,
            verification=verification.verification,
        ),
        facility_id=facility_id,
    )


# ----------------------------------------------------------------------------- finding


async def patient_order(session: AsyncSession, number: str, *, pesel: str | None, birth_date: dt.date | None) -> Order:
    """The order if the patient identifier matches; a wrong identifier is as unknown as a wrong number."""
    row = await session.get(Order, number)
    if (
        row is None
        or (pesel is not None and row.patient_pesel != pesel)
        or (birth_date is not None and row.patient_birth_date != birth_date)
    ):
        raise NotFound(f"no order {number} for this patient")
    return row


async def issued_order(session: AsyncSession, number: str, facility_id: str) -> Order:
    """The order if the facility issued it; another facility's order is "not found"."""
    row = await session.get(Order, number)
    if row is None or row.facility_id != facility_id:
        raise NotFound(f"no order {number} issued by your facility")
    return row


# ----------------------------------------------------------------------------- rule sets


async def rule_sets(session: AsyncSession) -> tuple[domain.RuleSet, ...]:
    """The dated rule table with the amounts operators have loaded."""
    table = domain.RULE_SETS
    for row in (await session.scalars(sa.select(MonthlyLimitAmounts))).all():
        base = next((r for r in table if r.valid_from == row.valid_from), None)
        if base is not None:
            loaded = domain.with_monthly_amounts(base, standard=pln(row.standard_grosze), higher=pln(row.higher_grosze))
            table = domain.replace_rule_set(table, loaded)
    return table


async def load_monthly_limits(
    uow: UnitOfWork, valid_from: dt.date, data: schemas.MonthlyLimitsIn, loaded_by: str
) -> domain.RuleSet:
    """An operator loads (or corrects) the monthly amounts of an older rule set."""
    base = next((r for r in domain.RULE_SETS if r.valid_from == valid_from), None)
    if base is None:
        raise NotFound(f"no rule set is valid from {valid_from}")
    standard, higher = Decimal(data.standard), Decimal(data.higher)
    try:
        loaded = domain.with_monthly_amounts(base, standard=standard, higher=higher)
    except ReimbursementError as exc:
        raise problem_for(exc) from exc
    await uow.session.merge(
        MonthlyLimitAmounts(
            valid_from=valid_from,
            standard_grosze=grosze(standard),
            higher_grosze=grosze(higher),
            loaded_by=loaded_by,
            loaded_at=utcnow(),
        )
    )
    await uow.commit()
    return loaded


def rule_set_view(rule_set: domain.RuleSet) -> schemas.RuleSetOut:
    limits = rule_set.limits
    view = schemas.RuleSetOut(valid_from=rule_set.valid_from, basis=rule_set.basis, loaded=limits.loaded)
    if isinstance(limits, domain.MonthlyLimits):
        view.standard_monthly_limit, view.higher_monthly_limit = limits.standard, limits.higher
    return view


# ----------------------------------------------------------------------------- realising


async def realise(
    uow: UnitOfWork,
    *,
    number: str,
    pharmacy_id: str,
    realised_by: str,
    data: schemas.RealisationIn,
    today: dt.date,
) -> tuple[Realisation, domain.EntitlementCheck]:
    """Check, price and record one realisation; the lock and the months are the database's decision."""
    session = uow.session
    row = await patient_order(session, number, pesel=data.pesel, birth_date=data.birth_date)
    _require_realisable_here(row, pharmacy_id)
    realized = await months_realized(session, number)
    grants = _stored(data.entitlements) if data.entitlements is not None else list(row.entitlements)
    try:
        realized_on = domain.realisation_date(
            data.realized_on, today=today, offline=data.offline, patient_statement=data.patient_statement
        )
        check = domain.entitlements_in_force(row.patient_birth_date, _grants(grants), realized_on)
        request = domain.check_realisation(
            domain_order(row, realized),
            realized_on=realized_on,
            months=[Month.parse(m, "months") for m in data.months],
            pieces=data.pieces,
            today=today,
        )
        quote = domain.price_realisation(
            group_code=domain.GroupCode(domain.ProductCode(row.code), domain.ProductGroup(row.product_group)),
            pieces=data.pieces,
            months=len(request.months),
            unit_price=Decimal(data.unit_price),
            entitlements=check.in_force,
            realized_on=realized_on,
            rule_sets=await rule_sets(session),
        )
    except ReimbursementError as exc:
        raise problem_for(exc) from exc
    await take_order(session, number, pharmacy_id, last_month=request.months[-1])
    realisation = Realisation(
        id=uuid.uuid4(),
        order_number=number,
        pharmacy_id=pharmacy_id,
        realised_by=realised_by,
        realized_on=realized_on,
        offline=data.offline,
        patient_statement=data.patient_statement,
        months=[str(m) for m in request.months],
        pieces=data.pieces,
        unit_price_grosze=grosze(Decimal(data.unit_price)),
        per_piece_limit_grosze=grosze(quote.per_piece_limit) if quote.per_piece_limit is not None else None,
        value_limit_grosze=grosze(quote.value_limit),
        rate_percent=int(quote.rate * 100),
        subsidy_grosze=grosze(quote.subsidy),
        patient_share_grosze=grosze(quote.patient_share),
        rules_valid_from=quote.rules_valid_from,
        entitlements=sorted(check.in_force),
        entitlements_changed=data.entitlements is not None
        and sorted({g["code"] for g in grants}) != entitlement_codes(row),
        patient_age=check.age,
        continuation=bool(realized),
        channel=row.channel,
        group_code=f"{row.code}.{row.product_group}",
    )
    session.add(realisation)
    await session.flush()  # the months refer to it, and without a relationship() the ORM would not order them
    session.add_all(
        OrderMonth(order_number=number, month=str(m), realisation_id=realisation.id) for m in request.months
    )
    if data.entitlements is not None:
        # Updated to the facts of the realisation day; later continuations are checked against them.
        await session.execute(
            sa.update(Order)
            .where(Order.number == number)
            .values(entitlements=grants)
            .execution_options(synchronize_session=False)
        )
    try:
        await uow.commit()
    except IntegrityError as exc:
        if any(marker in str(exc.orig) for marker in MONTH_TAKEN):
            raise Conflict(
                "a month of this realisation has just been supplied by another realisation of this order",
                code="month-already-realised",
                errors=[FieldError(field="body.months", message="already realised")],
            ) from exc
        raise
    return realisation, check


def _require_realisable_here(row: Order, pharmacy_id: str) -> None:
    """The early, friendly answer; ``take_order`` decides again inside the database."""
    if row.verification != POSITIVE:
        reasons = "; ".join(row.reasons) or "no reason given"
        raise Unprocessable.field(
            "path.number",
            f"order {row.number} was verified negatively by eZWM and cannot be realised: {reasons}",
        )
    if not row.short_form and row.locked_by not in (None, pharmacy_id):
        raise _locked_elsewhere(row.number, row.end_month)


def _locked_elsewhere(number: str, end_month: str | None) -> Conflict:
    if end_month is not None:
        return Conflict(
            f"order {number} is locked by another pharmacy; the doctor ended it with {end_month}, and what is left "
            "of it stays with that pharmacy: another pharmacy realises the doctor's new order instead",
            code="order-locked",
        )
    return Conflict(
        f"order {number} is locked by another pharmacy for its whole validity; to change pharmacy the doctor "
        "ends or shortens it and issues a new one",
        code="order-locked",
    )


async def take_order(session: AsyncSession, number: str, pharmacy_id: str, *, last_month: Month) -> None:
    """Lock the order for this pharmacy, or confirm it holds it, in ONE conditional UPDATE.

    Concurrent attempts queue on the order's row; each re-reads the committed row before its WHERE
    is decided, so exactly one pharmacy ever gets a free order. A short-form order is never locked.
    The same statement records the latest month supplied, which ending the order is checked against.
    """
    last = str(last_month)
    changed = await updated_rows(
        session,
        sa.update(Order)
        .where(
            Order.number == number,
            Order.verification == POSITIVE,
            sa.or_(Order.short_form.is_(True), Order.locked_by.is_(None), Order.locked_by == pharmacy_id),
            sa.or_(Order.end_month.is_(None), Order.end_month >= last),
        )
        .values(
            locked_by=sa.case((Order.short_form.is_(True), sa.null()), else_=sa.literal(pharmacy_id)),
            locked_at=sa.case(
                (Order.short_form.is_(True), sa.null()),
                (Order.locked_by.is_(None), sa.literal(utcnow(), Order.locked_at.type)),
                else_=Order.locked_at,
            ),
            realized_through=sa.case(
                (sa.or_(Order.realized_through.is_(None), Order.realized_through < last), sa.literal(last)),
                else_=Order.realized_through,
            ),
        ),
    )
    if changed != 1:
        raise await _why_not_taken(session, number, pharmacy_id, last)


async def _why_not_taken(session: AsyncSession, number: str, pharmacy_id: str, last: str) -> ProblemError:
    fresh = (
        await session.execute(
            sa.select(Order.locked_by, Order.end_month, Order.short_form).where(Order.number == number)
        )
    ).one_or_none()
    if fresh is None:
        return NotFound(f"no order {number} for this patient")
    if fresh.end_month is not None and fresh.end_month < last:
        return Unprocessable.field(
            "body.months", f"the doctor has just ended the order: it is valid until {fresh.end_month}"
        )
    if not fresh.short_form and fresh.locked_by not in (None, pharmacy_id):
        return _locked_elsewhere(number, fresh.end_month)
    return Conflict(f"order {number} changed while it was being realised; try again", code="order-changed")


# ----------------------------------------------------------------------------- ending


async def end_order(
    uow: UnitOfWork, ezwm: EzwmClient, *, facility_id: str, number: str, end_month: str
) -> tuple[Order, list[str]]:
    """The doctor ends or shortens the order (zakończenie / skrócenie).

    Nothing after the new end is realisable anywhere, and the lock stays: the months up to the new
    end are still the locking pharmacy's alone. To change pharmacy the patient takes the doctor's
    NEW order (a short-form continuation, or a new full one) elsewhere, never the old one's months.
    """
    session = uow.session
    row = await issued_order(session, number, facility_id)
    realized = await months_realized(session, number)
    try:
        end = Month.parse(end_month, "end_month")
        domain.end_order(domain_order(row, realized), end)
    except ReimbursementError as exc:
        raise problem_for(exc) from exc
    last = str(end)
    changed = await updated_rows(
        session,
        sa.update(Order)
        .where(
            Order.number == number,
            sa.or_(Order.realized_through.is_(None), Order.realized_through <= last),
            sa.or_(Order.end_month.is_(None), Order.end_month >= last),
        )
        .values(end_month=last, ended_at=utcnow()),
    )
    if changed != 1:
        raise Unprocessable.field(
            "body.end_month", "the order changed meanwhile (a month after it was supplied, or it was shortened further)"
        )
    # Still inside the transaction, holding the order's row: eZWM must agree before this is final.
    await ask_ezwm(ezwm.end_order(number, last), doing="end the order", refused_field="body.end_month")
    await session.refresh(row)  # inside the transaction: the unit of work's exit would expire it again
    await uow.commit()
    return row, realized


# ----------------------------------------------------------------------------- settlements


async def settlement(session: AsyncSession, pharmacy_id: str, month: Month) -> schemas.SettlementOut:
    """The month's realisations of this pharmacy: a realisation belongs to its date's month."""
    rows = (
        await session.scalars(
            sa.select(Realisation)
            .where(
                Realisation.pharmacy_id == pharmacy_id,
                Realisation.realized_on >= month.first_day,
                Realisation.realized_on <= month.last_day,
            )
            .order_by(Realisation.realized_on, Realisation.order_number)
        )
    ).all()
    settled = domain.settle_month(month, (_record(r) for r in rows))
    # Each order has at most one realisation dated in a month (its first month is the date's).
    by_order = {r.order_number: r for r in rows}
    return schemas.SettlementOut(
        month=str(month),
        pharmacy_id=pharmacy_id,
        rows=[_settlement_row(by_order[record.order_number], record) for record in settled.rows],
        totals=schemas.SettlementTotalsOut(
            realisations=settled.totals.realisations,
            pieces=settled.totals.pieces,
            total=settled.totals.total,
            subsidy=settled.totals.subsidy,
            patient_share=settled.totals.patient_share,
        ),
        documents=[
            schemas.DocumentOut(kind=d.kind.value, order_number=d.order_number, description=d.description)
            for d in settled.documents
        ],
        retain_until=settled.retain_until,
        not_yet_registered=sum(r.ezwm_status != "registered" for r in rows),
    )


def _record(row: Realisation) -> domain.RealisationRecord:
    return domain.RealisationRecord(
        order_number=row.order_number,
        realized_on=row.realized_on,
        months=tuple(Month.parse(m) for m in row.months),
        group_code=domain.GroupCode.parse(row.group_code),
        pieces=row.pieces,
        unit_price=pln(row.unit_price_grosze),
        subsidy=pln(row.subsidy_grosze),
        patient_share=pln(row.patient_share_grosze),
        channel=domain.Channel(row.channel),
        continuation=row.continuation,
        entitlements_changed=row.entitlements_changed,
    )


def _settlement_row(row: Realisation, record: domain.RealisationRecord) -> schemas.SettlementRowOut:
    return schemas.SettlementRowOut(
        realisation_id=row.id,
        order_number=row.order_number,
        realized_on=row.realized_on,
        months=list(row.months),
        group_code=row.group_code,
        pieces=row.pieces,
        unit_price=record.unit_price,
        total=record.total,
        subsidy=record.subsidy,
        patient_share=record.patient_share,
        channel=record.channel,
        continuation=row.continuation,
        entitlements_changed=row.entitlements_changed,
        ezwm_status=schemas.EzwmStatus(row.ezwm_status),
    )


CSV_COLUMNS = (
    "order_number",
    "realized_on",
    "months",
    "group_code",
    "pieces",
    "unit_price",
    "total",
    "subsidy",
    "patient_share",
    "channel",
    "continuation",
    "entitlements_changed",
    "ezwm_status",
)


def settlement_csv(settled: schemas.SettlementOut) -> str:
    """One line per realisation, then a TOTAL line: what the summary statement (zestawienie) lists."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for row in settled.rows:
        values = row.model_dump(mode="json")
        values["months"] = " ".join(row.months)
        writer.writerow([_csv_cell(values[column]) for column in CSV_COLUMNS])
    totals = settled.totals.model_dump(mode="json")
    writer.writerow(
        ["TOTAL", "", "", "", totals["pieces"], "", totals["total"], totals["subsidy"], totals["patient_share"]]
        + [""] * 4
    )
    return out.getvalue()


def _csv_cell(value: Any) -> Any:
    # JSON's spelling, not Python's "True": the file is read by spreadsheets and other programs.
    return str(value).lower() if isinstance(value, bool) else value

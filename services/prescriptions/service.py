"""Prescription-ordering use cases: each is one transaction, its events written to the outbox.

Routing asks the scheduling service over HTTP before the transaction opens, so no database lock
waits on the network; the booking carries an idempotency key made of the request id and the slot,
so a retry after a timeout finds the same booking instead of making a second one.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.prescriptions import domain, events, schemas
from services.prescriptions.models import (
    BOOKED,
    ISSUED,
    REFUSED,
    UNASSIGNED,
    AccountDrug,
    FacilitySettings,
    IkpItem,
    PractitionerOrdering,
    Prescription,
    PrescriptionPackage,
    PrescriptionRequest,
    RequestItem,
)
from services.prescriptions.routing import PortalRefused, Routed, Router, RouteRequest, UnknownLocation
from services.scheduling.client import SchedulingClientError, SchedulingUnavailable
from services.scheduling.schemas import PractitionerOut
from shared.db import updated_rows, upsert_insert, utcnow
from shared.outbox import UnitOfWork
from shared.problems import Conflict, FieldError, NotFound, ProblemError, Unprocessable

ISSUED_HERE = "issued"
RECORDED = "recorded"


def _problem(error: domain.PrescriptionError, where: str = "body") -> Unprocessable:
    return Unprocessable.field(f"{where}.{error.field}", error.message)


# ----------------------------------------------------------------------------- settings


def _activation(row: FacilitySettings | None) -> domain.ServiceActivation:
    if row is None:
        return domain.ServiceActivation(domain.ServiceMode.OFF)
    return domain.ServiceActivation(domain.ServiceMode(row.mode), row.activated_on)


def settings_out(row: FacilitySettings | None, today: dt.date) -> schemas.SettingsOut:
    activation = _activation(row)
    return schemas.SettingsOut(
        mode=activation.mode,
        activated_on=activation.activated_on,
        active_until=activation.active_until,
        active=activation.is_active(today),
        drug_scope=domain.DrugScope(row.drug_scope) if row else domain.DrugScope.ANY,
        problem_email=row.problem_email if row else None,
        ikp_enabled=row.ikp_enabled if row else False,
        demo_used_on=row.demo_used_on if row else None,
    )


async def get_settings(session: AsyncSession, facility_id: str, today: dt.date) -> schemas.SettingsOut:
    return settings_out(await session.get(FacilitySettings, facility_id), today)


async def put_settings(
    uow: UnitOfWork, facility_id: str, body: schemas.SettingsIn, today: dt.date
) -> schemas.SettingsOut:
    """The activation date is today's (``domain.next_activation``); the facility's row is created if
    missing and then locked, so two administrators asking for demo at once use it once."""
    insert = upsert_insert(uow.session)
    await uow.session.execute(
        insert(FacilitySettings)
        .values(facility_id=facility_id, mode="off", drug_scope="any", ikp_enabled=False, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=[FacilitySettings.facility_id])
    )
    row = await uow.session.get(FacilitySettings, facility_id, with_for_update=True, populate_existing=True)
    assert row is not None  # inserted above if it was missing
    try:
        activation = domain.next_activation(
            _activation(row), row.demo_used_on is not None, body.mode, today, body.activated_on
        )
    except domain.PrescriptionError as error:
        raise _problem(error) from None
    row.mode = activation.mode.value
    row.activated_on = activation.activated_on
    if activation.mode is domain.ServiceMode.DEMO and row.demo_used_on is None:
        row.demo_used_on = activation.activated_on
    row.drug_scope = body.drug_scope.value
    row.problem_email = str(body.problem_email) if body.problem_email else None
    row.updated_at = utcnow()
    answer = settings_out(row, today)
    uow.emit(
        events.SettingsChanged(
            mode=row.mode,
            activated_on=row.activated_on,
            active_until=answer.active_until,
            drug_scope=row.drug_scope,
        ),
        facility_id=facility_id,
    )
    await uow.commit()
    return answer


async def set_ikp_enabled(session: AsyncSession, facility_id: str, enabled: bool) -> None:
    row = await session.get(FacilitySettings, facility_id, with_for_update=True)
    if row is None:
        row = FacilitySettings(facility_id=facility_id, mode="off", drug_scope="any")
        session.add(row)
    row.ikp_enabled = enabled
    row.updated_at = utcnow()


async def set_ordering(uow: UnitOfWork, facility_id: str, npwz: str, enabled: bool) -> schemas.OrderingOut:
    row = await uow.session.get(PractitionerOrdering, (facility_id, npwz), with_for_update=True)
    if row is None:
        uow.session.add(PractitionerOrdering(facility_id=facility_id, npwz=npwz, enabled=enabled))
    else:
        row.enabled = enabled
        row.updated_at = utcnow()
    await uow.commit()
    return schemas.OrderingOut(npwz=npwz, enabled=enabled)


# ----------------------------------------------------------------------------- the patient's account


async def add_account_drugs(
    session: AsyncSession, facility_id: str, pesel: str, drugs: Sequence[str], today: dt.date, source: str
) -> None:
    """Insert-if-absent per drug; a drug already on the account keeps its first date."""
    for drug in drugs:
        key = domain.normalise_drug_name(drug)
        if await session.get(AccountDrug, (facility_id, pesel, key)) is None:
            session.add(
                AccountDrug(
                    facility_id=facility_id, patient_pesel=pesel, drug_key=key, drug=drug, added_on=today, source=source
                )
            )
            await session.flush()


async def account_drugs(session: AsyncSession, facility_id: str, pesel: str) -> list[AccountDrug]:
    rows = await session.scalars(
        sa.select(AccountDrug)
        .where(AccountDrug.facility_id == facility_id, AccountDrug.patient_pesel == pesel)
        .order_by(AccountDrug.drug_key)
    )
    return list(rows)


# ----------------------------------------------------------------------------- requests


@dataclass(frozen=True)
class RequestDraft:
    facility_id: str
    patient_pesel: str
    npwz: str
    location_id: uuid.UUID
    source: domain.RequestSource
    items: tuple[domain.RequestItem, ...]
    comment: str | None


def request_out(row: PrescriptionRequest) -> schemas.RequestOut:
    return schemas.RequestOut(
        id=row.id,
        status=row.status,
        source=domain.RequestSource(row.source),
        patient_pesel=row.patient_pesel,
        practitioner_npwz=row.practitioner_npwz,
        location_id=row.location_id,
        routed_to=schemas.RouteKindOut(row.routed_to) if row.routed_to else None,
        assigned_npwz=row.assigned_npwz,
        assigned_practitioner_id=row.assigned_practitioner_id,
        slot_id=row.slot_id,
        slot_start=row.slot_start,
        booking_id=row.booking_id,
        items=[schemas.ItemOut.model_validate(i) for i in row.items],
        comment=row.comment,
        problems=[int(p) for p in row.problems.split(",")] if row.problems else [],
        created_at=row.created_at,
    )


@dataclass(frozen=True)
class _Context:
    settings: FacilitySettings | None
    switch: bool | None
    account: list[str]


async def _context(session: AsyncSession, draft: RequestDraft) -> _Context:
    switch = await session.get(PractitionerOrdering, (draft.facility_id, draft.npwz))
    account = [a.drug for a in await account_drugs(session, draft.facility_id, draft.patient_pesel)]
    return _Context(await session.get(FacilitySettings, draft.facility_id), switch.enabled if switch else None, account)


def _scope_refusal(refused: Sequence[domain.RefusedItem], items: Sequence[domain.RequestItem]) -> Unprocessable:
    errors = [FieldError(field=f"body.items.{items.index(r.item)}.drug", message=r.reason) for r in refused]
    return Unprocessable("; ".join(r.reason for r in refused), code="drug-not-on-patient-account", errors=errors)


def _portal_refusal(notice: domain.ProblemNotice) -> Unprocessable:
    if notice.problem is domain.Problem.NO_PRACTITIONER_WITH_NPWZ:
        message = f"no practitioner with NPWZ {notice.npwz} works in this facility"
    else:
        message = (
            f"prescription ordering is not enabled for the practitioner with NPWZ {notice.npwz}: "
            "the portal takes orders only for practitioners the facility enabled"
        )
    error = FieldError(field="body.practitioner_npwz", message=message)
    return Unprocessable(message, code="practitioner-not-offered", errors=[error])


def _emit_problems(
    uow: UnitOfWork,
    facility_id: str,
    notices: Sequence[domain.ProblemNotice],
    email: str | None,
    request_id: uuid.UUID | None,
) -> None:
    for notice in notices:
        text = notice.text
        uow.emit(
            events.ProblemRaised(
                problem=int(notice.problem),
                problem_text=text.problem_pl,
                fix_text=text.fix_pl,
                problem_text_en=text.problem_en,
                fix_text_en=text.fix_en,
                problem_email=email,
                npwz=notice.npwz,
                request_id=request_id,
                details=list(notice.details),
            ),
            facility_id=facility_id,
        )


# Why a polled IKP request is refused when its location is gone (stored on each item, and told to
# the facility in Polish). The portal and the API answer 422 instead: their caller named the location.
LOCATION_GONE = "the location the request was addressed to does not exist in this facility"
LOCATION_GONE_PL = "Lokalizacja, do której wystawiono zamówienie, nie istnieje w placówce."


class Requests:
    """Accepting and routing requests; the scheduling client and the clock come from the app."""

    def __init__(self, router: Router) -> None:
        self.router = router

    async def accept(
        self,
        sessions: async_sessionmaker[AsyncSession],
        new_uow: Callable[[], UnitOfWork],
        draft: RequestDraft,
        now: dt.datetime,
        today: dt.date,
        *,
        item_ids: Sequence[str] = (),
    ) -> PrescriptionRequest | None:
        """Route and store one request. Portal refusals raise 422; polled IKP requests are always stored.

        Every refusal (of the request or of some items) notifies the facility (DOMAIN.md 2). The
        scheduling service is asked with no transaction open here. ``item_ids``: the IKP items
        sealed into this request; None is returned (nothing stored, the booking released) when
        another replica sealed them first.
        """
        async with sessions() as session:
            context = await _context(session, draft)
        email = context.settings.problem_email if context.settings else None
        active = _activation(context.settings).is_active(today)
        scope = domain.DrugScope(context.settings.drug_scope) if context.settings else domain.DrugScope.ANY
        check = domain.check_drug_scope(draft.items, draft.source, scope, context.account)
        portal = draft.source is domain.RequestSource.PORTAL
        if check.refused:  # only the portal's own drug scope refuses items
            notice = domain.refusal_notice(draft.npwz, [r.reason_pl for r in check.refused])
            await _notify(new_uow, draft.facility_id, notice, email)
            raise _scope_refusal(check.refused, draft.items)
        if portal and not active:
            notice = domain.ProblemNotice(domain.Problem.NO_ACTIVE_SERVICE, draft.npwz)
            await _notify(new_uow, draft.facility_id, notice, email)
            raise Unprocessable(f"{notice.text.problem_en} {notice.text.fix_en}", code="ordering-not-active")
        request_id = uuid.uuid4()
        refused: dict[int, str] = {}
        notices: tuple[domain.ProblemNotice, ...] = ()
        try:
            routed = await self._route(draft, request_id, context, active, now)
        except PortalRefused as refused_here:
            await _notify(new_uow, draft.facility_id, refused_here.notice, email)
            raise _portal_refusal(refused_here.notice) from None
        except UnknownLocation:
            if not item_ids:
                raise Unprocessable.field("body.location_id", "no such location in this facility") from None
            # Polled from P1: nobody can correct the location in an answer, so the request is stored
            # refused and the facility told, instead of the items waiting for ever.
            routed = None
            refused = dict.fromkeys(range(len(draft.items)), LOCATION_GONE)
            notices = (domain.refusal_notice(draft.npwz, [LOCATION_GONE_PL]),)
        if routed is not None:
            notices = routed.outcome.problems
        async with new_uow() as uow:
            row = self._row(draft, request_id, refused, routed, notices)
            uow.session.add(row)
            if item_ids and not await _claim_items(uow.session, item_ids, request_id):
                await uow.rollback()
                if routed is not None and routed.booking is not None:
                    await self.router.scheduling.cancel_booking(draft.facility_id, routed.booking.id)
                return None
            _emit_problems(uow, draft.facility_id, notices, email, request_id)
            uow.emit(
                events.RequestAccepted(
                    request_id=request_id,
                    source=draft.source.value,
                    status=row.status,
                    routed_to=row.routed_to,
                    assigned_npwz=row.assigned_npwz,
                    slot_id=row.slot_id,
                    patient_pesel=draft.patient_pesel,
                ),
                facility_id=draft.facility_id,
            )
            await uow.commit()
        return row

    async def _route(
        self,
        draft: RequestDraft,
        request_id: uuid.UUID,
        context: _Context,
        active: bool,
        now: dt.datetime,
    ) -> Routed:
        ikp_enabled = context.settings.ikp_enabled if context.settings else False
        request = RouteRequest(
            request_id,
            draft.facility_id,
            draft.patient_pesel,
            draft.npwz,
            draft.location_id,
            active,
            context.switch,
            ikp_enabled,
            portal=draft.source is domain.RequestSource.PORTAL,
        )
        try:
            return await self.router.route(request, now)
        except SchedulingUnavailable as exc:
            raise ProblemError(
                "the scheduling service is unavailable; nothing was stored - please try again",
                status=503,
                code="scheduling-unavailable",
            ) from exc
        except SchedulingClientError as exc:
            raise ProblemError(f"scheduling refused the booking: {exc}", status=502, code="scheduling-error") from exc

    @staticmethod
    def _row(
        draft: RequestDraft,
        request_id: uuid.UUID,
        refused: dict[int, str],
        routed: Routed | None,
        notices: Sequence[domain.ProblemNotice],
    ) -> PrescriptionRequest:
        """``refused``: the reason per item position; ``routed`` None: the whole request was refused."""
        items = [
            RequestItem(
                position=i,
                drug=item.drug,
                packages=item.packages,
                comment=item.comment,
                refused_reason=refused.get(i),
            )
            for i, item in enumerate(draft.items)
        ]
        row = PrescriptionRequest(
            id=request_id,
            facility_id=draft.facility_id,
            patient_pesel=draft.patient_pesel,
            practitioner_npwz=draft.npwz,
            location_id=draft.location_id,
            source=draft.source.value,
            comment=draft.comment,
            items=items,
            created_at=utcnow(),
        )
        row.problems = ",".join(str(int(n.problem)) for n in notices) or None
        if routed is None:
            row.status = REFUSED
            return row
        choice, booking = routed.outcome.choice, routed.booking
        if choice is None or booking is None:
            row.status = UNASSIGNED
            return row
        row.status = BOOKED
        row.routed_to = choice.kind.value
        row.assigned_practitioner_id = uuid.UUID(choice.slot.practitioner_id)
        row.assigned_npwz = routed.assigned_npwz
        row.slot_id = booking.slot_id
        row.booking_id = booking.id
        row.slot_start = routed.slot_start
        return row


async def _notify(
    new_uow: Callable[[], UnitOfWork], facility_id: str, notice: domain.ProblemNotice, email: str | None
) -> None:
    """The notice of a request refused before anything is stored: its own transaction, committed
    before the caller answers 422 (the refusal is what the facility must hear of)."""
    async with new_uow() as uow:
        _emit_problems(uow, facility_id, [notice], email, None)
        await uow.commit()


async def _claim_items(session: AsyncSession, item_ids: Sequence[str], request_id: uuid.UUID) -> bool:
    await session.flush()
    claimed = await updated_rows(
        session,
        sa.update(IkpItem)
        .where(IkpItem.id.in_(list(item_ids)), IkpItem.request_id.is_(None))
        .values(request_id=request_id),
    )
    return claimed == len(item_ids)


async def get_request(session: AsyncSession, facility_id: str, request_id: uuid.UUID) -> PrescriptionRequest:
    row = await session.get(PrescriptionRequest, request_id)
    if row is None or row.facility_id != facility_id:
        raise NotFound(f"prescription request {request_id} not found")
    return row


async def list_requests(
    session: AsyncSession, facility_id: str, *, status: str | None, patient_pesel: str | None, limit: int
) -> list[PrescriptionRequest]:
    query = sa.select(PrescriptionRequest).where(PrescriptionRequest.facility_id == facility_id)
    if status:
        query = query.where(PrescriptionRequest.status == status)
    if patient_pesel:
        query = query.where(PrescriptionRequest.patient_pesel == patient_pesel)
    rows = await session.scalars(query.order_by(PrescriptionRequest.created_at.desc()).limit(limit))
    return list(rows)


# ----------------------------------------------------------------------------- issuing


def _drafts(body: schemas.IssueIn) -> list[domain.PrescriptionDraft]:
    drafts = []
    for p in body.prescriptions:
        kind, group = p.domain_kind()
        drafts.append(
            domain.PrescriptionDraft(
                drug=p.drug,
                packages=p.packages,
                units_per_package=p.units_per_package,
                daily_dose_units=p.daily_dose_units,
                kind=kind,
                controlled_group=group,
                realise_from=p.realise_from,
            )
        )
    return drafts


def check_issuer(body: schemas.IssueIn, registered: PractitionerOut | None) -> PractitionerOut:
    """The issuer's record: the quantity limit follows its profession, not the one claimed."""
    if registered is None:
        raise Unprocessable.field("body.issuer_npwz", "no practitioner with this NPWZ works in this facility")
    if registered.profession.value != body.issuer_profession.value:
        raise Unprocessable.field(
            "body.issuer_profession",
            f"the practitioner's record says {registered.profession.value}, not {body.issuer_profession.value}",
        )
    return registered


async def issue(
    uow: UnitOfWork,
    facility_id: str,
    request_id: uuid.UUID,
    body: schemas.IssueIn,
    today: dt.date,
    registered: PractitionerOut | None,
) -> schemas.IssueOut:
    """``registered``: the issuer's record in scheduling (None: no such NPWZ in the facility)."""
    request = await get_request(uow.session, facility_id, request_id)
    issuer_npwz = check_issuer(body, registered).npwz
    if request.status == REFUSED:
        raise Conflict("every item of this request was refused: there is nothing to issue", code="request-refused")
    issuer = domain.Issuer(issuer_npwz, domain.Profession(body.issuer_profession.value))
    taken = set(
        await uow.session.scalars(
            sa.select(PrescriptionPackage.access_code).where(PrescriptionPackage.patient_pesel == request.patient_pesel)
        )
    )
    try:
        package = domain.issue_package(issuer, _drafts(body), today, taken_access_codes=taken)
    except domain.PrescriptionError as error:
        raise _problem(error) from None
    row = PrescriptionPackage(
        package_key=package.package_key,
        access_code=package.access_code,
        facility_id=facility_id,
        request_id=request.id,
        patient_pesel=request.patient_pesel,
        issuer_npwz=issuer_npwz,
        issuer_profession=body.issuer_profession.value,
        issued_on=today,
        prescriptions=[
            Prescription(
                key=p.key,
                position=i,
                drug=p.drug,
                packages=p.packages,
                units_per_package=Decimal(body.prescriptions[i].units_per_package),
                daily_dose_units=Decimal(body.prescriptions[i].daily_dose_units),
                kind=p.kind.value,
                controlled_group=p.controlled_group.value if p.controlled_group else None,
                valid_from=p.validity.first_day,
                valid_until=p.validity.last_day,
                status="issued",
            )
            for i, p in enumerate(package.prescriptions)
        ],
    )
    uow.session.add(row)
    request.status = ISSUED
    try:
        await uow.session.flush()
    except IntegrityError as exc:  # a drawn key already exists: practically never with 10**44 keys
        raise ProblemError("a prescription key collided; please issue again", status=503, code="key-collision") from exc
    await add_account_drugs(
        uow.session, facility_id, request.patient_pesel, [p.drug for p in package.prescriptions], today, ISSUED_HERE
    )
    uow.emit(_issued_event(row, body, registered.name if registered else None), facility_id=facility_id)
    await uow.commit()
    return issue_out(row)


def _issued_event(
    row: PrescriptionPackage, body: schemas.IssueIn, issuer_name: str | None
) -> events.PrescriptionIssued:
    """What the patient's information needs besides what is stored: dosage, the control visit and
    the issuer's name (from the practitioner's record)."""
    return events.PrescriptionIssued(
        control_visit_on=body.control_visit_on,
        issuer_name=issuer_name,
        package_id=row.id,
        package_key=row.package_key,
        access_code=row.access_code,
        patient_pesel=row.patient_pesel,
        issuer_npwz=row.issuer_npwz,
        issuer_profession=row.issuer_profession,
        issued_on=row.issued_on,
        request_id=row.request_id,
        prescriptions=[
            events.IssuedPrescriptionLine(
                key=p.key,
                drug=p.drug,
                packages=p.packages,
                units_per_package=str(p.units_per_package),
                daily_dose_units=str(p.daily_dose_units),
                kind=p.kind,
                valid_from=p.valid_from,
                valid_until=p.valid_until,
                dosage=body.prescriptions[p.position].dosage,
                quantity_text=f"{p.packages} op. po {p.units_per_package.normalize():f}",
            )
            for p in row.prescriptions
        ],
    )


def issue_out(row: PrescriptionPackage) -> schemas.IssueOut:
    return schemas.IssueOut(
        package_id=row.id,
        package_key=row.package_key,
        access_code=row.access_code,
        issued_on=row.issued_on,
        prescriptions=[
            schemas.IssuedPrescriptionOut(
                key=p.key,
                access_code=row.access_code,
                drug=p.drug,
                packages=p.packages,
                kind=schemas.api_kind(p.kind, p.controlled_group)[0],
                extended=schemas.api_kind(p.kind, p.controlled_group)[1],
                controlled_group=p.controlled_group,
                valid_from=p.valid_from,
                valid_until=p.valid_until,
            )
            for p in row.prescriptions
        ],
    )


async def _prescription(session: AsyncSession, facility_id: str, key: str) -> tuple[Prescription, PrescriptionPackage]:
    row = await session.get(Prescription, key, with_for_update=True)
    package = await session.get(PrescriptionPackage, row.package_id) if row is not None else None
    if row is None or package is None or package.facility_id != facility_id:
        raise NotFound("no such prescription")
    return row, package


def prescription_out(row: Prescription, package: PrescriptionPackage) -> schemas.PrescriptionOut:
    return schemas.PrescriptionOut(
        key=row.key,
        package_key=package.package_key,
        drug=row.drug,
        packages=row.packages,
        kind=schemas.api_kind(row.kind, row.controlled_group)[0],
        extended=schemas.api_kind(row.kind, row.controlled_group)[1],
        controlled_group=row.controlled_group,
        valid_from=row.valid_from,
        valid_until=row.valid_until,
        status=row.status,
        issuer_npwz=package.issuer_npwz,
        first_realised_on=row.first_realised_on,
    )


async def get_prescription(session: AsyncSession, facility_id: str, key: str) -> schemas.PrescriptionOut:
    return prescription_out(*await _prescription(session, facility_id, key))


async def cancel_prescription(
    uow: UnitOfWork, facility_id: str, key: str, issuer_npwz: str | None
) -> schemas.PrescriptionOut:
    """Only the issuer cancels, and only before the first realisation (the pharmacy reports it)."""
    row, package = await _prescription(uow.session, facility_id, key)
    if issuer_npwz is not None and package.issuer_npwz != issuer_npwz:
        raise NotFound("no such prescription")  # another practitioner's: do not reveal it
    if row.first_realised_on is not None:
        raise Conflict(
            f"the prescription was first realised on {row.first_realised_on}: it can no longer be cancelled",
            code="already-realised",
        )
    if row.status != "cancelled":
        row.status = "cancelled"
        uow.emit(
            events.PrescriptionCancelled(
                key=row.key,
                package_key=package.package_key,
                patient_pesel=package.patient_pesel,
                issuer_npwz=package.issuer_npwz,
            ),
            facility_id=facility_id,
        )
    await uow.commit()
    return prescription_out(row, package)


async def record_first_realisation(session: AsyncSession, key: str, realised_on: dt.date) -> None:
    """From the pharmacy's realisation events: the earliest day wins, whatever the order they arrive in."""
    row = await session.get(Prescription, key, with_for_update=True)
    if row is not None and (row.first_realised_on is None or realised_on < row.first_realised_on):
        row.first_realised_on = realised_on

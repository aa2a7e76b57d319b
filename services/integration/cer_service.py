"""CeR use cases: signed notifications in, schedule changes out, reconciliation and compliance.

Out: the scheduling service's events (a CeR-published schedule, a booking or cancellation of one of
its slots made here, withdrawn slots, a CeR booking the schedule could not take) become rows of the
CeR queue in the transaction that consumes them; the forwarder sends them in order, retrying while
CeR is unreachable. Local bookings never wait for CeR (DOMAIN.md 6: never send a patient away).

Reconciliation compares CeR's bookings with the local ones. What CeR confirmed and the facility
lacks is booked here (the source's "patient confirmed in CeR, missing at the facility"); what the
facility has and CeR lacks is reported. Each difference is e-mailed to the facility's CeR address
once. Slots with changes still on their way (queued here) are left out: they are not drift.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import sqlalchemy as sa
import structlog
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.integration import cer_scope, domain, events, outgoing, schemas
from services.integration.cer import (
    CerClient,
    CerError,
    CerUnavailable,
    FacilityBooking,
    FacilityCancellation,
    NotificationSettings,
    PublishedSlot,
    Refusal,
    Schedule,
    SlotsWithdrawal,
)
from services.integration.models import (
    CER_BOOK,
    CER_CANCEL,
    CER_PUBLISH_SCHEDULE,
    CER_REFUSE,
    CER_REGISTER_ENDPOINT,
    CER_WITHDRAW_SLOTS,
    PENDING,
    REJECTED,
    SENT,
    CerContract,
    CerCoverageChange,
    CerCoverageRule,
    CerDrift,
    CerNotification,
    CerOutgoing,
    CerSchedule,
    CerSettings,
    CerVisit,
)
from services.scheduling import events as scheduling_events
from services.scheduling.client import SchedulingClient, SchedulingClientError
from services.scheduling.schemas import BookingSource
from shared.auth import Principal
from shared.db import upsert_insert, utcnow
from shared.events import Envelope
from shared.logging import mask_pesel, request_id_var
from shared.outbox import UnitOfWork
from shared.problems import FieldError, ProblemError, Unauthorized, Unprocessable

log = structlog.get_logger("integration.cer")

# Bookings that came from CeR are CeR's already: they are never reported back.
FROM_CER = frozenset({BookingSource.cer_ikp, BookingSource.cer_other_entity, BookingSource.cer_waiting_list})
CHANNEL_SOURCE = {
    "ikp": BookingSource.cer_ikp,
    "other_entity": BookingSource.cer_other_entity,
    "waiting_list": BookingSource.cer_waiting_list,
}
MISSING_LOCALLY = "missing_locally"
MISSING_IN_CER = "missing_in_cer"


# ----------------------------------------------------------------------------- notifications in


_NOBODYS_SECRET = secrets.token_hex(32)


async def accept_notification(
    uow: UnitOfWork,
    facility_id: str,
    raw: bytes,
    timestamp: str | None,
    signature: str | None,
    now: float,
    unseal: Callable[[str], str],
) -> bool:
    """Verify, parse and record a CeR notification; False when its event id was seen before.

    The signature is checked before the body is even parsed: an unsigned caller learns nothing
    about the format. An unknown facility is refused like a bad signature (nothing revealed).
    """
    settings = await uow.session.get(CerSettings, facility_id)
    # An unknown facility goes through the same checks against a secret nobody holds, so its answers
    # (missing headers, a stale timestamp, a bad signature) and their timing are a configured one's.
    secret = unseal(settings.secret) if settings is not None else _NOBODYS_SECRET
    try:
        domain.verify_signature(secret, timestamp, signature, raw, now)
    except domain.SignatureRejected as exc:
        raise Unauthorized(str(exc)) from None
    if settings is None:  # unreachable without the random secret of this process
        raise Unauthorized("the signature does not match")
    try:
        note = schemas.CerNotificationIn.model_validate_json(raw)
    except ValidationError as exc:
        errors = [
            FieldError(field="body." + ".".join(str(p) for p in e["loc"]), message=e["msg"]) for e in exc.errors()
        ]
        raise Unprocessable("the CeR notification is not valid", errors=errors) from None
    if await uow.session.get(CerNotification, (facility_id, note.event_id)) is not None:
        return False
    uow.session.add(
        CerNotification(
            facility_id=facility_id,
            event_id=note.event_id,
            event_type=note.event_type.value,
            occurred_at=note.occurred_at,
            slot_id=note.slot_id,
        )
    )
    uow.emit(
        events.CerNotificationReceived(
            cer_event_id=note.event_id,
            cer_event_type=note.event_type.value,
            occurred_at=note.occurred_at,
            slot_id=note.slot_id,
            patient_pesel=note.patient_pesel,
        ),
        facility_id=facility_id,
        event_id=events.external_event_id("cer", f"{facility_id}:{note.event_id}"),
    )
    try:
        await uow.commit()
    except IntegrityError:  # the same event id committed by a concurrent call
        return False
    return True


# ----------------------------------------------------------------------------- changes out (queued)


def _queue(
    session: AsyncSession,
    facility_id: str,
    kind: str,
    reference: object,
    payload: dict[str, object],
    specialty: str | None = None,
) -> None:
    outgoing.enqueue(session, CerOutgoing, facility_id, kind, str(reference), payload, specialty=specialty)


def concerns_cer(envelope: Envelope) -> bool:
    """Whether a schedule event changes anything CeR holds (read from the payload, before any I/O).
    The one place that decides it: the consumer calls ``queue_*`` only for the events it admits."""
    payload = envelope.payload
    if envelope.type == scheduling_events.BookingCreated.event_type:
        return bool(payload.get("cer_published")) and payload.get("source") not in FROM_CER
    if envelope.type == scheduling_events.BookingCancelled.event_type:
        return bool(payload.get("cer_published")) and not payload.get("by_cer")
    if envelope.type == scheduling_events.BookingMoved.event_type:
        return bool(payload.get("old_cer_published") or payload.get("new_cer_published"))
    if envelope.type == scheduling_events.SchedulePublished.event_type:
        return bool(payload.get("cer_published"))
    return True


def queue_endpoint(session: AsyncSession, row: CerSettings, secret: str) -> None:
    """The administrator's settings go to CeR's panel too: CeR signs with the secret and calls the endpoint."""
    body = NotificationSettings(endpoint=row.endpoint, email=row.email, secret=secret)
    _queue(session, row.facility_id, CER_REGISTER_ENDPOINT, uuid.uuid4(), body.model_dump(mode="json"))


def queue_schedule(session: AsyncSession, facility_id: str, published: scheduling_events.SchedulePublished) -> None:
    session.add(
        CerSchedule(
            schedule_id=published.schedule_id,
            facility_id=facility_id,
            specialty=published.cer_specialty,
        )
    )
    body = Schedule(
        facility_id=facility_id,
        schedule_id=published.schedule_id,
        specialty=published.cer_specialty,
        slots=[PublishedSlot(slot_id=s.slot_id, start=s.start, end=s.end) for s in published.slots],
    )
    _queue(
        session,
        facility_id,
        CER_PUBLISH_SCHEDULE,
        published.schedule_id,
        body.model_dump(mode="json"),
        published.cer_specialty,
    )


class ScheduleNotYetQueued(RuntimeError):
    """A booking of a slot whose schedule's publication this service has not consumed yet: events
    may overtake each other on the bus, and CeR must get the schedule before its bookings. The bus
    delivers the event again after a delay, by when the publication is here."""


def visit_reference(booking_id: uuid.UUID, slot_id: uuid.UUID) -> uuid.UUID:
    """One reference for a booking on one slot, shared by its ``book`` and its ``cancel``: a
    cancellation consumed before its booking is found by it, and the booking is then never sent."""
    return uuid.uuid5(events.EXTERNAL_NAMESPACE, f"cer-visit:{booking_id}:{slot_id}")


async def _visit(session: AsyncSession, facility_id: str, reference: uuid.UUID) -> CerVisit:
    """The visit's row, created if new and locked: its booking and cancellation queue one at a time."""
    insert = upsert_insert(session)
    await session.execute(
        insert(CerVisit)
        .values(reference=reference, facility_id=facility_id, booked=False, cancelled=False)
        .on_conflict_do_nothing(index_elements=[CerVisit.reference])
    )
    return await session.get_one(CerVisit, reference, with_for_update=True, populate_existing=True)


async def queue_booking(session: AsyncSession, facility_id: str, booked: scheduling_events.BookingCreated) -> None:
    await _queue_book(
        session,
        facility_id,
        booked.booking_id,
        booked.slot_id,
        booked.patient_pesel,
        booked.schedule_id,
        booked.cer_specialty,
    )


async def _queue_book(
    session: AsyncSession,
    facility_id: str,
    booking_id: uuid.UUID,
    slot_id: uuid.UUID,
    pesel: str,
    schedule_id: uuid.UUID | None,
    specialty: str | None,
) -> None:
    reference = visit_reference(booking_id, slot_id)
    visit = await _visit(session, facility_id, reference)
    if visit.cancelled or visit.booked:
        return  # already cancelled (the cancellation came first) or already queued
    if schedule_id is not None and await session.get(CerSchedule, schedule_id) is None:
        raise ScheduleNotYetQueued(f"the publication of schedule {schedule_id} has not been consumed yet")
    body = FacilityBooking(facility_id=facility_id, booking_id=booking_id, slot_id=slot_id, patient_pesel=pesel)
    _queue(session, facility_id, CER_BOOK, reference, body.model_dump(mode="json"), specialty)
    visit.booked = True


async def queue_cancellation(
    session: AsyncSession, facility_id: str, cancelled: scheduling_events.BookingCancelled
) -> None:
    await _queue_cancel(
        session, facility_id, cancelled.booking_id, cancelled.slot_id, cancelled.patient_pesel, cancelled.cer_specialty
    )


async def _queue_cancel(
    session: AsyncSession,
    facility_id: str,
    booking_id: uuid.UUID,
    slot_id: uuid.UUID,
    pesel: str,
    specialty: str | None,
) -> None:
    reference = visit_reference(booking_id, slot_id)
    visit = await _visit(session, facility_id, reference)
    if visit.cancelled:
        return
    body = FacilityCancellation(facility_id=facility_id, slot_id=slot_id, patient_pesel=pesel)
    payload = {"booking_id": str(booking_id), **body.model_dump(mode="json")}
    _queue(session, facility_id, CER_CANCEL, reference, payload, specialty)
    visit.cancelled = True


async def queue_move(session: AsyncSession, facility_id: str, moved: scheduling_events.BookingMoved) -> None:
    """A visit moved to a colleague: CeR frees the old slot and books the new one, in that order."""
    if moved.old_cer_published:
        await _queue_cancel(
            session, facility_id, moved.booking_id, moved.old_slot_id, moved.patient_pesel, moved.old_cer_specialty
        )
    if moved.new_cer_published:
        await _queue_book(
            session,
            facility_id,
            moved.booking_id,
            moved.new_slot_id,
            moved.patient_pesel,
            moved.new_schedule_id,
            moved.new_cer_specialty,
        )


def queue_withdrawal(
    session: AsyncSession, facility_id: str, reference: uuid.UUID, withdrawn: scheduling_events.SlotsWithdrawn
) -> None:
    body = SlotsWithdrawal(facility_id=facility_id, slot_ids=withdrawn.slot_ids)
    _queue(session, facility_id, CER_WITHDRAW_SLOTS, reference, body.model_dump(mode="json"), withdrawn.cer_specialty)


def queue_refusal(
    session: AsyncSession, facility_id: str, reference: uuid.UUID, conflict: scheduling_events.CerConflict
) -> None:
    """CeR must hear that its booking was not taken, and who holds the slot here instead."""
    if not conflict.cer_published:
        return  # a slot CeR does not know: nothing to put right there
    body = Refusal(
        facility_id=facility_id,
        slot_id=conflict.slot_id,
        patient_pesel=conflict.patient_pesel,
        cer_event_id=conflict.cer_event_id,
        reason=conflict.reason[:1000],
        held_by_booking_id=conflict.held_by_booking_id,
        held_by_pesel=conflict.held_by_pesel,
    )
    _queue(session, facility_id, CER_REFUSE, reference, body.model_dump(mode="json"))


# ----------------------------------------------------------------------------- the forwarder


def cer_forwarder(
    sessions: async_sessionmaker[AsyncSession],
    new_uow: Callable[[], UnitOfWork],
    cer: CerClient,
    retry_seconds: float,
    retry_max_seconds: float,
    now: Callable[[], dt.datetime] = utcnow,
) -> outgoing.Forwarder[CerOutgoing]:
    """``now``: the service's clock, which dates CeR's acceptance of a schedule (compliance reads it)."""

    async def deliver(item: CerOutgoing) -> None:
        payload = json.loads(item.payload)
        if item.kind == CER_REGISTER_ENDPOINT:
            await cer.register_endpoint(item.facility_id, NotificationSettings.model_validate(payload))
        elif item.kind == CER_PUBLISH_SCHEDULE:
            await cer.publish_schedule(Schedule.model_validate(payload))
        elif item.kind == CER_WITHDRAW_SLOTS:
            await cer.withdraw_slots(SlotsWithdrawal.model_validate(payload))
        elif item.kind == CER_BOOK:
            await cer.report_booking(FacilityBooking.model_validate(payload))
        elif item.kind == CER_CANCEL:
            booking_id = uuid.UUID(payload.pop("booking_id"))
            await cer.report_cancellation(booking_id, FacilityCancellation.model_validate(payload))
        elif item.kind == CER_REFUSE:
            await cer.refuse_booking(Refusal.model_validate(payload))
        else:
            raise CerError(f"unknown kind {item.kind!r}")

    async def settled(uow: UnitOfWork, row: CerOutgoing, error: str | None) -> None:
        if error is None:
            await _accepted(uow.session, row, now())
            return
        payload = json.loads(row.payload)
        log.error("cer_change_rejected", kind=row.kind, reference=row.reference, reason=error)
        if row.kind == CER_BOOK and await _refusal_waiting(uow.session, payload):
            return  # the refusal queued behind it gives CeR this very booking: no false alarm
        settings = await uow.session.get(CerSettings, row.facility_id)
        slot = payload.get("slot_id")
        uow.emit(
            events.CerSyncFailed(
                failure=f"CeR odrzucił zmianę ({_KIND_PL.get(row.kind, row.kind)}): {error}",
                email=settings.email if settings else None,
                slot_id=uuid.UUID(slot) if slot else None,
            ),
            facility_id=row.facility_id,
        )

    return outgoing.Forwarder(
        sessions, new_uow, CerOutgoing, deliver, CerUnavailable, retry_seconds, retry_max_seconds, settled
    )


async def _refusal_waiting(session: AsyncSession, booked: dict[str, str]) -> bool:
    """A refusal of CeR's booking of this slot, naming this desk booking as the holder, still queued."""
    waiting = await session.scalars(
        sa.select(CerOutgoing.payload).where(
            CerOutgoing.facility_id == booked["facility_id"],
            CerOutgoing.kind == CER_REFUSE,
            CerOutgoing.status == PENDING,
        )
    )
    for payload in waiting:
        refusal = Refusal.model_validate_json(payload)
        if str(refusal.slot_id) == booked["slot_id"] and str(refusal.held_by_booking_id) == booked["booking_id"]:
            return True
    return False


async def _accepted(session: AsyncSession, row: CerOutgoing, now: dt.datetime) -> None:
    if row.kind == CER_REGISTER_ENDPOINT:
        # CeR has the secret now; the queue keeps no copy of it (the settings table keeps the one).
        sent = NotificationSettings.model_validate_json(row.payload)
        row.payload = json.dumps({"endpoint": sent.endpoint, "email": sent.email})
    elif row.kind == CER_PUBLISH_SCHEDULE:
        await session.execute(
            sa.update(CerSchedule).where(CerSchedule.schedule_id == uuid.UUID(row.reference)).values(accepted_at=now)
        )
    elif row.kind == CER_REFUSE:
        # The desk's own booking of the slot, refused by CeR while CeR's patient still held it, is in
        # CeR now: the refusal gave the slot to it.
        refusal = Refusal.model_validate_json(row.payload)
        if refusal.held_by_booking_id is not None:
            await session.execute(
                sa.update(CerOutgoing)
                .where(
                    CerOutgoing.kind == CER_BOOK,
                    CerOutgoing.reference == str(visit_reference(refusal.held_by_booking_id, refusal.slot_id)),
                    CerOutgoing.status == REJECTED,
                )
                .values(status=SENT, sent_at=utcnow())
            )


_KIND_PL = {
    CER_REGISTER_ENDPOINT: "adres powiadomień",
    CER_PUBLISH_SCHEDULE: "publikacja harmonogramu",
    CER_WITHDRAW_SLOTS: "wycofanie terminów",
    CER_BOOK: "rezerwacja w placówce",
    CER_CANCEL: "odwołanie wizyty",
    CER_REFUSE: "odmowa rezerwacji z CeR",
}


# ----------------------------------------------------------------------------- reconciliation


@dataclass
class Reconciler:
    sessions: async_sessionmaker[AsyncSession]
    new_uow: Callable[[], UnitOfWork]
    cer: CerClient
    scheduling: SchedulingClient
    timezone: str

    async def reconcile_all(self) -> int:
        async with self.sessions() as session:
            facilities = list(await session.scalars(sa.select(CerSettings.facility_id)))
        differences = 0
        for facility_id in facilities:
            try:
                found = await self.reconcile(facility_id)
            except ProblemError as exc:
                log.warning("cer_reconciliation_skipped", facility_id=facility_id, reason=exc.detail)
                continue
            differences += len(found.missing_locally) + len(found.missing_in_cer)
        return differences

    async def reconcile(self, facility_id: str) -> schemas.ReconcileOut:
        since = dt.datetime.combine(
            dt.datetime.now(ZoneInfo(self.timezone)).date(), dt.time(0), ZoneInfo(self.timezone)
        )
        try:
            in_cer = [b for b in await self.cer.bookings(facility_id) if b.start >= since]
        except CerError as exc:
            raise ProblemError(
                f"CeR could not answer: {exc.message}; try again later", status=503, code="cer-unavailable"
            ) from exc
        try:
            local = await self.scheduling.bookings(facility_id, cer_published=True, start_from=since)
        except SchedulingClientError as exc:
            raise ProblemError(
                f"the scheduling service could not answer: {exc}; try again later",
                status=503,
                code="scheduling-unavailable",
            ) from exc
        in_flight = await self._slots_in_flight(facility_id)
        found = domain.drift(
            [
                domain.BookedVisit(b.slot_id, b.patient_pesel, str(b.cer_booking_id), b.start, b.channel)
                for b in in_cer
                if b.slot_id not in in_flight
            ],
            [
                domain.BookedVisit(b.slot_id, b.patient_pesel, str(b.id), b.start or since)
                for b in local
                if b.slot_id not in in_flight
            ],
        )
        # A refused repair is not replayed once the slot's holder here has changed (a new key then).
        holders = {b.slot_id: str(b.id) for b in local}
        missing_locally = [
            await self._repair(facility_id, visit, holders.get(visit.slot_id, "free"))
            for visit in found.missing_locally
        ]
        missing_in_cer = [
            _item(v, repaired=False, reason="booked at the facility, unknown to CeR") for v in found.missing_in_cer
        ]
        await self._report(facility_id, missing_locally, missing_in_cer)
        return schemas.ReconcileOut(
            missing_locally=missing_locally,
            missing_in_cer=missing_in_cer,
            repaired=sum(1 for item in missing_locally if item.repaired),
            checked_at=utcnow(),
        )

    async def _slots_in_flight(self, facility_id: str) -> set[uuid.UUID]:
        async with self.sessions() as session:
            payloads = await session.scalars(
                sa.select(CerOutgoing.payload).where(
                    CerOutgoing.facility_id == facility_id,
                    CerOutgoing.status == PENDING,
                    CerOutgoing.kind.in_((CER_BOOK, CER_CANCEL, CER_REFUSE)),
                )
            )
            return {uuid.UUID(json.loads(p)["slot_id"]) for p in payloads}

    async def _repair(self, facility_id: str, visit: domain.BookedVisit, holder: str) -> schemas.DriftItem:
        source = CHANNEL_SOURCE.get(visit.channel)
        if source is None:
            return _item(visit, repaired=False, reason="booked by the facility in CeR, not booked here: check it")
        try:
            booked = await self.scheduling.book(
                facility_id,
                visit.slot_id,
                visit.patient_pesel,
                idempotency_key=f"cer-reconcile:{visit.reference}:{holder}",
                source=source,
            )
        except SchedulingClientError as exc:
            return _item(visit, repaired=False, reason=f"could not be booked here: {exc.message}")
        if booked is None:
            return _item(visit, repaired=False, reason="the slot is taken here by another patient or not available")
        log.info("cer_booking_repaired", slot_id=str(visit.slot_id), patient=mask_pesel(visit.patient_pesel))
        return _item(visit, repaired=True, reason=None)

    async def _report(
        self, facility_id: str, missing_locally: list[schemas.DriftItem], missing_in_cer: list[schemas.DriftItem]
    ) -> None:
        """Each difference once: a drift the periodic job sees again every run is not mailed again."""
        found = [(MISSING_LOCALLY, i) for i in missing_locally] + [(MISSING_IN_CER, i) for i in missing_in_cer]
        if not found:
            return
        async with self.new_uow() as uow:
            new: list[tuple[str, schemas.DriftItem]] = []
            for kind, item in found:
                if await uow.session.get(CerDrift, (facility_id, kind, item.reference)) is None:
                    uow.session.add(
                        CerDrift(
                            facility_id=facility_id,
                            kind=kind,
                            reference=item.reference,
                            slot_id=item.slot_id,
                            detail=(item.reason or "repaired")[:400],
                            repaired=item.repaired,
                        )
                    )
                    new.append((kind, item))
            if new:
                settings = await uow.session.get(CerSettings, facility_id)
                uow.emit(
                    events.CerSyncFailed(
                        failure=_drift_text(new),
                        email=settings.email if settings else None,
                        slot_id=new[0][1].slot_id if len(new) == 1 else None,
                        start=new[0][1].start if len(new) == 1 else None,
                    ),
                    facility_id=facility_id,
                )
            try:
                await uow.commit()
            except IntegrityError:
                return  # another replica reported the same differences this moment


def _item(visit: domain.BookedVisit, *, repaired: bool, reason: str | None) -> schemas.DriftItem:
    return schemas.DriftItem(
        slot_id=visit.slot_id,
        patient_pesel=visit.patient_pesel,
        start=visit.start,
        reference=visit.reference,
        channel=visit.channel,
        repaired=repaired,
        reason=reason,
    )


def _drift_text(new: list[tuple[str, schemas.DriftItem]]) -> str:
    lines = []
    for kind, item in new[:20]:
        when = item.start.astimezone(ZoneInfo("Europe/Warsaw")).strftime("%Y-%m-%d %H:%M")
        if kind == MISSING_LOCALLY:
            state = "dopisana do harmonogramu" if item.repaired else f"NIE dopisana ({item.reason})"
            lines.append(f"wizyta {when} potwierdzona w CeR, brak w placówce: {state}")
        else:
            lines.append(f"wizyta {when} zapisana w placówce, brak w CeR")
    more = f"; i {len(new) - 20} innych" if len(new) > 20 else ""
    return "uzgodnienie z CeR wykazało różnice: " + "; ".join(lines) + more


# ----------------------------------------------------------------------------- the dated CeR table

SEED, OPERATOR = "seed", "operator"


async def _corrections(session: AsyncSession) -> list[CerCoverageRule]:
    """The operators' corrections (revision 0 rows only hold a lock: their values are the seed's)."""
    return list(await session.scalars(sa.select(CerCoverageRule).where(CerCoverageRule.revision > 0)))


def _coverage(row: CerCoverageRule) -> cer_scope.Coverage:
    return cer_scope.Coverage(cer_scope.CerSpecialty(row.specialty), row.covered_from, row.source, row.draft)


async def coverage_table(session: AsyncSession) -> dict[cer_scope.CerSpecialty, cer_scope.Coverage]:
    """The seed with the operators' corrections in place: what CeR covers from when, today."""
    return cer_scope.effective(_coverage(row) for row in await _corrections(session))


async def coverage_view(session: AsyncSession) -> list[schemas.CoverageOut]:
    corrected = {row.specialty: row for row in await _corrections(session)}
    views = []
    for specialty, entry in (await coverage_table(session)).items():
        row = corrected.get(specialty)
        views.append(
            schemas.CoverageOut(
                specialty=specialty,
                covered_from=entry.covered_from,
                source=entry.source,
                draft=entry.draft,
                origin=OPERATOR if row else SEED,
                revision=row.revision if row else 0,
                changed_by=row.changed_by if row else None,
                changed_at=row.changed_at if row else None,
            )
        )
    return views


def _duplicates(entries: list[schemas.CoverageIn]) -> list[FieldError]:
    seen: set[str] = set()
    errors = []
    for index, entry in enumerate(entries):
        if entry.specialty in seen:
            errors.append(FieldError(field=f"body.{index}.specialty", message="named twice in one change"))
        seen.add(entry.specialty)
    return errors


async def correct_coverage(
    uow: UnitOfWork, entries: list[schemas.CoverageIn], who: Principal, now: dt.datetime
) -> list[schemas.CoverageOut]:
    """An operator corrects (or confirms) entries of the table. Each real change is kept in the
    history with who, when, the old and the new values, and told to the scheduling service."""
    if errors := _duplicates(entries):
        raise Unprocessable("each specialty may be named once", errors=errors)
    session = uow.session
    seed = cer_scope.effective()
    insert = upsert_insert(session)
    for entry in sorted(entries, key=lambda e: e.specialty):  # one lock order: no deadlock between operators
        base = seed[entry.specialty]
        await session.execute(
            insert(CerCoverageRule)
            .values(
                specialty=str(entry.specialty),
                covered_from=base.covered_from,
                source=base.source,
                draft=base.draft,
                revision=0,
            )
            .on_conflict_do_nothing(index_elements=[CerCoverageRule.specialty])
        )
        row = await session.get_one(CerCoverageRule, str(entry.specialty), with_for_update=True, populate_existing=True)
        old = base if row.revision == 0 else _coverage(row)
        new = cer_scope.Coverage(entry.specialty, entry.covered_from, entry.source, entry.draft)
        if new == old:
            continue  # confirmed as it is: nothing changed, nothing to record
        session.add(
            CerCoverageChange(
                specialty=str(entry.specialty),
                revision=row.revision + 1,
                old_covered_from=old.covered_from,
                old_source=old.source,
                old_draft=old.draft,
                old_origin=SEED if row.revision == 0 else OPERATOR,
                new_covered_from=new.covered_from,
                new_source=new.source,
                new_draft=new.draft,
                changed_by=who.sub,
                changed_role=str(who.role),
                changed_at=now,
                request_id=request_id_var.get(),
            )
        )
        row.covered_from, row.source, row.draft = new.covered_from, new.source, new.draft
        row.revision += 1
        row.changed_by, row.changed_role, row.changed_at = who.sub, str(who.role), now
        uow.emit(
            events.CerCoverageChanged(
                specialty=str(entry.specialty),
                covered_from=new.covered_from,
                source=new.source,
                draft=new.draft,
                revision=row.revision,
            ),
            facility_id=None,
            event_id=events.external_event_id("cer-coverage", f"{entry.specialty}:{row.revision}"),
        )
    await uow.commit()
    log.info("cer_coverage_corrected", by=who.sub, specialties=[str(e.specialty) for e in entries])
    return await coverage_view(session)


async def coverage_history(session: AsyncSession, limit: int) -> list[schemas.CoverageChangeOut]:
    rows = await session.scalars(sa.select(CerCoverageChange).order_by(CerCoverageChange.id.desc()).limit(limit))
    return [
        schemas.CoverageChangeOut(
            specialty=cer_scope.CerSpecialty(r.specialty),
            revision=r.revision,
            changed_at=r.changed_at,
            changed_by=r.changed_by,
            changed_role=r.changed_role,
            request_id=r.request_id,
            old_origin=r.old_origin,
            old=schemas.CoverageValues(covered_from=r.old_covered_from, source=r.old_source, draft=r.old_draft),
            new=schemas.CoverageValues(covered_from=r.new_covered_from, source=r.new_source, draft=r.new_draft),
        )
        for r in rows
    ]


# ----------------------------------------------------------------------------- NFZ contracts


def _contracts_view(row: CerContract | None) -> schemas.ContractsOut:
    if row is None:
        return schemas.ContractsOut(specialties=[], declared_by=None, declared_at=None)
    held = set(row.specialties)
    return schemas.ContractsOut(
        specialties=[s for s in cer_scope.CerSpecialty if s in held],
        declared_by=row.declared_by,
        declared_at=row.declared_at,
    )


async def contracts(session: AsyncSession, facility_id: str) -> schemas.ContractsOut:
    return _contracts_view(await session.get(CerContract, facility_id))


async def declare_contracts(
    uow: UnitOfWork, facility_id: str, data: schemas.ContractsIn, declared_by: str, now: dt.datetime
) -> schemas.ContractsOut:
    """The facility's NFZ contracts in CeR specialties, replaced whole in one upsert."""
    held = sorted({str(s) for s in data.specialties})
    insert = upsert_insert(uow.session)
    values = {"specialties": held, "declared_by": declared_by, "declared_at": now}
    await uow.session.execute(
        insert(CerContract)
        .values(facility_id=facility_id, **values)
        .on_conflict_do_update(index_elements=[CerContract.facility_id], set_=values)
    )
    await uow.commit()
    return _contracts_view(await uow.session.get(CerContract, facility_id, populate_existing=True))


# ----------------------------------------------------------------------------- compliance


async def compliance(session: AsyncSession, facility_id: str, today: dt.date) -> schemas.ComplianceOut:
    """Every specialty of the dated table, with its own dates; the facility's contracts decide
    which ones apply to it."""
    schedules = {
        specialty: (count, first)
        for specialty, count, first in (
            await session.execute(
                sa.select(CerSchedule.specialty, sa.func.count(), sa.func.min(CerSchedule.accepted_at))
                .where(CerSchedule.facility_id == facility_id)
                .group_by(CerSchedule.specialty)
            )
        ).all()
    }
    unsent: dict[str | None, int] = {
        specialty: int(count)
        for specialty, count in (
            await session.execute(
                sa.select(CerOutgoing.specialty, sa.func.count())
                .where(CerOutgoing.facility_id == facility_id, CerOutgoing.status.in_((PENDING, REJECTED)))
                .group_by(CerOutgoing.specialty)
            )
        ).all()
    }
    held = set((await contracts(session, facility_id)).specialties)
    warsaw = ZoneInfo("Europe/Warsaw")
    specialties = []
    for specialty, entry in (await coverage_table(session)).items():
        count, first = schedules.get(specialty, (0, None))
        first_on = outgoing.as_utc(first).astimezone(warsaw).date() if first is not None else None
        found = domain.specialty_compliance(entry, specialty in held, count, first_on, unsent.get(specialty, 0), today)
        specialties.append(schemas.SpecialtyComplianceOut.from_domain(found))
    return schemas.ComplianceOut(today=today, specialties=specialties)

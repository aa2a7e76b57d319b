"""CeR notifications applied to the local schedule (DOMAIN.md 6): a booking made through IKP /
mojeIKP, by another entity or from the waiting list takes the slot for the patient; an IKP
cancellation frees it. Notifications may come twice (the inbox drops the second) or out of order
(the newest applied per slot and patient wins, an older one is stale; at the same instant a
cancellation wins over its booking). A slot a desk booking took first is never given to a second
patient: the conflict is recorded and reported.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from services.integration.events import CerCoverageChanged, CerNotificationReceived
from services.scheduling import domain, events, schemas, service
from services.scheduling.models import BOOKED, Booking, CerCoverage, CerSlotState, Slot
from shared.app import ServiceContext
from shared.audit import Actor
from shared.db import upsert_insert
from shared.events import Envelope
from shared.outbox import UnitOfWork, already_processed
from shared.problems import ProblemError

SOURCES = {
    "booking_created_ikp": schemas.BookingSource.cer_ikp,
    "booking_created_other_entity": schemas.BookingSource.cer_other_entity,
    "booking_created_waiting_list": schemas.BookingSource.cer_waiting_list,
}
CANCELLED_IKP = domain.CER_CANCELLATION
SUBSCRIPTION = "scheduling-cer"
COVERAGE_SUBSCRIPTION = "scheduling-cer-coverage"


async def apply(new_uow: Callable[[], UnitOfWork], inbox_model: type[Any], envelope: Envelope) -> str:
    """What happened: applied, duplicate, stale or conflict."""
    facility = envelope.facility_id or ""
    note = CerNotificationReceived.model_validate(envelope.payload)
    async with new_uow() as uow:
        if await already_processed(uow.session, inbox_model, SUBSCRIPTION, envelope.id):
            return "duplicate"
        key = (facility, note.slot_id, note.patient_pesel)
        state = await uow.session.get(CerSlotState, key, with_for_update=True)
        if state is not None and domain.cer_notification_stale(
            state.last_event_type, state.last_occurred_at, note.cer_event_type, note.occurred_at
        ):
            await uow.commit()
            return "stale"
        _remember(uow, state, key, note)
        if note.cer_event_type == CANCELLED_IKP:
            booking = await _active_booking(uow, facility, note.slot_id, note.patient_pesel)
            if booking is None:
                await uow.commit()  # nothing booked yet: a late booking will be stale
            else:
                await service.cancel(
                    uow, facility, booking, by_cer=True, who=Actor.system("cer", facility), now=note.occurred_at
                )
                await uow.commit()
            return "applied"
        if await _active_booking(uow, facility, note.slot_id, note.patient_pesel) is not None:
            await uow.commit()  # already this patient's (a desk copy of the same visit)
            return "applied"
        body = schemas.BookingIn(
            slot_id=note.slot_id, patient_pesel=note.patient_pesel, source=SOURCES[note.cer_event_type]
        )
        try:
            # Booked in CeR at ``occurred_at``: a notification that arrives after the visit began still counts.
            await service.book(uow, facility, body, note.occurred_at, who=Actor.system("cer", facility))
            return "applied"
        except ProblemError as exc:
            reason = exc.detail
    await _conflict(new_uow, inbox_model, envelope, note, facility, reason)
    return "conflict"


async def _holder(uow: UnitOfWork, facility: str, slot_id: uuid.UUID) -> tuple[uuid.UUID | None, str | None]:
    """Who holds the slot in this facility: a notification naming another facility's slot learns nothing."""
    row = (
        await uow.session.execute(
            sa.select(Booking.id, Booking.patient_pesel).where(
                Booking.facility_id == facility, Booking.slot_id == slot_id, Booking.status == BOOKED
            )
        )
    ).first()
    return (row[0], row[1]) if row else (None, None)


async def _published(uow: UnitOfWork, facility: str, slot_id: uuid.UUID) -> bool:
    slot = await uow.session.get(Slot, slot_id)
    return (
        slot is not None
        and slot.facility_id == facility
        and (await service.cer_publication(uow.session, slot)).published
    )


def _remember(
    uow: UnitOfWork, state: CerSlotState | None, key: tuple[str, uuid.UUID, str], note: CerNotificationReceived
) -> CerSlotState:
    if state is None:
        state = CerSlotState(facility_id=key[0], slot_id=key[1], patient_pesel=key[2])
        uow.session.add(state)
    state.last_event_type = note.cer_event_type
    state.last_occurred_at = note.occurred_at
    return state


async def _active_booking(uow: UnitOfWork, facility: str, slot_id: uuid.UUID, pesel: str) -> uuid.UUID | None:
    found: uuid.UUID | None = await uow.session.scalar(
        sa.select(Booking.id).where(
            Booking.facility_id == facility,
            Booking.slot_id == slot_id,
            Booking.patient_pesel == pesel,
            Booking.status == BOOKED,
        )
    )
    return found


async def _conflict(
    new_uow: Callable[[], UnitOfWork],
    inbox_model: type[Any],
    envelope: Envelope,
    note: CerNotificationReceived,
    facility: str,
    reason: str,
) -> None:
    """The booking failed and rolled back: record the event, the state and the conflict anew."""
    async with new_uow() as uow:
        if await already_processed(uow.session, inbox_model, SUBSCRIPTION, envelope.id):
            return
        key = (facility, note.slot_id, note.patient_pesel)
        state = _remember(uow, await uow.session.get(CerSlotState, key, with_for_update=True), key, note)
        state.conflict = reason[:300]
        held_by, held_by_pesel = await _holder(uow, facility, note.slot_id)
        uow.emit(
            events.CerConflict(
                slot_id=note.slot_id,
                patient_pesel=note.patient_pesel,
                cer_event_id=note.cer_event_id,
                reason=reason,
                held_by_booking_id=held_by,
                held_by_pesel=held_by_pesel,
                cer_published=await _published(uow, facility, note.slot_id),
            ),
            facility_id=facility,
        )
        await uow.commit()


async def replicate_coverage(new_uow: Callable[[], UnitOfWork], inbox_model: type[Any], envelope: Envelope) -> None:
    """An operator's correction of the dated CeR table, kept here so that a schedule's creation
    asks no other service. One upsert that only ever raises the revision: a correction that
    arrives after a newer one (or twice) changes nothing."""
    change = CerCoverageChanged.model_validate(envelope.payload)
    async with new_uow() as uow:
        if await already_processed(uow.session, inbox_model, COVERAGE_SUBSCRIPTION, envelope.id):
            return
        values = {
            "covered_from": change.covered_from,
            "source": change.source,
            "draft": change.draft,
            "revision": change.revision,
        }
        insert = upsert_insert(uow.session)(CerCoverage).values(specialty=change.specialty, **values)
        await uow.session.execute(
            insert.on_conflict_do_update(
                index_elements=[CerCoverage.specialty],
                set_=values,
                where=CerCoverage.revision < insert.excluded.revision,
            )
        )
        await uow.commit()


def subscribe(ctx: ServiceContext) -> None:
    async def handle(envelope: Envelope) -> None:
        await apply(ctx.uow, ctx.inbox_model, envelope)

    async def coverage(envelope: Envelope) -> None:
        await replicate_coverage(ctx.uow, ctx.inbox_model, envelope)

    ctx.bus.subscribe(SUBSCRIPTION, [CerNotificationReceived.event_type], handle)
    ctx.bus.subscribe(COVERAGE_SUBSCRIPTION, [CerCoverageChanged.event_type], coverage)

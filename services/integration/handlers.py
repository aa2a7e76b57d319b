"""Event consumers: each applies its event once (inbox) in the transaction of its effect."""

from __future__ import annotations

from services.integration import cer_service, service
from services.integration.events import CerSyncFailed
from services.integration.models import (
    CANCEL_PRESCRIPTION,
    RECORD_REALISATION,
    REGISTER_PACKAGE,
    CerSettings,
    OrderingStatus,
)
from services.pharmacy.dispensing import RealisationRecorded
from services.prescriptions.events import PrescriptionCancelled, PrescriptionIssued, SettingsChanged
from services.scheduling.events import (
    BookingCancelled,
    BookingCreated,
    BookingMoved,
    CerConflict,
    SchedulePublished,
    SlotsWithdrawn,
)
from shared.app import ServiceContext
from shared.events import Envelope
from shared.outbox import already_processed
from shared.periodic import Periodic

SUBSCRIPTION = "integration"
CER_SUBSCRIPTION = "integration-cer"


def _registration(facility_id: str, issued: PrescriptionIssued) -> dict[str, object]:
    """The P1 registration of a package, in the wire format of ``p1.PackageRegistration``."""
    return {
        "package_key": issued.package_key,
        "access_code": issued.access_code,
        "patient_pesel": issued.patient_pesel,
        "facility_id": facility_id,
        "issuer_npwz": issued.issuer_npwz,
        "issued_on": issued.issued_on.isoformat(),
        "prescriptions": [
            {
                "key": p.key,
                "drug": p.drug,
                "packages": p.packages,
                "units_per_package": p.units_per_package,
                "daily_dose_units": p.daily_dose_units,
                "kind": p.kind,
                "valid_from": p.valid_from.isoformat(),
                "valid_until": p.valid_until.isoformat(),
            }
            for p in issued.prescriptions
        ],
    }


def subscribe(ctx: ServiceContext) -> None:
    async def report_conflict(envelope: Envelope) -> None:
        """A CeR booking the schedule could not take: the facility's CeR address is told by e-mail."""
        conflict = CerConflict.model_validate(envelope.payload)
        async with ctx.uow() as uow:
            if await already_processed(uow.session, ctx.inbox_model, SUBSCRIPTION, envelope.id):
                return
            settings = await uow.session.get(CerSettings, envelope.facility_id or "")
            failed = CerSyncFailed(
                failure=(
                    "Rezerwacja z CeR nie mogła zostać zapisana w harmonogramie placówki "
                    f"({conflict.reason}); skontaktuj się z pacjentem i uzgodnij termin."
                ),
                email=settings.email if settings else None,
                slot_id=conflict.slot_id,
            )
            uow.emit(failed, facility_id=envelope.facility_id)
            cer_service.queue_refusal(uow.session, envelope.facility_id or "", envelope.id, conflict)
            await uow.commit()
        _wake(ctx, "cer_forwarding")

    async def handle(envelope: Envelope) -> None:
        if envelope.type == CerConflict.event_type:
            await report_conflict(envelope)
            return
        facility = envelope.facility_id or ""
        queued = False
        async with ctx.sessions() as session, session.begin():
            if await already_processed(session, ctx.inbox_model, SUBSCRIPTION, envelope.id):
                return
            if envelope.type == RealisationRecorded.event_type:
                realised = RealisationRecorded.model_validate(envelope.payload)
                report = {
                    "key": realised.key,
                    "realisation_id": str(realised.realisation_id),
                    "pharmacy_id": realised.pharmacy_id,
                    "packages": realised.packages,
                    "realised_on": realised.realised_on.isoformat(),
                    "outage": realised.outage,
                }
                # The pharmacy is the tenant of its realisations.
                service.queue(session, realised.pharmacy_id, RECORD_REALISATION, str(realised.realisation_id), report)
                queued = True
            elif not facility:
                return
            elif envelope.type == PrescriptionIssued.event_type:
                issued = PrescriptionIssued.model_validate(envelope.payload)
                service.queue(session, facility, REGISTER_PACKAGE, issued.package_key, _registration(facility, issued))
                queued = True
            elif envelope.type == PrescriptionCancelled.event_type:
                cancelled = PrescriptionCancelled.model_validate(envelope.payload)
                service.queue(session, facility, CANCEL_PRESCRIPTION, cancelled.key, {"key": cancelled.key})
                queued = True
            elif envelope.type == SettingsChanged.event_type:
                changed = SettingsChanged.model_validate(envelope.payload)
                row = await session.get(OrderingStatus, facility, with_for_update=True)
                if row is None or row.changed_at <= envelope.occurred_at:
                    row = row or OrderingStatus(facility_id=facility)
                    row.mode = changed.mode
                    row.activated_on = changed.activated_on
                    row.active_until = changed.active_until
                    row.changed_at = envelope.occurred_at
                    session.add(row)
        if queued:
            _wake(ctx, "forwarding")

    async def schedule_changed(envelope: Envelope) -> None:
        """A change of the local schedule that CeR must hear of, queued in the inbox transaction."""
        facility = envelope.facility_id
        if not facility or not cer_service.concerns_cer(envelope):
            return  # most bookings are not CeR's: no transaction at all for them
        async with ctx.uow() as uow:
            if await already_processed(uow.session, ctx.inbox_model, CER_SUBSCRIPTION, envelope.id):
                return
            session, ref = uow.session, envelope.id
            if envelope.type == SchedulePublished.event_type:
                cer_service.queue_schedule(session, facility, SchedulePublished.model_validate(envelope.payload))
            elif envelope.type == BookingCreated.event_type:
                await cer_service.queue_booking(session, facility, BookingCreated.model_validate(envelope.payload))
            elif envelope.type == BookingCancelled.event_type:
                cancelled = BookingCancelled.model_validate(envelope.payload)
                await cer_service.queue_cancellation(session, facility, cancelled)
            elif envelope.type == BookingMoved.event_type:
                await cer_service.queue_move(session, facility, BookingMoved.model_validate(envelope.payload))
            elif envelope.type == SlotsWithdrawn.event_type:
                cer_service.queue_withdrawal(session, facility, ref, SlotsWithdrawn.model_validate(envelope.payload))
            await uow.commit()
        _wake(ctx, "cer_forwarding")

    ctx.bus.subscribe(
        CER_SUBSCRIPTION,
        [
            SchedulePublished.event_type,
            BookingCreated.event_type,
            BookingCancelled.event_type,
            BookingMoved.event_type,
            SlotsWithdrawn.event_type,
        ],
        schedule_changed,
    )
    ctx.bus.subscribe(
        SUBSCRIPTION,
        [
            PrescriptionIssued.event_type,
            PrescriptionCancelled.event_type,
            SettingsChanged.event_type,
            RealisationRecorded.event_type,
            CerConflict.event_type,
        ],
        handle,
    )


def _wake(ctx: ServiceContext, task: str) -> None:
    periodic: Periodic = ctx.extras[task]
    periodic.wake.set()

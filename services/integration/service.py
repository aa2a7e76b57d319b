"""IKP integration use cases and the passes that talk to P1 on their own.

P1 is asked between short transactions (polling, forwarding, confirming), so no database lock
waits on the network - except enabling, which holds the facility's row while P1 answers so that two
administrators clicking at once send P1 one request. Polling moves P1's cursor and writes the
item events in one transaction: a crash between the two cannot lose or repeat an item, and the
event ids are derived from P1's item ids, so even a second replica's copy is dropped by the
consumer's inbox.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.integration import domain, events, outgoing, schemas
from services.integration.models import (
    CANCEL_PRESCRIPTION,
    DISABLE_IKP,
    IKP_ENABLED,
    IKP_OFF,
    IKP_PENDING,
    PENDING,
    RECORD_REALISATION,
    REGISTER_PACKAGE,
    IkpIntegration,
    OrderingStatus,
    P1Outgoing,
)
from services.integration.p1 import (
    IkpBatch,
    P1Client,
    P1Error,
    P1Refused,
    P1Unavailable,
    PackageRegistration,
    RealisationReport,
)
from services.scheduling.client import SchedulingClient, SchedulingClientError
from shared.db import utcnow
from shared.outbox import UnitOfWork
from shared.problems import FieldError, ProblemError, Unprocessable

log = structlog.get_logger("integration.ikp")
T = TypeVar("T")


def _p1_down(exc: P1Error) -> ProblemError:
    return ProblemError(
        f"P1 (gabinet.gov.pl) is unavailable: {exc.message}; try again later", status=503, code="p1-unavailable"
    )


def status_out(row: IkpIntegration | None) -> schemas.IkpStatusOut:
    if row is None:
        return schemas.IkpStatusOut(
            status=IKP_OFF,
            requested_at=None,
            enabled_at=None,
            poller_npwz=None,
            location_id=None,
            department_code=None,
            polling=False,
            last_polled_at=None,
        )
    return schemas.IkpStatusOut(
        status=row.status,
        requested_at=row.requested_at,
        enabled_at=row.enabled_at,
        poller_npwz=row.poller_npwz,
        location_id=row.location_id,
        department_code=row.department_code,
        polling=row.status == IKP_ENABLED and row.poller_npwz is not None,
        last_polled_at=row.last_polled_at,
    )


# ----------------------------------------------------------------------------- prerequisites and poller


@dataclass
class Ikp:
    """The IKP use cases; clients to P1 and scheduling come from the app."""

    sessions: async_sessionmaker[AsyncSession]
    p1: P1Client
    scheduling: SchedulingClient

    async def missing_prerequisites(self, facility_id: str, today: dt.date) -> list[FieldError]:
        missing = []
        async with self.sessions() as session:
            ordering = await session.get(OrderingStatus, facility_id)
        active = (
            ordering is not None
            and ordering.activated_on is not None
            and ordering.active_until is not None
            and ordering.activated_on <= today <= ordering.active_until
        )
        if not active:
            missing.append(
                FieldError(
                    field="prescription_ordering",
                    message="online prescription ordering is not active: activate it in the prescriptions settings",
                )
            )
        work_types = await self._scheduling(self.scheduling.work_types(facility_id))
        if not any(w.visible_online for w in work_types):
            missing.append(
                FieldError(
                    field="online_registration",
                    message="online registration is off: no work type is visible online; make one visible online",
                )
            )
        return missing

    async def candidates(self, facility_id: str) -> schemas.PollerCandidatesOut:
        """Practitioners with an NPWZ working at a location with a department code; else what is missing."""
        practitioners = await self._scheduling(self.scheduling.practitioners(facility_id))
        locations = {loc.id: loc for loc in await self._scheduling(self.scheduling.locations(facility_id))}
        coded = {lid for lid, loc in locations.items() if loc.department_code}
        found: list[schemas.PollerCandidate] = []
        for p in practitioners:
            if not p.npwz:
                continue
            slots = await self._scheduling(self.scheduling.slots(facility_id, practitioner_id=p.id, limit=2000))
            where = sorted({s.location_id for s in slots if s.location_id in coded}, key=str)
            if where:
                code = locations[where[0]].department_code or ""
                found.append(
                    schemas.PollerCandidate(
                        practitioner_id=p.id, npwz=p.npwz, name=p.name, location_id=where[0], department_code=code
                    )
                )
        missing = None
        if not found:
            if not practitioners:
                missing = "no practitioner with an NPWZ: fill in the NPWZ on the practitioner's record"
            elif not coded:
                missing = "no location has a department code (część VII kodu resortowego): fill it in on the location"
            else:
                missing = "no practitioner with an NPWZ has a schedule at a location with a department code"
        return schemas.PollerCandidatesOut(candidates=found, missing=missing)

    async def designate_poller(self, uow: UnitOfWork, facility_id: str, npwz: str) -> schemas.IkpStatusOut:
        listed = await self.candidates(facility_id)
        chosen = next((c for c in listed.candidates if c.npwz == npwz), None)
        if chosen is None:
            practitioner = await self._scheduling(self.scheduling.practitioner_by_npwz(facility_id, npwz))
            reason = (
                f"no practitioner with NPWZ {npwz} in this facility: fill in the NPWZ on the practitioner's record"
                if practitioner is None
                else "the practitioner works at no location with a department code (część VII kodu resortowego)"
            )
            raise Unprocessable.field("body.practitioner_npwz", reason)
        row = await _integration(uow.session, facility_id)
        row.poller_npwz = chosen.npwz
        row.poller_practitioner_id = chosen.practitioner_id
        row.location_id = chosen.location_id
        row.department_code = chosen.department_code
        row.updated_at = utcnow()
        await uow.commit()
        return status_out(row)

    # ------------------------------------------------------------------------- enable / disable / status

    async def enable(self, uow: UnitOfWork, facility_id: str, today: dt.date) -> schemas.IkpStatusOut:
        missing = await self.missing_prerequisites(facility_id, today)
        if missing:
            raise Unprocessable(
                "IKP integration needs: " + "; ".join(m.message for m in missing),
                code="ikp-prerequisites",
                errors=missing,
            )
        row = await _integration(uow.session, facility_id)
        if row.status != IKP_OFF:
            await uow.commit()
            return status_out(row)
        # A disable still waiting for P1 must not overtake this enable and switch P1 off afterwards.
        await uow.session.execute(
            sa.delete(P1Outgoing).where(
                P1Outgoing.facility_id == facility_id, P1Outgoing.kind == DISABLE_IKP, P1Outgoing.status == PENDING
            )
        )
        try:
            answer = await self.p1.ikp_enable(facility_id, row.department_code)
        except P1Error as exc:
            raise _p1_down(exc) from exc
        row.status = IKP_ENABLED if answer.status == IKP_ENABLED else IKP_PENDING
        row.requested_at = utcnow()
        row.enabled_at = utcnow() if row.status == IKP_ENABLED else None
        uow.emit(events.IkpStatusChanged(status=row.status), facility_id=facility_id)
        await uow.commit()
        return status_out(row)

    async def disable(self, uow: UnitOfWork, facility_id: str) -> schemas.IkpStatusOut:
        """Off here at once (polling stops); P1 is told through the queue, also while it is down."""
        row = await _integration(uow.session, facility_id)
        if row.status != IKP_OFF:
            row.status = IKP_OFF
            row.enabled_at = None
            row.updated_at = utcnow()
            queue(uow.session, facility_id, DISABLE_IKP, f"{facility_id}:{uuid.uuid4()}", {"facility_id": facility_id})
            uow.emit(events.IkpStatusChanged(status=IKP_OFF), facility_id=facility_id)
        await uow.commit()
        return status_out(row)

    async def refresh(self, new_uow: Callable[[], UnitOfWork], facility_id: str) -> schemas.IkpStatusOut:
        """A pending integration asks P1 whether it confirmed; P1 down leaves it pending."""
        async with self.sessions() as session:
            row = await session.get(IkpIntegration, facility_id)
            if row is None or row.status != IKP_PENDING:
                return status_out(row)
        try:
            answer = await self.p1.ikp_status(facility_id)
        except P1Error:
            return status_out(row)
        async with new_uow() as uow:
            row = await _integration(uow.session, facility_id)
            if row.status == IKP_PENDING and answer.status == IKP_ENABLED:
                row.status = IKP_ENABLED
                row.enabled_at = utcnow()
                uow.emit(events.IkpStatusChanged(status=IKP_ENABLED), facility_id=facility_id)
            await uow.commit()
            return status_out(row)

    async def _scheduling(self, call: Awaitable[T]) -> T:
        try:
            return await call
        except SchedulingClientError as exc:
            raise ProblemError(
                f"the scheduling service could not answer: {exc}; try again later",
                status=503,
                code="scheduling-unavailable",
            ) from exc


# ----------------------------------------------------------------------------- polling P1


@dataclass
class Poller:
    sessions: async_sessionmaker[AsyncSession]
    new_uow: Callable[[], UnitOfWork]
    ikp: Ikp
    batch: int

    async def poll_all(self) -> int:
        """One pass: confirm pending integrations, fetch new IKP items of every polling facility."""
        async with self.sessions() as session:
            rows = list(await session.scalars(sa.select(IkpIntegration).where(IkpIntegration.status != IKP_OFF)))
        received = 0
        for row in rows:
            if row.status == IKP_PENDING:
                await self.ikp.refresh(self.new_uow, row.facility_id)
                continue
            if row.poller_npwz is not None and row.location_id is not None:
                received += await self.poll_facility(row.facility_id)
        return received

    async def poll_facility(self, facility_id: str) -> int:
        received = 0
        while True:
            async with self.sessions() as session:
                row = await session.get(IkpIntegration, facility_id)
                if row is None or row.status != IKP_ENABLED or row.location_id is None:
                    return received
                after = row.last_sequence
            try:
                batch = await self.ikp.p1.poll_ikp_requests(facility_id, after=after, limit=self.batch)
            except P1Error as exc:
                log.warning("ikp_poll_failed", facility_id=facility_id, error=exc.message)
                return received
            locations: list[tuple[uuid.UUID, str | None]] = []
            if any(item.department_code for item in batch.items):
                try:
                    found = await self.ikp.scheduling.locations(facility_id)
                except SchedulingClientError as exc:
                    # The cursor has not moved: the same batch is fetched again on the next pass,
                    # rather than sent to a location it was not addressed to.
                    log.warning("ikp_locations_unavailable", facility_id=facility_id, error=str(exc))
                    return received
                locations = [(loc.id, loc.department_code) for loc in found]
            taken = await self._record(facility_id, after, batch, locations)
            received += taken
            if taken < self.batch:
                return received

    async def _record(
        self, facility_id: str, after: int, batch: IkpBatch, locations: list[tuple[uuid.UUID, str | None]]
    ) -> int:
        """``locations``: the facility's (id, department code), to find where each item was addressed."""
        async with self.new_uow() as uow:
            row = await _integration(uow.session, facility_id)
            poller_location = row.location_id
            if row.last_sequence != after or poller_location is None:
                return 0  # another replica took this batch first
            for item in batch.items:
                uow.emit(
                    events.IkpItemReceived(
                        item_id=item.id,
                        sequence=item.sequence,
                        patient_pesel=item.patient_pesel,
                        doctor_npwz=item.doctor_npwz,
                        drug=item.drug,
                        packages=item.packages,
                        comment=item.comment,
                        submitted_at=item.submitted_at,
                        location_id=domain.addressed_location(item.department_code, locations, poller_location),
                    ),
                    facility_id=facility_id,
                    event_id=events.external_event_id("ikp-item", item.id),
                )
            row.last_sequence = max(after, batch.last_sequence)
            row.last_polled_at = utcnow()
            await uow.commit()
            return len(batch.items)


# ----------------------------------------------------------------------------- the queue to P1


def queue(session: AsyncSession, facility_id: str, kind: str, reference: str, payload: dict[str, object]) -> None:
    outgoing.enqueue(session, P1Outgoing, facility_id, kind, reference, payload)


def p1_forwarder(
    sessions: async_sessionmaker[AsyncSession],
    new_uow: Callable[[], UnitOfWork],
    p1: P1Client,
    retry_seconds: float,
    retry_max_seconds: float,
) -> outgoing.Forwarder[P1Outgoing]:
    """Sends queued changes to P1 oldest first; while P1 is down the whole queue waits (order kept)."""

    async def deliver(item: P1Outgoing) -> None:
        payload = json.loads(item.payload)
        if item.kind == REGISTER_PACKAGE:
            await p1.register_package(PackageRegistration.model_validate(payload))
        elif item.kind == CANCEL_PRESCRIPTION:
            await p1.cancel_prescription(payload["key"])
        elif item.kind == RECORD_REALISATION:
            report = RealisationReport.model_validate({k: v for k, v in payload.items() if k != "key"})
            await p1.record_realisation(payload["key"], report)
        elif item.kind == DISABLE_IKP:
            await p1.ikp_disable(payload["facility_id"])
        else:
            raise P1Refused(f"unknown kind {item.kind!r}")

    async def rejected(uow: UnitOfWork, row: P1Outgoing, error: str | None) -> None:
        if error is None:
            return
        uow.emit(
            events.P1DeliveryFailed(kind=row.kind, reference=row.reference, reason=row.last_error or ""),
            facility_id=row.facility_id,
        )
        log.error("p1_change_rejected", kind=row.kind, reference=row.reference, reason=error)

    return outgoing.Forwarder(
        sessions, new_uow, P1Outgoing, deliver, P1Unavailable, retry_seconds, retry_max_seconds, rejected
    )


async def _integration(session: AsyncSession, facility_id: str) -> IkpIntegration:
    row = await session.get(IkpIntegration, facility_id, with_for_update=True)
    if row is None:
        row = IkpIntegration(facility_id=facility_id, status=IKP_OFF, last_sequence=0)
        session.add(row)
        await session.flush()
    return row

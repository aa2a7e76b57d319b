"""Registration of realisations in eZWM, also of those recorded while it was down.

A realisation is committed locally first (the lock and the months are this service's database's
decision) and offered to eZWM right after; when eZWM does not answer it stays
``pending_registration`` and this registrar offers it again every ``interval`` seconds until eZWM
takes it ("musi niezwłocznie odnotować zlecenie w systemie, kiedy zacznie działać"). eZWM
deduplicates by the realisation's id, so two replicas offering the same row at once do no harm.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from decimal import Decimal

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.integration.ezwm import EzwmClient, EzwmRefused, RealisationToRegister, RegistrationReceipt
from services.reimbursement.models import PENDING_REGISTRATION, REGISTERED, REGISTRATION_REJECTED, Realisation
from shared.db import utcnow

log = structlog.get_logger("reimbursement.registration")


def pln(grosze: int) -> Decimal:
    return Decimal(grosze).scaleb(-2)


def registration_of(row: Realisation) -> RealisationToRegister:
    return RealisationToRegister(
        realization_id=row.id,
        pharmacy_id=row.pharmacy_id,
        realized_on=row.realized_on,
        months=list(row.months),
        pieces=row.pieces,
        unit_price=pln(row.unit_price_grosze),
        subsidy=pln(row.subsidy_grosze),
        patient_share=pln(row.patient_share_grosze),
        entitlements=list(row.entitlements),
    )


class Registrar:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        client: EzwmClient,
        *,
        interval: float,
        batch_size: int = 50,
    ) -> None:
        self._sessions = sessions
        self._client = client
        self._interval = interval
        self._batch = batch_size
        self._task: asyncio.Task[None] | None = None

    async def register(self, realisation_id: uuid.UUID) -> str:
        """Offer one realisation to eZWM; returns its eZWM status afterwards."""
        async with self._sessions() as session:
            row = await session.get(Realisation, realisation_id)
            if row is None:
                raise LookupError(f"no realisation {realisation_id}")
            if row.ezwm_status != PENDING_REGISTRATION:
                return row.ezwm_status
            order_number, registration = row.order_number, registration_of(row)
        try:
            receipt = await self._client.register_realisation(order_number, registration)
        except EzwmRefused as exc:
            # eZWM said no (e.g. it does not know the order): retrying cannot help, a person must look.
            await self._note_failure(realisation_id, exc.message, give_up=True)
            log.warning("eZWM refused a realisation", realisation_id=str(realisation_id), reason=exc.message)
            return REGISTRATION_REJECTED
        except Exception as exc:
            # EzwmUnavailable, EzwmBadAnswer or anything unforeseen: the row stays pending, never lost.
            await self._note_failure(realisation_id, str(exc) or type(exc).__name__, give_up=False)
            return PENDING_REGISTRATION
        await self._mark_registered(realisation_id, receipt)
        return REGISTERED

    async def register_pending(self) -> int:
        """Offer the oldest pending realisations; stops at the first eZWM does not take."""
        async with self._sessions() as session:
            ids = (
                await session.scalars(
                    sa.select(Realisation.id)
                    .where(Realisation.ezwm_status == PENDING_REGISTRATION)
                    .order_by(Realisation.created_at)
                    .limit(self._batch)
                )
            ).all()
        registered = 0
        for realisation_id in ids:
            outcome = await self.register(realisation_id)
            if outcome == PENDING_REGISTRATION:
                break  # eZWM is still down: the rest would only fail the same way
            registered += outcome == REGISTERED
        return registered

    async def run_forever(self) -> None:
        while True:
            try:
                await self.register_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database may be briefly away; the next round retries
                log.warning("registration round failed", error=str(exc))
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run_forever(), name="ezwm-registrar")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _mark_registered(self, realisation_id: uuid.UUID, receipt: RegistrationReceipt) -> None:
        async with self._sessions() as session, session.begin():
            await session.execute(
                sa.update(Realisation)
                .where(Realisation.id == realisation_id, Realisation.ezwm_status == PENDING_REGISTRATION)
                .values(
                    ezwm_status=REGISTERED,
                    ezwm_registration_number=receipt.registration_number,
                    registered_at=utcnow(),
                    registration_attempts=Realisation.registration_attempts + 1,
                    last_registration_error=None,
                )
            )

    async def _note_failure(self, realisation_id: uuid.UUID, error: str, *, give_up: bool) -> None:
        values: dict[str, object] = {
            "registration_attempts": Realisation.registration_attempts + 1,
            "last_registration_error": error[:1000],
        }
        if give_up:
            values["ezwm_status"] = REGISTRATION_REJECTED
        async with self._sessions() as session, session.begin():
            await session.execute(
                sa.update(Realisation)
                .where(Realisation.id == realisation_id, Realisation.ezwm_status == PENDING_REGISTRATION)
                .values(**values)
            )

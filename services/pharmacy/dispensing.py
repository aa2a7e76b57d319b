"""E-prescription realisation use cases: lookup in P1, visibility, the rate limit, realising.

P1 (through the integration service's P1 client) is the register of issued prescriptions; this
service's ``prescription_holds`` row is what the suite's pharmacies dispensed, locked for every
realisation (see ``models.PrescriptionHold``). A realisation is committed here with its event
``pharmacy.realisation.recorded``; the integration service reports it to P1 through its queue, so a
realisation made while P1 is down reaches P1 when it is back, in order.

Opening (DOMAIN.md 4): the key scanned from the printout, the e-mail PDF or mObywatel opens that one
prescription (it is a 44-digit random secret, and what the patient is told to show); the 4-digit
access code with the PESEL opens the whole package, under the limit of ``code_limit``. A key of a
prescription partly realised in another pharmacy opens with nothing dispensable here and the reason;
realising it answers 409.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar, TypeVar
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.integration.p1 import P1Client, P1Error, P1NotFound, P1Prescription, P1Unavailable
from services.pharmacy import code_limit, schemas
from services.pharmacy import realisation as rules
from services.pharmacy.models import CodeAttempt, P1Status, PrescriptionHold, PrescriptionRealisation
from shared.audit import record_access
from shared.auth import Principal
from shared.db import upsert_insert, utcnow
from shared.events import EventPayload
from shared.outbox import UnitOfWork
from shared.problems import Conflict, FieldError, NotFound, ProblemError, Unprocessable

UNKNOWN_KEY = (
    "P1 knows no prescription with this key: scan the QR code again or check the 44 digits under it; "
    "the patient's access code (SMS) with the PESEL opens the whole package"
)
T = TypeVar("T")


class RealisationRecorded(EventPayload):
    """Consumed by prescriptions (no cancelling after this) and integration (report it to P1)."""

    event_type: ClassVar[str] = "pharmacy.realisation.recorded"
    realisation_id: uuid.UUID
    key: str
    pharmacy_id: str
    packages: int
    realised_on: dt.date
    outage: bool


class TooManyWrongCodes(ProblemError):
    """429; ``retry_after`` (seconds) becomes the ``Retry-After`` header (see ``app.py``)."""

    status = 429
    code = "too-many-wrong-codes"

    def __init__(self, detail: str, *, retry_after: int, scope: code_limit.Scope) -> None:
        super().__init__(detail, extra={"retry_after_seconds": retry_after, "limit": scope.value})
        self.retry_after = retry_after


WRONG_CODE = (
    "no package matches this access code and PESEL: check both with the patient (the code is in the SMS "
    "from e-Zdrowie), or scan the QR code of the prescription printout, its e-mail PDF or mObywatel, "
    "whose key alone opens the prescription"
)


@dataclass(frozen=True)
class Attempt:
    """A reserved access-code try: ``left`` more wrong codes are allowed after this one."""

    id: int
    left: int


def _rule_kind(kind: str) -> tuple[rules.Kind, bool]:
    """P1 stores the issuing kinds; the realisation rules name them as API.md does."""
    if kind == "extended":
        return rules.Kind.standard, True
    if kind == "narcotic_psychotropic":
        return rules.Kind.narcotic, False
    return rules.Kind(kind), False


def rule_prescription(hold: PrescriptionHold) -> rules.Prescription:
    kind, extended = _rule_kind(hold.kind)
    # Only some kinds count from a realise-from date; on the others P1's later start (a system
    # outside this suite) is not a rule we can apply, so their window runs from the issue date.
    later_start = hold.valid_from != hold.issued_on and kind in rules.REALISE_FROM_KINDS
    realise_from = hold.valid_from if later_start else None
    return rules.Prescription(
        kind=kind,
        issued_on=hold.issued_on,
        packages=hold.packages_prescribed,
        units_per_package=hold.units_per_package,
        daily_dose_units=hold.daily_dose_units,
        extended=extended,
        realise_from=realise_from,
    )


def _dispensed(hold: PrescriptionHold) -> rules.Dispensed:
    return rules.Dispensed(
        packages=hold.packages_dispensed,
        pharmacy_id=hold.pharmacy_id,
        reduction_applied=hold.reduction_applied,
        reduced_packages=hold.reduced_packages,
    )


def dispensable_out(
    hold: PrescriptionHold, pharmacy_id: str, on: dt.date, dispensed_today: int = 0
) -> schemas.DispensableOut:
    """``dispensed_today``: what this pharmacy already dispensed of it on ``on`` (the same visit)."""
    prescription = rule_prescription(hold)
    left = hold.packages_prescribed - hold.packages_dispensed - hold.reduced_packages
    reduction_days = 0
    if not hold.reduction_applied and hold.packages_dispensed == 0:
        reduced = rules.reduction(prescription, on)
        if reduced:
            reduction_days = (on - rules.validity_window(prescription).first_day).days
        left -= reduced
    window = rules.validity_window(prescription)
    elsewhere = hold.packages_dispensed > 0 and hold.pharmacy_id != pharmacy_id
    this_visit = rules.packages_left_for_visit(prescription, dispensed_today)
    reason = _not_dispensable(hold, window, on, elsewhere=elsewhere, left=left, this_visit=this_visit)
    return schemas.DispensableOut(
        key=hold.key,
        drug=hold.drug,
        kind=hold.kind,
        packages_prescribed=hold.packages_prescribed,
        packages_dispensed=hold.packages_dispensed,
        packages_dispensable=0 if reason else min(left, this_visit),
        valid_from=window.first_day,
        valid_until=window.last_day,
        reduction_days=reduction_days,
        reduced_packages=hold.reduced_packages,
        held_by_this_pharmacy=hold.packages_dispensed > 0 and hold.pharmacy_id == pharmacy_id,
        reason_code=reason[0] if reason else None,
        reason=reason[1] if reason else None,
    )


def _not_dispensable(
    hold: PrescriptionHold, window: rules.ValidityWindow, on: dt.date, *, elsewhere: bool, left: int, this_visit: int
) -> tuple[str, str] | None:
    """Why nothing can be dispensed here today, as (stable code, sentence); None when something can."""
    if hold.cancelled:
        return "cancelled", "the issuer cancelled this prescription"
    if elsewhere:
        # The other pharmacy is not named: which pharmacy a patient uses is theirs to tell.
        return (
            "realised_elsewhere",
            "partly realised in another pharmacy: the rest can only be dispensed there (all packages of one "
            "e-prescription come from the same pharmacy)",
        )
    if on < window.first_day:
        return "not_yet_valid", f"realisable from {window.first_day}"
    if on > window.last_day:
        return "expired", f"could be realised until {window.last_day}: it has expired"
    if left <= 0:
        if hold.packages_dispensed + hold.reduced_packages >= hold.packages_prescribed:
            return "fully_dispensed", "every package of this prescription has been dispensed"
        return "used_up_by_reduction", "the dosage of the days elapsed since its start uses up what is left"
    if this_visit <= 0:
        return (
            "visit_cap_reached",
            f"{rules.MAX_DAYS_PER_VISIT} days of use were already dispensed of it here today: the rest from tomorrow",
        )
    return None


# The audit's actions (shared/audit.py): every look-up, hit or miss, and every realisation.
LOOKUP_KEY = "pharmacy.prescription.lookup_key"
LOOKUP_CODE = "pharmacy.prescription.lookup_code"
LOOKUP_CODE_MISS = "pharmacy.prescription.lookup_code_miss"
REALISE = "pharmacy.prescription.realise"
REALISE_OUTAGE = "pharmacy.prescription.realise_outage"


def prescription_resource(key: str) -> str:
    """The audit names a prescription by its key's last digits: the whole key opens it in any pharmacy."""
    return f"prescription/…{key[-6:]}"


@dataclass
class Dispensing:
    sessions: async_sessionmaker[AsyncSession]
    p1: P1Client
    per_pharmacy: code_limit.Limit
    per_patient: code_limit.Limit
    digest_key: bytes
    now: Callable[[], dt.datetime]
    timezone: ZoneInfo

    def today(self) -> dt.date:
        """The server's date where the rules apply (Europe/Warsaw): every lookup's and realisation's."""
        return self.now().astimezone(self.timezone).date()

    # ------------------------------------------------------------------------- lookup

    async def lookup_key(self, pharmacy_id: str, key: str) -> schemas.DispensableOut:
        hold = await self._refresh(await self._p1(self.p1.prescription(key)))
        today = self.today()
        dispensed = await self._dispensed_on(pharmacy_id, [key], today)
        return dispensable_out(hold, pharmacy_id, today, dispensed.get(key, 0))

    async def lookup_code(self, pharmacy_id: str, access_code: str, pesel: str) -> schemas.PackageLookupOut:
        attempt = await self._reserve(pharmacy_id, pesel)
        try:
            package = await self._p1(self.p1.lookup_package(access_code, pesel))
        except NotFound:
            # A wrong code keeps its attempt: it is what the limit counts.
            raise NotFound(
                f"{WRONG_CODE}; {attempt.left} more wrong codes before a pause",
                code="wrong-access-code",
                extra={"attempts_left": attempt.left},
            ) from None
        except BaseException:
            await self._release(attempt)
            raise
        await self._release(attempt)
        patient = code_limit.pesel_digest(self.digest_key, pesel)
        holds = [await self._refresh(p, patient) for p in package.prescriptions]
        today = self.today()
        dispensed = await self._dispensed_on(pharmacy_id, [h.key for h in holds], today)
        return schemas.PackageLookupOut(
            package_key=package.package_key,
            prescriptions=[dispensable_out(h, pharmacy_id, today, dispensed.get(h.key, 0)) for h in holds],
        )

    # ------------------------------------------------------------------------- realising

    async def realise(
        self,
        new_uow: Callable[[], UnitOfWork],
        pharmacy_id: str,
        who: Principal,
        body: schemas.RealisationIn,
    ) -> schemas.RealisationOut:
        if body.outage_statement:
            await self._prepare_outage(body)
            on = self._day(body, await self._p1_down_since())
        else:
            on = self._day(body, None)
            await self._refresh(await self._p1(self.p1.prescription(body.key)))
        async with new_uow() as uow:
            hold = await uow.session.get(PrescriptionHold, body.key, with_for_update=True)
            if hold is None:  # only after an outage without a printout; _prepare_outage refuses that
                raise NotFound(UNKNOWN_KEY)
            if hold.cancelled:
                raise Conflict("the issuer cancelled this prescription", code="prescription-cancelled")
            # Under the hold's lock: every realisation of this key is inserted under it, so this sum is
            # what the visit already had, whatever other calls came before.
            dispensed_today = await _dispensed_on(uow.session, pharmacy_id, [hold.key], on)
            visit = rules.Visit(
                dispensed_today=dispensed_today.get(hold.key, 0),
                pharmacy_id=pharmacy_id,
                on=on,
                packages=body.packages,
                found_by=rules.FoundBy.printout if body.outage_statement else rules.FoundBy.key,
                outage=body.outage_statement,
                signed_statement=body.outage_statement,
                identity_document=body.identity_document is not None,
            )
            try:
                done = rules.realise(rule_prescription(hold), _dispensed(hold), visit)
            except rules.RealisationError as error:
                raise _problem(error, on_date_given=body.on_date is not None) from None
            hold.packages_dispensed = done.dispensed.packages
            hold.pharmacy_id = done.dispensed.pharmacy_id
            hold.reduction_applied = done.dispensed.reduction_applied
            hold.reduced_packages = done.dispensed.reduced_packages
            hold.updated_at = utcnow()
            record = PrescriptionRealisation(
                key=hold.key,
                pharmacy_id=pharmacy_id,
                pharmacist=who.sub,
                packages=body.packages,
                realised_on=on,
                outage=body.outage_statement,
                dispensed_product=body.substitute,
                identity_document=body.identity_document,
            )
            uow.session.add(record)
            await uow.session.flush()
            uow.emit(
                RealisationRecorded(
                    realisation_id=record.id,
                    key=hold.key,
                    pharmacy_id=pharmacy_id,
                    packages=body.packages,
                    realised_on=on,
                    outage=body.outage_statement,
                ),
                facility_id=None,
            )
            record_access(
                uow,
                who,
                REALISE_OUTAGE if body.outage_statement else REALISE,
                prescription_resource(hold.key),
                body.printout.patient_pesel if body.printout is not None else None,
                at=self.now(),
            )
            await uow.commit()
        return schemas.RealisationOut(
            key=body.key,
            packages_dispensed=done.packages,
            packages_remaining=done.packages_remaining,
            reduced_packages=done.reduced_packages,
            outage=body.outage_statement,
        )

    def _day(self, body: schemas.RealisationIn, p1_down_since: dt.date | None) -> dt.date:
        try:
            return rules.realisation_day(
                self.today(), body.on_date, outage=body.outage_statement, p1_down_since=p1_down_since
            )
        except rules.RealisationError as error:
            raise _problem(error, on_date_given=True) from None

    async def _prepare_outage(self, body: schemas.RealisationIn) -> None:
        """An outage realisation needs P1 really down and the prescription's data (from the printout)."""
        try:
            await self.p1.prescription(body.key)
        except P1Unavailable:
            await self._p1_down()
        except P1Error:
            raise Unprocessable.field(
                "body.outage_statement", "P1 answers: realise normally, an outage statement is for when it is down"
            ) from None
        else:
            raise Unprocessable.field(
                "body.outage_statement", "P1 answers: realise normally, an outage statement is for when it is down"
            )
        assert body.printout is not None  # the schema requires it with outage_statement
        patient = code_limit.pesel_digest(self.digest_key, body.printout.patient_pesel)
        async with self.sessions() as session, session.begin():
            hold = await session.get(PrescriptionHold, body.key)
            if hold is None:  # never seen here: the printout is all there is to go on
                session.add(_hold_from_printout(body.key, body.printout, patient))
                return
            shown = _printout_data(body.printout, patient)
            mismatches = rules.printout_mismatches(shown, _known_data(hold))
            if mismatches:
                raise Unprocessable(
                    "the printout does not match this prescription as P1 showed it to this pharmacy: "
                    "do not dispense on it while P1 is down",
                    errors=[FieldError(field=f"body.printout.{f}", message=m) for f, m in mismatches],
                )

    # ------------------------------------------------------------------------- helpers

    async def _p1(self, call: Awaitable[T]) -> T:
        try:
            answer = await call
        except P1NotFound:
            await self._p1_up()
            raise NotFound(UNKNOWN_KEY) from None
        except P1Unavailable as exc:
            await self._p1_down()
            raise ProblemError(
                "P1 is unreachable: with the printout, an identity document and the patient's signed statement, "
                "realise with outage_statement=true",
                status=503,
                code="p1-unavailable",
            ) from exc
        except P1Error as exc:
            raise ProblemError(f"P1 answered an error: {exc.message}", status=502, code="p1-error") from exc
        await self._p1_up()
        return answer

    async def _dispensed_on(self, pharmacy_id: str, keys: list[str], on: dt.date) -> dict[str, int]:
        async with self.sessions() as session:
            return await _dispensed_on(session, pharmacy_id, keys, on)

    async def _p1_down(self) -> None:
        """Keep the first failed call's instant (until P1 answers again): how far back an outage
        realisation may be dated. One upsert, so processes failing at once keep the earliest."""
        now = self.now()
        async with self.sessions() as session, session.begin():
            insert = upsert_insert(session)
            await session.execute(
                insert(P1Status)
                .values(id=1, down_since=now)
                .on_conflict_do_update(
                    index_elements=[P1Status.id], set_={"down_since": sa.func.coalesce(P1Status.down_since, now)}
                )
            )

    async def _p1_up(self) -> None:
        async with self.sessions() as session:
            if await session.scalar(sa.select(P1Status.down_since).where(P1Status.id == 1)) is None:
                return  # the usual case: no write on every successful call
        async with self.sessions() as session, session.begin():
            await session.execute(sa.update(P1Status).where(P1Status.id == 1).values(down_since=None))

    async def _p1_down_since(self) -> dt.date | None:
        async with self.sessions() as session:
            since = await session.scalar(sa.select(P1Status.down_since).where(P1Status.id == 1))
        return since.astimezone(self.timezone).date() if since is not None else None

    async def _refresh(self, found: P1Prescription, patient: str | None = None) -> PrescriptionHold:
        """The hold with P1's data; counts of realisations outside this suite are taken from P1.

        ``patient``: the PESEL's digest when P1 found the package by access code and that PESEL (P1
        shows no PESEL for a key; the patient is then what a printout is checked against).
        """
        async with self.sessions() as session, session.begin():
            hold = await session.get(PrescriptionHold, found.key, with_for_update=True)
            if hold is None:
                hold = PrescriptionHold(
                    key=found.key, packages_dispensed=0, reduced_packages=0, reduction_applied=False
                )
                session.add(hold)
            hold.package_key = found.package_key
            hold.drug = found.drug
            hold.kind = found.kind
            hold.issued_on = found.issued_on
            hold.valid_from = found.valid_from
            hold.valid_until = found.valid_until
            hold.packages_prescribed = found.packages
            hold.units_per_package = found.units_per_package
            hold.daily_dose_units = found.daily_dose_units
            hold.cancelled = found.status == "cancelled"
            if patient is not None:
                hold.patient_digest = patient
            if found.packages_dispensed > hold.packages_dispensed + hold.reduced_packages:
                hold.packages_dispensed = found.packages_dispensed - hold.reduced_packages
                hold.pharmacy_id = hold.pharmacy_id or found.pharmacy_id
                hold.reduction_applied = True
            hold.updated_at = utcnow()
        return hold

    async def _reserve(self, pharmacy_id: str, pesel: str) -> Attempt:
        """Count this try before P1 is asked: committed first, then judged against every try committed
        before the count, so of N parallel tries (any number of processes) at most the limit go on."""
        now = self.now()
        digest = code_limit.pesel_digest(self.digest_key, pesel)
        scopes = (
            (self.per_pharmacy, CodeAttempt.pharmacy_id, pharmacy_id),
            (self.per_patient, CodeAttempt.pesel_digest, digest),
        )
        async with self.sessions() as session, session.begin():
            # Housekeeping by this pharmacy's index only: two deletes walking the same index lock rows
            # in the same order and cannot deadlock (one by pharmacy and one by PESEL could).
            gone = now - max(self.per_pharmacy.window, self.per_patient.window)
            await session.execute(
                sa.delete(CodeAttempt).where(CodeAttempt.pharmacy_id == pharmacy_id, CodeAttempt.at <= gone)
            )
            row = CodeAttempt(pharmacy_id=pharmacy_id, pesel_digest=digest, at=now)
            session.add(row)
            await session.flush()
            attempt_id = row.id
        left: list[int] = []
        refused: TooManyWrongCodes | None = None
        async with self.sessions() as session:
            for limit, column, value in scopes:
                newest = (
                    await session.execute(
                        sa.select(CodeAttempt.id, CodeAttempt.at)
                        .where(column == value, CodeAttempt.at > limit.since(now))
                        .order_by(CodeAttempt.at.desc(), CodeAttempt.id.desc())
                        .limit(limit.allowed + 1)
                    )
                ).all()
                others = [at for found_id, at in newest if found_id != attempt_id]
                wait = code_limit.retry_after(limit, len(newest), others, now)
                if wait is not None:
                    refused = _too_many(limit, wait)
                    break
                left.append(limit.allowed - len(newest))
        if refused is not None:  # released outside the counting session: one connection at a time
            await self._release(Attempt(attempt_id, 0))
            raise refused
        return Attempt(attempt_id, min(left))

    async def _release(self, attempt: Attempt) -> None:
        """The try found its package (or never reached P1): it does not count against anyone."""
        async with self.sessions() as session, session.begin():
            await session.execute(sa.delete(CodeAttempt).where(CodeAttempt.id == attempt.id))


async def _dispensed_on(session: AsyncSession, pharmacy_id: str, keys: list[str], on: dt.date) -> dict[str, int]:
    """Packages this pharmacy dispensed of each key on day ``on``: the visit so far."""
    rows = await session.execute(
        sa.select(PrescriptionRealisation.key, sa.func.sum(PrescriptionRealisation.packages))
        .where(
            PrescriptionRealisation.key.in_(keys),
            PrescriptionRealisation.pharmacy_id == pharmacy_id,
            PrescriptionRealisation.realised_on == on,
        )
        .group_by(PrescriptionRealisation.key)
    )
    return {key: int(total) for key, total in rows}


def _too_many(limit: code_limit.Limit, wait: int) -> TooManyWrongCodes:
    minutes = int(limit.window.total_seconds() // 60)
    if limit.scope is code_limit.Scope.pharmacy:
        who = f"{limit.allowed} wrong access codes from this pharmacy in {minutes} minutes"
    else:
        who = f"{limit.allowed} wrong access codes for this PESEL, from any pharmacy, in {minutes} minutes"
    return TooManyWrongCodes(
        f"{who}: try the code again in {wait} s, or scan the QR code of the prescription printout, its e-mail PDF "
        "or mObywatel (a key is never limited)",
        retry_after=wait,
        scope=limit.scope,
    )


def _problem(error: rules.RealisationError, *, on_date_given: bool) -> ProblemError:
    # The day is the server's unless the pharmacist dated an outage realisation: then it is theirs.
    field = {"on": "on_date" if on_date_given else "key", "pharmacy_id": "key"}.get(error.field, error.field)
    kind = Conflict if error.status == 409 else Unprocessable
    return kind(error.message, errors=[FieldError(field=f"body.{field}", message=error.message)])


def _printout_data(printout: schemas.Printout, patient: str) -> rules.PrescriptionData:
    return rules.PrescriptionData(
        package_key=printout.package_key,
        patient=patient,
        drug=printout.drug,
        kind=printout.kind,
        issued_on=printout.issued_on,
        valid_from=printout.valid_from or printout.issued_on,
        packages=printout.packages,
        units_per_package=printout.units_per_package,
        daily_dose_units=printout.daily_dose_units,
    )


def _known_data(hold: PrescriptionHold) -> rules.PrescriptionData:
    return rules.PrescriptionData(
        package_key=hold.package_key,
        patient=hold.patient_digest,
        drug=hold.drug,
        kind=hold.kind,
        issued_on=hold.issued_on,
        valid_from=hold.valid_from,
        packages=hold.packages_prescribed,
        units_per_package=hold.units_per_package,
        daily_dose_units=hold.daily_dose_units,
    )


def _hold_from_printout(key: str, printout: schemas.Printout, patient: str) -> PrescriptionHold:
    hold = PrescriptionHold(
        key=key,
        patient_digest=patient,
        package_key=printout.package_key,
        drug=printout.drug,
        kind=printout.kind,
        issued_on=printout.issued_on,
        valid_from=printout.valid_from or printout.issued_on,
        valid_until=printout.issued_on,  # set below from the rules
        packages_prescribed=printout.packages,
        units_per_package=printout.units_per_package,
        daily_dose_units=printout.daily_dose_units,
        packages_dispensed=0,
        reduced_packages=0,
        reduction_applied=False,
        cancelled=False,
    )
    try:
        hold.valid_until = rules.validity_window(rule_prescription(hold)).last_day
    except rules.RealisationError as error:
        raise Unprocessable.field(f"body.printout.{error.field}", error.message) from None
    return hold

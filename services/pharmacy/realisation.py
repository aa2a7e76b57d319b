"""E-prescription realisation at the pharmacy as plain functions: validity, the 180-day cap per visit,
partial realisation bound to one pharmacy, the 365-day reduction and outage realisation.

Source: seeds/e-prescription-rules.txt (where DOMAIN.md sections 3-4 and the source differ, the
source wins). Every quantity is exact: units and doses are ``Fraction`` (floats are refused) and a
package is never split, so every count of packages is a whole number rounded down.

Decisions the source leaves open (each one stated where it is coded):

* "N days from a date" is realisable from that date through that date + N days, both inclusive
  (DOMAIN.md 3: issued 1 March, 30 days -> through 31 March). Partial realisation never extends it.
* Elapsed days since the start date are ``(visit - start).days``: the start day is the first day of
  use, the visit day is not yet used up. The source's "po upływie 30 dni" (once 30 days have passed)
  therefore means 30 elapsed days are not enough and 31 are: no reduction on start + 30 (the last day
  a 30-day prescription would still be valid), the reduction from start + 31 on, by ALL 31 days.
* The reduction is settled at the first realisation, whether it removed packages or not; a first
  realisation within 30 days means no reduction ever.
* More packages asked than the cap or than what is left is refused (the error names the most that
  may be dispensed); it is never silently cut down.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import ClassVar

MAX_DAYS_PER_VISIT = 180  # "jednorazowo z apteki można wydać ... maksymalnie na 180 dni stosowania"
REDUCTION_GRACE_DAYS = 30  # "jeśli pacjent zgłosi się do apteki po upływie 30 dni"

Quantity = int | Decimal | Fraction


# ----------------------------------------------------------------------------- errors


class RealisationError(ValueError):
    """A realisation rule the visit breaks; ``field`` names the input at fault as the API spells it.

    ``status`` is the HTTP status the API answers with: 422 unless a subclass says otherwise.
    """

    status: ClassVar[int] = 422

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class InvalidPrescription(RealisationError):
    """The prescription or visit data cannot be right (a float dose, extended antibiotic, ...)."""


class OutsideValidity(RealisationError):
    """The visit is before the first or after the last day of the realisation window."""


class OverVisitCap(RealisationError):
    """More than 180 days of use asked in one visit; ``max_packages`` is the most allowed."""

    def __init__(self, field: str, message: str, max_packages: int) -> None:
        super().__init__(field, message)
        self.max_packages = max_packages


class NothingLeft(RealisationError):
    """Fewer packages left to dispense than asked (possibly none); ``remaining`` says how many."""

    def __init__(self, field: str, message: str, remaining: int) -> None:
        super().__init__(field, message)
        self.remaining = remaining


class OutageNotAllowed(RealisationError):
    """An outage realisation without the basis the source requires."""


class RealisedElsewhere(RealisationError):
    """The prescription was partly realised in another pharmacy: the rest belongs there (409)."""

    status: ClassVar[int] = 409


# ----------------------------------------------------------------------------- inputs


class Kind(enum.StrEnum):
    standard = "standard"
    antibiotic = "antibiotic"  # oral or injection
    narcotic = "narcotic"
    psychotropic_in_iip = "psychotropic_in_iip"
    immunological = "immunological"  # made individually for the patient
    target_import = "target_import"  # "import docelowy", paper only


# Days of the window; a standard prescription marked extended by the issuer gets EXTENDED_DAYS.
VALIDITY_DAYS: dict[Kind, int] = {
    Kind.standard: 30,
    Kind.antibiotic: 7,
    Kind.narcotic: 30,
    Kind.psychotropic_in_iip: 30,
    Kind.immunological: 120,
    Kind.target_import: 120,
}
EXTENDED_DAYS = 365
# The source counts only these "od daty wystawienia lub ... daty realizacji »od dnia«"; the others
# "od daty wystawienia" (narcotic, psychotropic, immunological, target import).
REALISE_FROM_KINDS = frozenset({Kind.standard, Kind.antibiotic})


class FoundBy(enum.StrEnum):
    """How the pharmacist found the prescription."""

    key = "key"  # the prescription key typed or scanned without a document
    access_code_pesel = "access_code_pesel"  # 4-digit SMS code + PESEL
    printout = "printout"  # the information printout, the e-mail (PDF) or the copy downloaded in mObywatel


@dataclass(frozen=True)
class Prescription:
    """One e-prescription: one product, ``packages`` packages of ``units_per_package`` units."""

    kind: Kind
    issued_on: dt.date
    packages: int
    units_per_package: Quantity
    daily_dose_units: Quantity
    extended: bool = False  # "365 dni": marked by the issuer, standard prescriptions only
    realise_from: dt.date | None = None


@dataclass(frozen=True)
class Dispensed:
    """What earlier visits dispensed (all in ``pharmacy_id``) and what the 365-day reduction removed.

    ``reduction_applied`` is True once the first realisation has settled the reduction, even when it
    removed nothing.
    """

    packages: int = 0
    pharmacy_id: str | None = None
    reduction_applied: bool = False
    reduced_packages: int = 0


NOTHING_DISPENSED = Dispensed()


@dataclass(frozen=True)
class Visit:
    pharmacy_id: str
    on: dt.date
    packages: int
    found_by: FoundBy = FoundBy.key
    outage: bool = False  # the P1 system is down: realised on the documents the patient shows
    signed_statement: bool = False  # the patient signed that the prescription was not realised before
    identity_document: bool = False  # the patient (or bearer) showed an identity document
    # What this pharmacy already dispensed of this prescription on ``on``: one visit is everything one
    # pharmacy dispenses of one prescription on one day, or two calls would hand out 360 days.
    dispensed_today: int = 0


# ----------------------------------------------------------------------------- results


@dataclass(frozen=True)
class ValidityWindow:
    """Realisable on every day from ``first_day`` through ``last_day``, both inclusive."""

    first_day: dt.date
    last_day: dt.date

    def contains(self, day: dt.date) -> bool:
        return self.first_day <= day <= self.last_day


@dataclass(frozen=True)
class Realisation:
    """What this visit dispenses and where the prescription stands afterwards.

    ``packages + packages_remaining + reduced_packages + earlier packages == prescribed packages``.
    ``reduced_packages`` is what the reduction removed in total; ``reduction_applied_now`` says this
    visit (the first realisation) removed them. ``outage`` marks a realisation to record and report to P1 later.
    """

    packages: int
    packages_remaining: int
    reduced_packages: int
    reduction_applied_now: bool
    days_of_use: Fraction
    max_packages_per_visit: int
    validity: ValidityWindow
    outage: bool
    dispensed: Dispensed  # the state to store: what has been dispensed after this visit


# ----------------------------------------------------------------------------- rules


def exact(value: Quantity, field: str) -> Fraction:
    """A positive exact number; floats are refused so no rounding error reaches a decision."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | Fraction):
        raise InvalidPrescription(field, f"{field} must be an exact number (integer, decimal or fraction), not a float")
    if isinstance(value, Decimal) and not value.is_finite():
        raise InvalidPrescription(field, f"{field} must be a finite number")
    result = Fraction(value)
    if result <= 0:
        raise InvalidPrescription(field, f"{field} must be greater than zero")
    return result


def _whole(value: int, field: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidPrescription(field, f"{field} must be a whole number of at least {minimum}")
    return value


def validity_window(prescription: Prescription) -> ValidityWindow:
    """The realisation window: start (issue or realise-from date) through start + N days."""
    kind = prescription.kind
    if prescription.extended and kind is not Kind.standard:
        # The 365 days are the issuer's mark on an ordinary prescription; the source lists antibiotic,
        # narcotic/psychotropic and immunological windows as exceptions to it.
        raise InvalidPrescription("extended", f"a {kind.value} prescription cannot be marked for 365 days")
    start = prescription.issued_on
    if prescription.realise_from is not None:
        if kind not in REALISE_FROM_KINDS:
            raise InvalidPrescription(
                "realise_from",
                f"a {kind.value} prescription is valid from its issue date: it takes no realise-from date",
            )
        if prescription.realise_from < prescription.issued_on:
            raise InvalidPrescription("realise_from", "the realise-from date cannot be before the issue date")
        start = prescription.realise_from
    days = EXTENDED_DAYS if prescription.extended else VALIDITY_DAYS[kind]
    return ValidityWindow(start, start + dt.timedelta(days=days))


def packages_left_for_visit(prescription: Prescription, dispensed_today: int) -> int:
    """The most whole packages this pharmacy may still dispense of the prescription today."""
    return max(max_packages_per_visit(prescription) - dispensed_today, 0)


def max_packages_per_visit(prescription: Prescription) -> int:
    """floor(180 x daily dose / units per package): the most whole packages one visit may dispense."""
    dose = exact(prescription.daily_dose_units, "daily_dose_units")
    units = exact(prescription.units_per_package, "units_per_package")
    return math.floor(MAX_DAYS_PER_VISIT * dose / units)


def days_of_use(packages: int, prescription: Prescription) -> Fraction:
    """packages x units per package / daily dose, exactly."""
    units = exact(prescription.units_per_package, "units_per_package")
    return packages * units / exact(prescription.daily_dose_units, "daily_dose_units")


def reduction(prescription: Prescription, first_realisation_on: dt.date) -> int:
    """Packages the 365-day reduction removes when the first realisation is on ``first_realisation_on``.

    Only an extended prescription, and only once more than 30 days have elapsed since its start date
    (elapsed = ``(day - start).days``: 30 -> none, 31 -> 31 days of use). The dosage of every elapsed
    day is taken off the total units; the packages still dispensable are the whole packages left, so
    the reduction rounds up to whole packages and is never more than prescribed, never negative.
    """
    if not prescription.extended:
        return 0
    elapsed = (first_realisation_on - validity_window(prescription).first_day).days
    if elapsed <= REDUCTION_GRACE_DAYS:
        return 0
    units = exact(prescription.units_per_package, "units_per_package")
    used = elapsed * exact(prescription.daily_dose_units, "daily_dose_units")
    total = prescription.packages * units
    dispensable = math.floor(max(total - used, Fraction(0)) / units)
    return prescription.packages - dispensable


@dataclass(frozen=True)
class PrescriptionData:
    """What a printout shows of a prescription, or what this pharmacy learnt of it from P1 earlier.

    ``patient`` is a keyed digest of the PESEL (never compared in the clear); None: not known.
    ``valid_from`` is the realise-from date, or the issue date when there is none.
    """

    package_key: str
    patient: str | None
    drug: str
    kind: str
    issued_on: dt.date
    valid_from: dt.date
    packages: int
    units_per_package: Quantity
    daily_dose_units: Quantity


PRINTOUT_FIELDS = {
    "package_key": "package key",
    "patient": "patient (PESEL)",
    "drug": "drug",
    "kind": "kind",
    "issued_on": "issue date",
    "valid_from": "realise-from date",
    "packages": "quantity (packages)",
    "units_per_package": "units per package",
    "daily_dose_units": "dosage",
}


def printout_mismatches(printout: PrescriptionData, known: PrescriptionData) -> list[tuple[str, str]]:
    """Where the printout shown during an outage contradicts what P1 told this pharmacy: (field, message).

    The outage path dispenses on the patient's documents alone, so a printout that differs from the
    prescription this pharmacy has seen is not that prescription (or not that patient's). Drug names
    compare without case and spacing; numbers exactly; an unknown patient is not compared.
    """
    found = []
    for name, label in PRINTOUT_FIELDS.items():
        shown, seen = getattr(printout, name), getattr(known, name)
        if name == "patient" and seen is None:
            continue
        if name == "drug":
            shown, seen = " ".join(shown.split()).casefold(), " ".join(seen.split()).casefold()
        elif name in ("units_per_package", "daily_dose_units"):
            shown, seen = Fraction(shown), Fraction(seen)
        if shown != seen:
            what = "a different patient" if name == "patient" else f"{getattr(known, name)}"
            found.append(
                (
                    "patient_pesel" if name == "patient" else name,
                    f"the printout's {label} does not match the prescription P1 showed this pharmacy ({what})",
                )
            )
    return found


def realisation_day(today: dt.date, asked: dt.date | None, *, outage: bool, p1_down_since: dt.date | None) -> dt.date:
    """The date a realisation is filed under: today (Europe/Warsaw, the server's), never the pharmacist's.

    The one exception is an outage realisation, recorded while P1 is down for a dispensing on the
    documents the patient showed: it may carry the day it happened, from the day P1 went down (the
    first failed call, ``p1_down_since``) through today. A chosen date would otherwise let a
    realisation escape expiry and the 365-day reduction, and file a false date with P1.
    """
    if asked is None:
        return today
    if not outage:
        raise RealisationError(
            "on",
            "a realisation is dated today, by the server; on_date is only for an outage realisation "
            "(outage_statement) recorded while P1 is down",
        )
    if asked > today:
        raise RealisationError("on", f"{asked} is in the future: a realisation is dated at the latest today ({today})")
    if p1_down_since is None:
        raise RealisationError("on", "P1 is not known to be down, so the outage realisation is dated today")
    if asked < p1_down_since:
        raise RealisationError(
            "on",
            f"P1 has been down since {p1_down_since}: an outage realisation cannot be dated before that, not {asked}",
        )
    return asked


def realise(prescription: Prescription, before: Dispensed, visit: Visit) -> Realisation:
    """Check the visit against the prescription and what was dispensed; the first rule broken is raised.

    Order: data, outage basis, validity window, nothing left, same pharmacy (409), the reduction at
    the first realisation, what is left after it, the 180-day cap.
    """
    _check_data(prescription, before, visit)
    window = validity_window(prescription)
    cap = max_packages_per_visit(prescription)
    _check_outage(before, visit)
    _check_window(window, visit.on)

    left = prescription.packages - before.packages - before.reduced_packages
    if before.packages > 0 or before.reduction_applied:
        if left == 0:
            raise NothingLeft("packages", "every package of this prescription has already been dispensed", 0)
        if before.packages > 0 and before.pharmacy_id != visit.pharmacy_id:
            raise RealisedElsewhere(
                "pharmacy_id",
                "this prescription was partly realised in another pharmacy: the rest can only be dispensed there",
            )
        reduced_now = 0
    else:
        reduced_now = reduction(prescription, visit.on)
        left -= reduced_now
        if left == 0:
            raise NothingLeft(
                "packages",
                f"the dosage of the {(visit.on - window.first_day).days} days elapsed since {window.first_day} "
                f"uses up all {prescription.packages} packages prescribed: nothing can be dispensed",
                0,
            )

    if visit.packages > left:
        raise NothingLeft(
            "packages", f"{visit.packages} packages asked but only {left} left to dispense on this prescription", left
        )
    if visit.dispensed_today and visit.packages + visit.dispensed_today > cap:
        more = max(cap - visit.dispensed_today, 0)
        raise OverVisitCap(
            "packages",
            f"{visit.dispensed_today} packages of this prescription were already dispensed here today, and one "
            f"visit (one pharmacy, one day) may dispense at most {cap} packages ({MAX_DAYS_PER_VISIT} days): "
            + (f"at most {more} more today" if more else "nothing more today"),
            more,
        )
    if visit.packages > cap:
        one = days_of_use(1, prescription)
        if cap == 0:
            message = (
                f"one package is {_days(one)} days of use, more than the {MAX_DAYS_PER_VISIT} allowed in one visit"
            )
        else:
            message = (
                f"{visit.packages} packages are {_days(days_of_use(visit.packages, prescription))} days of use: "
                f"at most {cap} packages ({MAX_DAYS_PER_VISIT} days) may be dispensed in one visit"
            )
        raise OverVisitCap("packages", message, cap)

    after = Dispensed(
        packages=before.packages + visit.packages,
        pharmacy_id=visit.pharmacy_id,
        reduction_applied=True,
        reduced_packages=before.reduced_packages + reduced_now,
    )
    return Realisation(
        packages=visit.packages,
        packages_remaining=left - visit.packages,
        reduced_packages=after.reduced_packages,
        reduction_applied_now=reduced_now > 0,
        days_of_use=days_of_use(visit.packages, prescription),
        max_packages_per_visit=cap,
        validity=window,
        outage=visit.outage,
        dispensed=after,
    )


def _days(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{float(value):.2f}"


def _check_data(prescription: Prescription, before: Dispensed, visit: Visit) -> None:
    if not isinstance(prescription.kind, Kind):
        raise InvalidPrescription("kind", f"unknown prescription kind {prescription.kind!r}")
    _whole(prescription.packages, "packages_prescribed", 1)
    _whole(visit.packages, "packages", 1)
    _whole(visit.dispensed_today, "dispensed_today", 0)
    _whole(before.packages, "dispensed_packages", 0)
    _whole(before.reduced_packages, "reduced_packages", 0)
    exact(prescription.units_per_package, "units_per_package")
    exact(prescription.daily_dose_units, "daily_dose_units")
    if not visit.pharmacy_id:
        raise InvalidPrescription("pharmacy_id", "the pharmacy realising the prescription must be named")
    if before.packages > 0 and not before.pharmacy_id:
        raise InvalidPrescription("dispensed_pharmacy_id", "packages were dispensed but no pharmacy is recorded")
    if before.reduced_packages > 0 and not before.reduction_applied:
        raise InvalidPrescription("reduced_packages", "packages were removed by a reduction that was never applied")
    if before.packages + before.reduced_packages > prescription.packages:
        raise InvalidPrescription(
            "dispensed_packages", "more packages dispensed and removed by the reduction than were prescribed"
        )
    if visit.dispensed_today > before.packages:
        raise InvalidPrescription("dispensed_today", "more dispensed today than was ever dispensed")


def _check_outage(before: Dispensed, visit: Visit) -> None:
    """Outage: printout or e-mail (or the mObywatel copy), identity document, signed statement.

    The source: never on the SMS access code + PESEL alone, and a bare key is not the document the
    source names. The statement says the prescription was not realised before, so an outage
    realisation cannot continue a partial one: that waits until P1 is back.
    """
    if not visit.outage:
        return
    if visit.found_by is FoundBy.access_code_pesel:
        raise OutageNotAllowed(
            "found_by", "during an outage a prescription cannot be realised on the SMS access code and PESEL alone"
        )
    if visit.found_by is not FoundBy.printout:
        raise OutageNotAllowed(
            "found_by",
            "during an outage the patient must show the prescription printout, its e-mail or its copy in mObywatel",
        )
    if not visit.identity_document:
        raise OutageNotAllowed("identity_document", "during an outage the patient must show an identity document")
    if not visit.signed_statement:
        raise OutageNotAllowed(
            "signed_statement",
            "during an outage the patient must sign a statement that the prescription was not realised before",
        )
    if before.packages > 0:
        raise OutageNotAllowed(
            "signed_statement",
            "this prescription was already partly realised, so the statement that it was not realised before cannot "
            "be signed: dispense the rest when the system is back",
        )


def _check_window(window: ValidityWindow, day: dt.date) -> None:
    if day < window.first_day:
        raise OutsideValidity("on", f"this prescription can be realised from {window.first_day}, not on {day}")
    if day > window.last_day:
        raise OutsideValidity("on", f"this prescription could be realised until {window.last_day}: it has expired")

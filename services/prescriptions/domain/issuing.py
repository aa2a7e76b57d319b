"""Issuing e-prescriptions: who may issue, quantity limits, validity windows, packages of at most 5.

Quantity (source e-prescription-rules.txt): doctor, dentist, feldsher (also senior feldsher) 360
days of use; nurse and midwife 180; narcotic/psychotropic of group I-N or II-P 90 days for any
issuer (the lower of that and the profession's limit). Days of use = packages x units per package /
daily dose in units, as an exact Fraction: 360 is allowed, 360.5 and 361 are refused.

Validity: "N days from a date" is realisable from that date through date + N days (DOMAIN.md 3:
issued 1 March, 30 days -> through 31 March). A "realise from" date moves the start for standard,
extended (365) and antibiotic prescriptions only. The source counts narcotic/psychotropic,
immunological and target-import windows "od daty wystawienia" (from the issue date) only, so a
realise-from date on those is refused rather than silently ignored. A realise-from date before the
issue date is refused. Target import is paper-only (source): its window is computed, but it is
refused as an e-prescription.
"""

from __future__ import annotations

import datetime as dt
import enum
import random
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from .errors import PrescriptionError
from .identifiers import new_access_code, new_package_key, new_prescription_key

MAX_PRESCRIPTIONS_PER_PACKAGE = 5
STRONG_CONTROLLED_LIMIT_DAYS = 90


class Profession(enum.StrEnum):
    DOCTOR = "doctor"
    DENTIST = "dentist"
    NURSE = "nurse"
    MIDWIFE = "midwife"
    FELDSHER = "feldsher"


PROFESSION_LIMIT_DAYS: dict[Profession, int] = {
    Profession.DOCTOR: 360,
    Profession.DENTIST: 360,
    Profession.FELDSHER: 360,
    Profession.NURSE: 180,
    Profession.MIDWIFE: 180,
}


class ControlledGroup(enum.StrEnum):
    """Narcotic (N) and psychotropic (P) groups; only I-N and II-P carry the 90-day limit."""

    I_N = "I-N"
    II_N = "II-N"
    III_N = "III-N"
    IV_N = "IV-N"
    I_P = "I-P"
    II_P = "II-P"
    III_P = "III-P"
    IV_P = "IV-P"


STRONG_CONTROLLED_GROUPS = frozenset({ControlledGroup.I_N, ControlledGroup.II_P})


class PrescriptionKind(enum.StrEnum):
    STANDARD = "standard"
    EXTENDED = "extended"
    ANTIBIOTIC = "antibiotic"
    NARCOTIC_PSYCHOTROPIC = "narcotic_psychotropic"
    IMMUNOLOGICAL = "immunological"
    TARGET_IMPORT = "target_import"


VALIDITY_DAYS: dict[PrescriptionKind, int] = {
    PrescriptionKind.STANDARD: 30,
    PrescriptionKind.EXTENDED: 365,
    PrescriptionKind.ANTIBIOTIC: 7,
    PrescriptionKind.NARCOTIC_PSYCHOTROPIC: 30,
    PrescriptionKind.IMMUNOLOGICAL: 120,
    PrescriptionKind.TARGET_IMPORT: 120,
}
REALISE_FROM_KINDS = frozenset({PrescriptionKind.STANDARD, PrescriptionKind.EXTENDED, PrescriptionKind.ANTIBIOTIC})
PAPER_ONLY_KINDS = frozenset({PrescriptionKind.TARGET_IMPORT})

Quantity = int | Decimal | Fraction


def parse_profession(text: str, field: str = "profession") -> Profession:
    try:
        return Profession(text)
    except ValueError:
        allowed = ", ".join(p.value for p in Profession)
        raise PrescriptionError(field, f"{text!r} may not issue prescriptions (allowed: {allowed})") from None


def _exact(value: Quantity, field: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int | Decimal | Fraction):
        raise PrescriptionError(field, "must be an exact number (integer, decimal or fraction), not a float")
    if isinstance(value, Decimal) and not value.is_finite():
        raise PrescriptionError(field, "must be a finite number")
    exact = Fraction(value)
    if exact <= 0:
        raise PrescriptionError(field, "must be greater than zero")
    return exact


@dataclass(frozen=True)
class ValidityWindow:
    """Realisable on every day from ``first_day`` through ``last_day``, both inclusive."""

    first_day: dt.date
    last_day: dt.date

    def contains(self, day: dt.date) -> bool:
        return self.first_day <= day <= self.last_day


def validity_window(
    kind: PrescriptionKind, issued_on: dt.date, realise_from: dt.date | None = None, field: str = "realise_from"
) -> ValidityWindow:
    if realise_from is not None:
        if kind not in REALISE_FROM_KINDS:
            raise PrescriptionError(
                field, f"a {kind.value} prescription is valid from its issue date: it takes no realise-from date"
            )
        if realise_from < issued_on:
            raise PrescriptionError(field, "the realise-from date cannot be before the issue date")
    start = realise_from if realise_from is not None else issued_on
    return ValidityWindow(start, start + dt.timedelta(days=VALIDITY_DAYS[kind]))


def limit_days(profession: Profession, controlled_group: ControlledGroup | None) -> int:
    limit = PROFESSION_LIMIT_DAYS[profession]
    if controlled_group in STRONG_CONTROLLED_GROUPS:
        limit = min(limit, STRONG_CONTROLLED_LIMIT_DAYS)
    return limit


def days_of_use(packages: int, units_per_package: Quantity, daily_dose_units: Quantity) -> Fraction:
    """packages x units per package / daily dose, exactly."""
    if isinstance(packages, bool) or not isinstance(packages, int) or packages < 1:
        raise PrescriptionError("packages", "must be a whole number of at least one package")
    return packages * _exact(units_per_package, "units_per_package") / _exact(daily_dose_units, "daily_dose_units")


@dataclass(frozen=True)
class Issuer:
    practitioner_id: str
    profession: Profession


@dataclass(frozen=True)
class PrescriptionDraft:
    """One product (one e-prescription), one or more packages of it."""

    drug: str
    packages: int
    units_per_package: Quantity
    daily_dose_units: Quantity
    kind: PrescriptionKind = PrescriptionKind.STANDARD
    controlled_group: ControlledGroup | None = None
    realise_from: dt.date | None = None


@dataclass(frozen=True)
class IssuedPrescription:
    key: str
    drug: str
    packages: int
    units_per_package: Fraction
    daily_dose_units: Fraction
    days_of_use: Fraction
    kind: PrescriptionKind
    controlled_group: ControlledGroup | None
    validity: ValidityWindow


@dataclass(frozen=True)
class IssuedPackage:
    package_key: str
    access_code: str
    issuer: Issuer
    issued_on: dt.date
    prescriptions: tuple[IssuedPrescription, ...]


def check_prescription(issuer: Issuer, draft: PrescriptionDraft, issued_on: dt.date, prefix: str = "") -> Fraction:
    """Validate one draft; return its exact days of use. Error fields are prefixed with ``prefix``."""
    if not draft.drug.strip():
        raise PrescriptionError(f"{prefix}drug", "the prescription names no product")
    if draft.kind in PAPER_ONLY_KINDS:
        raise PrescriptionError(f"{prefix}kind", f"a {draft.kind.value} prescription is issued on paper only")
    if draft.kind is PrescriptionKind.NARCOTIC_PSYCHOTROPIC and draft.controlled_group is None:
        raise PrescriptionError(f"{prefix}controlled_group", "a narcotic or psychotropic prescription needs its group")
    if draft.controlled_group is not None and draft.kind is not PrescriptionKind.NARCOTIC_PSYCHOTROPIC:
        raise PrescriptionError(f"{prefix}kind", "a drug of a narcotic or psychotropic group is of that kind")
    validity_window(draft.kind, issued_on, draft.realise_from, f"{prefix}realise_from")
    try:
        days = days_of_use(draft.packages, draft.units_per_package, draft.daily_dose_units)
    except PrescriptionError as error:
        raise PrescriptionError(f"{prefix}{error.field}", error.message) from None
    limit = limit_days(issuer.profession, draft.controlled_group)
    if days > limit:
        shown = f"{float(days):g}" if days.denominator != 1 else str(days.numerator)
        raise PrescriptionError(
            f"{prefix}packages",
            f"the quantity lasts {shown} days of use, over the limit of {limit} days for this issuer and drug",
        )
    return days


def issue_package(
    issuer: Issuer,
    drafts: Sequence[PrescriptionDraft],
    issued_on: dt.date,
    rng: random.Random | None = None,
    taken_access_codes: Collection[str] = (),
) -> IssuedPackage:
    """One e-prescription per draft (one product each), 1 to 5 in the package, keys and access code drawn.

    ``taken_access_codes``: the codes of the patient's other packages. A pharmacy opens a package
    with code + PESEL, so one patient must never hold two packages under one code.
    """
    if not drafts:
        raise PrescriptionError("prescriptions", "a package holds at least one prescription")
    if len(drafts) > MAX_PRESCRIPTIONS_PER_PACKAGE:
        raise PrescriptionError(
            "prescriptions",
            f"a package holds at most {MAX_PRESCRIPTIONS_PER_PACKAGE} e-prescriptions, not {len(drafts)}",
        )
    checked = [(d, check_prescription(issuer, d, issued_on, f"prescriptions.{i}.")) for i, d in enumerate(drafts)]
    package_key = new_package_key(rng)
    used = {package_key}
    issued: list[IssuedPrescription] = []
    for draft, days in checked:
        key = new_prescription_key(rng)
        while key in used:
            key = new_prescription_key(rng)
        used.add(key)
        issued.append(
            IssuedPrescription(
                key=key,
                drug=draft.drug.strip(),
                packages=draft.packages,
                units_per_package=Fraction(draft.units_per_package),
                daily_dose_units=Fraction(draft.daily_dose_units),
                days_of_use=days,
                kind=draft.kind,
                controlled_group=draft.controlled_group,
                validity=validity_window(draft.kind, issued_on, draft.realise_from),
            )
        )
    code = new_access_code(rng)
    while code in taken_access_codes:
        code = new_access_code(rng)
    return IssuedPackage(package_key, code, issuer, issued_on, tuple(issued))

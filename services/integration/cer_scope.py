"""What CeR covers, and from when: the dated table of CeR specialties (DOMAIN.md 6), as pure data.

The law extends central e-registration step by step, so coverage is data, not code:

- from 2026-01-01 (the basic step, "etap podstawowy"): first cardiology visits (with an e-referral),
  mammography and cytology/HPV screening;
- from 2026-08-01, per the Minister of Health's *draft* regulation (reported by the Polish press in
  December 2025): vascular diseases, infectious diseases, endocrinology, hepatology, immunology,
  nephrology, neonatology, tuberculosis and lung diseases (with cystic fibrosis);
- by 2029-12-31: all NFZ outpatient specialist care ("AOS"). The remaining specialties have no names
  of their own in any source yet, so they share one entry, ``other_outpatient_specialist``: a work
  type or location marked with it (a rheumatology clinic, say) is covered from that date, and an
  operator can move the date when the law names it. An entry rather than a note, because a facility
  can declare its contract and see its deadline today.

This module is the seed (``SEED``) and the rule (``covered``); the integration service owns the
operators' corrections (kept with their history) and tells the scheduling service of each one by
an event, which scheduling keeps as a local replica. Both read the table through ``effective``.
The vocabulary of specialty names is closed (``CerSpecialty``): work types, locations and contracts
store these names, and clients build against the enum, so a new name is a code change; its date is
data.

It also carries the screening programmes' age ranges (mammography women 45-74, cytology/HPV women
25-64): a booking outside them is warned about, never refused (eligibility is the programme's rule;
the facility decides).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from stdnum.exceptions import ValidationError as StdnumValidationError
from stdnum.pl import pesel as stdnum_pesel


class CerSpecialty(enum.StrEnum):
    cardiology = "cardiology"
    mammography = "mammography"
    hpv_cytology = "hpv_cytology"
    vascular_diseases = "vascular_diseases"
    infectious_diseases = "infectious_diseases"
    endocrinology = "endocrinology"
    hepatology = "hepatology"
    immunology = "immunology"
    nephrology = "nephrology"
    neonatology = "neonatology"
    pulmonology_tuberculosis = "pulmonology_tuberculosis"
    other_outpatient_specialist = "other_outpatient_specialist"


@dataclass(frozen=True)
class Coverage:
    """One row of the table: CeR covers ``specialty`` from ``covered_from`` (inclusive)."""

    specialty: CerSpecialty
    covered_from: dt.date
    source: str
    draft: bool  # the source is a draft (of a regulation), not law in force


BASIC_STEP = dt.date(2026, 1, 1)
SECOND_STEP = dt.date(2026, 8, 1)
ALL_OUTPATIENT_SPECIALIST_CARE = dt.date(2029, 12, 31)

_BASIC_SOURCE = (
    "ustawa o świadczeniach opieki zdrowotnej, art. 154a; MZ, centralna e-rejestracja, etap podstawowy "
    "(kardiologia: pierwsze wizyty ze skierowaniem, mammografia, cytologia/HPV)"
)
_SECOND_SOURCE = "projekt rozporządzenia Ministra Zdrowia (prasa, grudzień 2025): drugi etap od 2026-08-01"
_LAST_SOURCE = "zapowiedź MZ (prasa, grudzień 2025): całe ambulatoryjne lecznictwo specjalistyczne NFZ do 2029-12-31"

SEED: tuple[Coverage, ...] = (
    *(
        Coverage(s, BASIC_STEP, _BASIC_SOURCE, draft=False)
        for s in (CerSpecialty.cardiology, CerSpecialty.mammography, CerSpecialty.hpv_cytology)
    ),
    *(
        Coverage(s, SECOND_STEP, _SECOND_SOURCE, draft=True)
        for s in (
            CerSpecialty.vascular_diseases,
            CerSpecialty.infectious_diseases,
            CerSpecialty.endocrinology,
            CerSpecialty.hepatology,
            CerSpecialty.immunology,
            CerSpecialty.nephrology,
            CerSpecialty.neonatology,
            CerSpecialty.pulmonology_tuberculosis,
        )
    ),
    Coverage(CerSpecialty.other_outpatient_specialist, ALL_OUTPATIENT_SPECIALIST_CARE, _LAST_SOURCE, draft=True),
)

Table = Mapping[CerSpecialty, Coverage]


def effective(corrections: Iterable[Coverage] = (), seed: Iterable[Coverage] = SEED) -> dict[CerSpecialty, Coverage]:
    """The seed with each operator correction in place of its specialty's seeded row, in
    vocabulary order (a correction of a specialty the seed lacks adds it)."""
    table = {entry.specialty: entry for entry in seed}
    table.update({entry.specialty: entry for entry in corrections})
    return {s: table[s] for s in CerSpecialty if s in table}


def covered(specialty: str | None, on: dt.date, table: Table) -> Coverage | None:
    """The table's entry when CeR covers ``specialty`` on the day ``on``, else None.

    The one rule every caller asks (publishing a schedule, compliance, the CeR queue): a schedule
    in July and one in August of the same specialty are judged as the law was on each day.
    """
    if specialty is None:
        return None
    try:
        key = CerSpecialty(specialty)
    except ValueError:
        return None  # a name outside the vocabulary is covered by nothing
    entry = table.get(key)
    return entry if entry is not None and on >= entry.covered_from else None


# ----------------------------------------------------------------------------- screening ages


@dataclass(frozen=True)
class ScreeningAges:
    sex: str  # "F": the programmes named here are for women
    youngest: int
    oldest: int  # inclusive: a woman of 74 is still in the mammography programme


SCREENING_AGES: Mapping[CerSpecialty, ScreeningAges] = {
    CerSpecialty.mammography: ScreeningAges("F", 45, 74),
    CerSpecialty.hpv_cytology: ScreeningAges("F", 25, 64),
}
_SCREENING_NAMES = {str(CerSpecialty.mammography): "mammography", str(CerSpecialty.hpv_cytology): "cytology/HPV"}


def age_on(birth_date: dt.date, on: dt.date) -> int:
    """Completed years on ``on`` (a birthday on 29 February counts from 1 March in other years)."""
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


def screening_warning(specialty: str | None, pesel: str, on: dt.date) -> str | None:
    """Why the patient falls outside the screening programme of ``specialty`` on the visit day
    ``on`` (sex and age from the PESEL), or None when they fit or no programme applies."""
    if specialty not in _SCREENING_NAMES:
        return None
    programme, ages = _SCREENING_NAMES[specialty], SCREENING_AGES[CerSpecialty(specialty)]
    try:
        birth, sex = stdnum_pesel.get_birth_date(pesel), stdnum_pesel.get_gender(pesel)
    except StdnumValidationError:
        return None  # PESELs are validated at the edge; nothing to say about one that cannot be read
    span = f"women aged {ages.youngest}-{ages.oldest}"
    if sex != ages.sex:
        return f"the {programme} screening programme is for {span}; the patient's PESEL is a man's"
    age = age_on(birth, on)
    if not ages.youngest <= age <= ages.oldest:
        return f"the {programme} screening programme is for {span}; the patient is {age} on the visit day"
    return None

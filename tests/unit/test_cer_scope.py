"""The dated CeR table (DOMAIN.md 6): the seed, an operator's correction in its place, and the one
rule "does CeR cover this specialty on day D", at each step's boundary; the screening ages."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.integration.cer_scope import (
    SCREENING_AGES,
    SEED,
    CerSpecialty,
    Coverage,
    age_on,
    covered,
    effective,
    screening_warning,
)

DAY = dt.timedelta(days=1)
TABLE = effective()
BASIC = ["cardiology", "mammography", "hpv_cytology"]
SECOND = [
    "vascular_diseases",
    "infectious_diseases",
    "endocrinology",
    "hepatology",
    "immunology",
    "nephrology",
    "neonatology",
    "pulmonology_tuberculosis",
]
# PESELs (valid checksums): a woman born 1976-05-15, a man born 1944-05-14, a woman born 2002-07-08.
WOMAN_1976 = "76051512344"
MAN_1944 = "44051401359"
WOMAN_2002 = "02270803624"


# ----------------------------------------------------------------------------- the seed


def test_the_seed_gives_every_name_of_the_vocabulary_one_entry() -> None:
    assert [e.specialty for e in SEED] == list(CerSpecialty)
    assert list(TABLE) == list(CerSpecialty)


def test_the_basic_step_is_law_from_2026_01_01() -> None:
    assert {(str(e.specialty), e.covered_from, e.draft) for e in SEED if e.specialty in BASIC} == {
        (s, dt.date(2026, 1, 1), False) for s in BASIC
    }


def test_the_second_step_is_from_2026_08_01_and_marked_as_taken_from_a_draft() -> None:
    second = [e for e in SEED if e.specialty in SECOND]
    assert sorted(str(e.specialty) for e in second) == sorted(SECOND)
    assert {(e.covered_from, e.draft) for e in second} == {(dt.date(2026, 8, 1), True)}
    assert all("projekt" in e.source for e in second)


def test_all_other_outpatient_specialist_care_is_covered_by_2029_12_31_from_an_announcement() -> None:
    entry = TABLE[CerSpecialty.other_outpatient_specialist]
    assert (entry.covered_from, entry.draft) == (dt.date(2029, 12, 31), True)


# ----------------------------------------------------------------------------- covered on day D


@pytest.mark.parametrize("specialty", SECOND)
def test_a_second_step_specialty_is_not_covered_on_july_31_and_covered_on_august_1(specialty: str) -> None:
    assert covered(specialty, dt.date(2026, 7, 31), TABLE) is None
    assert covered(specialty, dt.date(2026, 8, 1), TABLE) == TABLE[CerSpecialty(specialty)]


@pytest.mark.parametrize("specialty", BASIC)
def test_a_basic_step_specialty_is_covered_from_new_year_2026(specialty: str) -> None:
    assert covered(specialty, dt.date(2025, 12, 31), TABLE) is None
    assert covered(specialty, dt.date(2026, 1, 1), TABLE) is not None


def test_the_remaining_specialist_care_is_covered_from_its_last_day() -> None:
    assert covered("other_outpatient_specialist", dt.date(2029, 12, 30), TABLE) is None
    assert covered("other_outpatient_specialist", dt.date(2029, 12, 31), TABLE) is not None


@pytest.mark.parametrize("specialty", [None, "", "dermatology", "Cardiology", "cardiology "])
def test_no_specialty_or_a_name_outside_the_vocabulary_is_covered_by_nothing(specialty: str | None) -> None:
    assert covered(specialty, dt.date(2030, 1, 1), TABLE) is None


def test_an_operator_correction_takes_the_place_of_the_seeded_entry_and_only_of_it() -> None:
    later = Coverage(CerSpecialty.endocrinology, dt.date(2026, 9, 1), "rozporządzenie MZ z dnia ...", draft=False)
    table = effective([later])
    assert table[CerSpecialty.endocrinology] == later
    assert covered("endocrinology", dt.date(2026, 8, 31), table) is None
    assert covered("endocrinology", dt.date(2026, 9, 1), table) == later
    assert {k: v for k, v in table.items() if k != CerSpecialty.endocrinology} == {
        k: v for k, v in TABLE.items() if k != CerSpecialty.endocrinology
    }
    assert list(table) == list(CerSpecialty)  # the vocabulary's order, whatever the corrections' order


def test_an_entry_missing_from_the_seed_is_added_by_a_correction() -> None:
    only_cardiology = [e for e in SEED if e.specialty == CerSpecialty.cardiology]
    added = Coverage(CerSpecialty.nephrology, dt.date(2027, 1, 1), "x", draft=True)
    table = effective([added], seed=only_cardiology)
    assert list(table) == [CerSpecialty.cardiology, CerSpecialty.nephrology]
    assert covered("hepatology", dt.date(2030, 1, 1), table) is None


@given(
    entry=st.sampled_from(SEED),
    covered_from=st.dates(min_value=dt.date(2020, 1, 1), max_value=dt.date(2100, 12, 31)),
    on=st.dates(min_value=dt.date(2019, 1, 1), max_value=dt.date(2101, 12, 31)),
)
def test_covered_exactly_from_the_entrys_day_on(entry: Coverage, covered_from: dt.date, on: dt.date) -> None:
    corrected = Coverage(entry.specialty, covered_from, entry.source, entry.draft)
    table = effective([corrected])
    assert (covered(str(entry.specialty), on, table) is not None) == (on >= covered_from)
    if on >= covered_from:
        assert covered(str(entry.specialty), on + DAY, table) is not None  # once covered, covered for good


# ----------------------------------------------------------------------------- screening ages


def test_the_programmes_ages_are_those_of_domain_md() -> None:
    assert {(str(k), v.sex, v.youngest, v.oldest) for k, v in SCREENING_AGES.items()} == {
        ("mammography", "F", 45, 74),
        ("hpv_cytology", "F", 25, 64),
    }


@pytest.mark.parametrize(
    ("birth", "on", "age"),
    [
        (dt.date(1976, 5, 15), dt.date(2021, 5, 14), 44),
        (dt.date(1976, 5, 15), dt.date(2021, 5, 15), 45),
        (dt.date(2000, 2, 29), dt.date(2025, 2, 28), 24),
        (dt.date(2000, 2, 29), dt.date(2025, 3, 1), 25),
    ],
)
def test_age_counts_completed_years(birth: dt.date, on: dt.date, age: int) -> None:
    assert age_on(birth, on) == age


def test_mammography_for_a_woman_warns_the_day_before_45_and_not_on_her_birthday() -> None:
    warned = screening_warning("mammography", WOMAN_1976, dt.date(2021, 5, 14))
    assert warned == "the mammography screening programme is for women aged 45-74; the patient is 44 on the visit day"
    assert screening_warning("mammography", WOMAN_1976, dt.date(2021, 5, 15)) is None


def test_mammography_warns_from_the_75th_birthday() -> None:
    assert screening_warning("mammography", WOMAN_1976, dt.date(2051, 5, 14)) is None  # still 74
    assert "is 75" in (screening_warning("mammography", WOMAN_1976, dt.date(2051, 5, 15)) or "")


def test_cytology_covers_women_of_25_to_64() -> None:
    assert "is 24" in (screening_warning("hpv_cytology", WOMAN_2002, dt.date(2027, 7, 7)) or "")
    assert screening_warning("hpv_cytology", WOMAN_2002, dt.date(2027, 7, 8)) is None
    assert screening_warning("hpv_cytology", WOMAN_1976, dt.date(2041, 5, 14)) is None  # 64
    assert "is 65" in (screening_warning("hpv_cytology", WOMAN_1976, dt.date(2041, 5, 15)) or "")


@pytest.mark.parametrize("specialty", ["mammography", "hpv_cytology"])
def test_a_man_is_warned_whatever_his_age(specialty: str) -> None:
    warned = screening_warning(specialty, MAN_1944, dt.date(2000, 1, 1))  # 55: inside both age spans
    assert warned is not None and "a man's" in warned


@pytest.mark.parametrize("specialty", [None, "cardiology", "endocrinology", "unknown"])
def test_no_warning_outside_screening(specialty: str | None) -> None:
    assert screening_warning(specialty, MAN_1944, dt.date(2026, 12, 1)) is None

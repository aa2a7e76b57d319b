"""Issuing: professions, exact quantity limits, validity windows of every kind, packages of at most 5."""

from __future__ import annotations

import datetime as dt
import random
from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.prescriptions.domain import (
    KEY_DIGITS,
    ControlledGroup,
    Issuer,
    PrescriptionDraft,
    PrescriptionError,
    PrescriptionKind,
    Profession,
    check_prescription,
    days_of_use,
    issue_package,
    limit_days,
    new_access_code,
    new_package_key,
    new_prescription_key,
    parse_profession,
    validity_window,
)

ISSUED = dt.date(2026, 3, 1)
K = PrescriptionKind
LIMITS = {"doctor": 360, "dentist": 360, "feldsher": 360, "nurse": 180, "midwife": 180}


def issuer(profession: str) -> Issuer:
    return Issuer("pr-1", Profession(profession))


def draft(
    units: int | Decimal | Fraction,
    *,
    packages: int = 1,
    dose: int | Decimal | Fraction = 1,
    kind: PrescriptionKind = K.STANDARD,
    group: ControlledGroup | None = None,
    realise_from: dt.date | None = None,
    drug: str = "Euthyrox N 50",
) -> PrescriptionDraft:
    return PrescriptionDraft(drug, packages, units, dose, kind, group, realise_from)


# --- who may issue ---------------------------------------------------------------------------


@pytest.mark.parametrize("profession", ["doctor", "dentist", "nurse", "midwife", "feldsher"])
def test_the_five_professions_may_issue(profession: str) -> None:
    assert parse_profession(profession) is Profession(profession)


@pytest.mark.parametrize("profession", ["pharmacist", "vet", "", "Doctor"])
def test_others_may_not(profession: str) -> None:
    with pytest.raises(PrescriptionError) as error:
        parse_profession(profession)
    assert error.value.field == "profession"


# --- quantity limits -------------------------------------------------------------------------


def test_days_of_use_is_exact() -> None:
    assert days_of_use(3, 30, Decimal("1.5")) == 60
    assert days_of_use(1, 721, 2) == Fraction(721, 2)
    assert days_of_use(1, 100, 3) == Fraction(100, 3)
    assert days_of_use(2, Fraction(1, 3), Fraction(1, 3)) == 2


@pytest.mark.parametrize(("profession", "limit"), LIMITS.items())
def test_profession_limit_boundary(profession: str, limit: int) -> None:
    who = issuer(profession)
    assert check_prescription(who, draft(limit), ISSUED) == limit
    assert check_prescription(who, draft(limit * 2, dose=2), ISSUED) == limit
    for over in (draft(2 * limit + 1, dose=2), draft(limit + 1)):
        with pytest.raises(PrescriptionError) as error:
            check_prescription(who, over, ISSUED)
        assert error.value.field == "packages"
        assert str(limit) in error.value.message


def test_360_allowed_360_5_and_361_refused_for_a_doctor() -> None:
    doctor = issuer("doctor")
    assert check_prescription(doctor, draft(120, packages=3), ISSUED) == 360
    with pytest.raises(PrescriptionError, match=r"360\.5"):
        check_prescription(doctor, draft(721, dose=2), ISSUED)
    with pytest.raises(PrescriptionError):
        check_prescription(doctor, draft(361), ISSUED)
    with pytest.raises(PrescriptionError):  # 360 + 1/1000 day: exact, no rounding
        check_prescription(doctor, draft(Decimal("360.001")), ISSUED)


def test_180_for_a_nurse_and_midwife() -> None:
    for who in (issuer("nurse"), issuer("midwife")):
        assert check_prescription(who, draft(90, packages=2), ISSUED) == 180
        with pytest.raises(PrescriptionError):
            check_prescription(who, draft(361, dose=2), ISSUED)  # 180.5
        with pytest.raises(PrescriptionError):
            check_prescription(who, draft(181), ISSUED)


@pytest.mark.parametrize("group", [ControlledGroup.I_N, ControlledGroup.II_P])
@pytest.mark.parametrize("profession", list(LIMITS))
def test_90_days_for_group_i_n_and_ii_p_whoever_issues(profession: str, group: ControlledGroup) -> None:
    who = issuer(profession)
    narcotic = {"kind": K.NARCOTIC_PSYCHOTROPIC, "group": group}
    assert limit_days(who.profession, group) == 90
    assert check_prescription(who, draft(90, **narcotic), ISSUED) == 90  # type: ignore[arg-type]
    for over in (draft(181, dose=2, **narcotic), draft(91, **narcotic)):  # type: ignore[arg-type]
        with pytest.raises(PrescriptionError) as error:
            check_prescription(who, over, ISSUED)
        assert error.value.field == "packages"


@pytest.mark.parametrize(
    "group", [ControlledGroup.II_N, ControlledGroup.III_P, ControlledGroup.IV_P, ControlledGroup.I_P]
)
def test_other_controlled_groups_keep_the_profession_limit(group: ControlledGroup) -> None:
    assert limit_days(Profession.DOCTOR, group) == 360
    assert limit_days(Profession.NURSE, group) == 180
    assert check_prescription(issuer("doctor"), draft(360, kind=K.NARCOTIC_PSYCHOTROPIC, group=group), ISSUED) == 360


def test_controlled_group_and_kind_must_agree() -> None:
    with pytest.raises(PrescriptionError) as error:
        check_prescription(issuer("doctor"), draft(10, kind=K.NARCOTIC_PSYCHOTROPIC), ISSUED)
    assert error.value.field == "controlled_group"
    with pytest.raises(PrescriptionError) as error:
        check_prescription(issuer("doctor"), draft(10, group=ControlledGroup.I_N), ISSUED)
    assert error.value.field == "kind"


@pytest.mark.parametrize(
    ("packages", "units", "dose", "field"),
    [
        (0, 10, 1, "packages"),
        (-1, 10, 1, "packages"),
        (1, 0, 1, "units_per_package"),
        (1, 10, 0, "daily_dose_units"),
        (1, 10, Decimal("-1"), "daily_dose_units"),
        (1, 10, Decimal("NaN"), "daily_dose_units"),
        (1, 10.0, 1, "units_per_package"),
        (1, 10, 0.5, "daily_dose_units"),
    ],
)
def test_bad_quantities_name_the_field(packages: int, units: object, dose: object, field: str) -> None:
    bad = PrescriptionDraft("X", packages, units, dose)  # type: ignore[arg-type]
    with pytest.raises(PrescriptionError) as error:
        check_prescription(issuer("doctor"), bad, ISSUED)
    assert error.value.field == field


@given(
    st.integers(1, 20),
    st.integers(1, 500),
    st.fractions(min_value=Fraction(1, 8), max_value=20),
    st.sampled_from(list(LIMITS)),
)
def test_limit_property(packages: int, units: int, dose: Fraction, profession: str) -> None:
    who = issuer(profession)
    exact = Fraction(packages * units) / dose
    d = draft(units, packages=packages, dose=dose)
    if exact <= LIMITS[profession]:
        assert check_prescription(who, d, ISSUED) == exact
    else:
        with pytest.raises(PrescriptionError):
            check_prescription(who, d, ISSUED)


# --- validity --------------------------------------------------------------------------------

WINDOWS = [
    (K.STANDARD, 30),
    (K.EXTENDED, 365),
    (K.ANTIBIOTIC, 7),
    (K.NARCOTIC_PSYCHOTROPIC, 30),
    (K.IMMUNOLOGICAL, 120),
    (K.TARGET_IMPORT, 120),
]


@pytest.mark.parametrize(("kind", "days"), WINDOWS)
def test_window_from_issue_date_first_and_last_day(kind: PrescriptionKind, days: int) -> None:
    window = validity_window(kind, ISSUED)
    assert window.first_day == ISSUED
    assert window.last_day == ISSUED + dt.timedelta(days=days)
    assert not window.contains(ISSUED - dt.timedelta(days=1))
    assert window.contains(ISSUED)
    assert window.contains(window.last_day)
    assert not window.contains(window.last_day + dt.timedelta(days=1))


def test_domain_example_issued_1_march_30_days_through_31_march() -> None:
    window = validity_window(K.STANDARD, dt.date(2026, 3, 1))
    assert window.last_day == dt.date(2026, 3, 31)
    assert validity_window(K.ANTIBIOTIC, dt.date(2026, 3, 1)).last_day == dt.date(2026, 3, 8)
    assert validity_window(K.EXTENDED, dt.date(2026, 3, 1)).last_day == dt.date(2027, 3, 1)
    assert validity_window(K.EXTENDED, dt.date(2027, 3, 1)).last_day == dt.date(2028, 2, 29)  # leap year
    assert validity_window(K.IMMUNOLOGICAL, dt.date(2026, 3, 1)).last_day == dt.date(2026, 6, 29)


@pytest.mark.parametrize(("kind", "days"), [(K.STANDARD, 30), (K.EXTENDED, 365), (K.ANTIBIOTIC, 7)])
def test_realise_from_moves_the_window(kind: PrescriptionKind, days: int) -> None:
    start = dt.date(2026, 4, 10)
    window = validity_window(kind, ISSUED, start)
    assert not window.contains(start - dt.timedelta(days=1))
    assert not window.contains(ISSUED)
    assert window.contains(start)
    assert window.contains(start + dt.timedelta(days=days))
    assert not window.contains(start + dt.timedelta(days=days + 1))


def test_realise_from_on_the_issue_date_is_the_plain_window() -> None:
    assert validity_window(K.STANDARD, ISSUED, ISSUED) == validity_window(K.STANDARD, ISSUED)


@pytest.mark.parametrize("kind", [K.STANDARD, K.EXTENDED, K.ANTIBIOTIC])
def test_realise_from_before_issue_refused(kind: PrescriptionKind) -> None:
    with pytest.raises(PrescriptionError) as error:
        validity_window(kind, ISSUED, ISSUED - dt.timedelta(days=1))
    assert error.value.field == "realise_from"


@pytest.mark.parametrize("kind", [K.NARCOTIC_PSYCHOTROPIC, K.IMMUNOLOGICAL, K.TARGET_IMPORT])
def test_kinds_counted_from_issue_date_refuse_realise_from(kind: PrescriptionKind) -> None:
    with pytest.raises(PrescriptionError) as error:
        validity_window(kind, ISSUED, dt.date(2026, 3, 5))
    assert error.value.field == "realise_from"


def test_narcotic_with_realise_from_refused_at_issue_naming_the_item() -> None:
    bad = draft(10, kind=K.NARCOTIC_PSYCHOTROPIC, group=ControlledGroup.I_N, realise_from=dt.date(2026, 3, 2))
    with pytest.raises(PrescriptionError) as error:
        issue_package(issuer("doctor"), [draft(10), bad], ISSUED)
    assert error.value.field == "prescriptions.1.realise_from"


def test_target_import_is_paper_only() -> None:
    with pytest.raises(PrescriptionError) as error:
        issue_package(issuer("doctor"), [draft(10, kind=K.TARGET_IMPORT)], ISSUED)
    assert error.value.field == "prescriptions.0.kind"


# --- packages --------------------------------------------------------------------------------


def test_package_of_five_issues_one_prescription_per_drug() -> None:
    drafts = [draft(30, drug=f"Drug {n}") for n in range(5)]
    package = issue_package(issuer("doctor"), drafts, ISSUED, random.Random(7))
    assert [p.drug for p in package.prescriptions] == [f"Drug {n}" for n in range(5)]
    assert len({p.key for p in package.prescriptions} | {package.package_key}) == 6
    assert len(package.package_key) == KEY_DIGITS == 44 and package.package_key.isdigit()
    assert len(package.access_code) == 4 and package.access_code.isdigit()
    assert all(p.validity.last_day == dt.date(2026, 3, 31) for p in package.prescriptions)
    assert package.issued_on == ISSUED


def test_six_prescriptions_refused_naming_the_field() -> None:
    with pytest.raises(PrescriptionError) as error:
        issue_package(issuer("doctor"), [draft(30, drug=f"D{n}") for n in range(6)], ISSUED)
    assert error.value.field == "prescriptions"
    assert "5" in error.value.message


def test_empty_package_refused() -> None:
    with pytest.raises(PrescriptionError) as error:
        issue_package(issuer("doctor"), [], ISSUED)
    assert error.value.field == "prescriptions"


def test_over_limit_item_in_a_package_names_its_index() -> None:
    with pytest.raises(PrescriptionError) as error:
        issue_package(issuer("nurse"), [draft(30), draft(30), draft(181)], ISSUED)
    assert error.value.field == "prescriptions.2.packages"


def test_blank_drug_refused() -> None:
    with pytest.raises(PrescriptionError) as error:
        issue_package(issuer("doctor"), [draft(30, drug="  ")], ISSUED)
    assert error.value.field == "prescriptions.0.drug"


def test_issuing_is_deterministic_with_a_seeded_source() -> None:
    a = issue_package(issuer("doctor"), [draft(30)], ISSUED, random.Random(1))
    b = issue_package(issuer("doctor"), [draft(30)], ISSUED, random.Random(1))
    assert a == b


# --- identifiers -----------------------------------------------------------------------------


def test_identifier_shapes_and_zero_padding() -> None:
    class Zero(random.Random):
        def randrange(self, *args: object, **kwargs: object) -> int:
            return 0

    assert new_access_code(Zero()) == "0000"
    assert new_package_key(Zero()) == "0" * 44
    assert new_prescription_key(Zero()) == "0" * 44


def test_identifiers_from_secrets_by_default() -> None:
    codes = {new_access_code() for _ in range(200)}
    assert all(len(c) == 4 and c.isdigit() for c in codes)
    assert len(codes) > 100
    keys = {new_prescription_key() for _ in range(50)}
    assert len(keys) == 50 and all(len(k) == 44 and k.isdigit() for k in keys)


def test_identical_keys_from_the_source_are_redrawn() -> None:
    class Repeating(random.Random):
        def __init__(self) -> None:
            super().__init__(0)
            self.values = iter([5, 5, 5, 6, 1234])

        def randrange(self, *args: object, **kwargs: object) -> int:
            return next(self.values)

    package = issue_package(issuer("doctor"), [draft(30)], ISSUED, Repeating())
    assert package.package_key == "5".zfill(44)
    assert package.prescriptions[0].key == "6".zfill(44)
    assert package.access_code == "1234"


def test_a_patients_new_package_never_reuses_the_code_of_their_other_packages() -> None:
    issuer = Issuer("p1", Profession.DOCTOR)
    draft = PrescriptionDraft("Metformax 500", 1, 30, 1)
    taken = {f"{n:04d}" for n in range(10_000) if n != 4321}  # every code but one is in use

    package = issue_package(issuer, [draft], dt.date(2026, 11, 24), random.Random(7), taken_access_codes=taken)

    assert package.access_code == "4321"

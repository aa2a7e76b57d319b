"""PESEL (python-stdnum) and NPWZ (the licence number's check digit)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared.identifiers import Npwz, Pesel, npwz_check_digit_ok, pesel_birth_date, validate_npwz, validate_pesel


class Person(BaseModel):
    pesel: Pesel


class Licence(BaseModel):
    npwz: Npwz


@pytest.mark.parametrize("value", ["44051401359", "02070803628"])
def test_valid_pesels_are_accepted(value: str) -> None:
    assert validate_pesel(value) == value
    assert Person(pesel=value).pesel == value


@pytest.mark.parametrize(
    "value",
    [
        "44051401358",  # checksum off by one
        "02070803627",
        "4405140135",  # 10 digits
        "440514013590",  # 12 digits
        "4405140135a",  # a letter
        "ABCDEFGHIJK",
        "",
        "44053201350",  # 32 May: no such birth date
        "٤٤٠٥١٤٠١٣٥٩",  # the valid 44051401359 in Arabic-Indic digits
        "４４０５１４０１３５９",  # ... in full-width digits
        "4405140135٩",  # one digit of another script
        "440514-01359",  # python-stdnum alone would drop the hyphen
        "4405140135 9",
    ],
)
def test_invalid_pesels_are_refused(value: str) -> None:
    with pytest.raises(ValueError, match="not a valid PESEL"):
        validate_pesel(value)
    with pytest.raises(ValidationError) as caught:
        Person(pesel=value)
    assert caught.value.errors()[0]["loc"] == ("pesel",)


def test_the_birth_date_is_read_from_the_pesel_including_the_century() -> None:
    assert pesel_birth_date("44051401359") == dt.date(1944, 5, 14)
    assert pesel_birth_date("02070803628") == dt.date(1902, 7, 8)


@pytest.mark.parametrize("value", ["5425740", "2234567", "3123456"])
def test_doctor_npwz_with_a_correct_check_digit_is_accepted(value: str) -> None:
    assert npwz_check_digit_ok(value)
    assert Licence(npwz=value).npwz == value


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("5425741", "wrong check digit"),
        ("1425740", "wrong check digit"),
        ("0000000", "a check digit of 0 is never issued"),
        ("0123450", "a check digit of 0 is never issued"),
        ("542574", "six digits"),
        ("54257400", "eight digits"),
        ("542574a", "a letter"),
        ("", "empty"),
        ("1234567X", "only P or A after a nurse's number"),
        ("123456P", "a nurse's number has seven digits"),
        ("٥٤٢٥٧٤٠", "the valid 5425740 in Arabic-Indic digits"),
        ("542574٠", "one Arabic-Indic digit"),
        ("５４２５７４０", "full-width digits"),
        ("١٢٣٤٥٦٧P", "a nurse's number in Arabic-Indic digits"),
    ],
)
def test_invalid_npwz_is_refused(value: str, why: str) -> None:
    assert not npwz_check_digit_ok(value), why
    with pytest.raises(ValueError, match="not a valid NPWZ"):
        validate_npwz(value)
    with pytest.raises(ValidationError):
        Licence(npwz=value)


def test_a_trailing_newline_is_no_valid_check_digit_and_no_crash() -> None:
    # ``$`` matches before a final newline: the check must not then read the newline as a digit.
    assert npwz_check_digit_ok("5425740\n") is False
    assert validate_npwz(" 5425740\n") == "5425740"  # surrounding whitespace is trimmed, as before


def test_a_check_digit_of_ten_can_never_match() -> None:
    # 0,0,0,0,2,0 weighted 1..6 sums to 10: no single digit can carry a check of 10.
    assert not any(npwz_check_digit_ok(f"{first}000020") for first in range(10))


@pytest.mark.parametrize(
    ("value", "stored"), [("1234567P", "1234567P"), ("7654321A", "7654321A"), ("1234567p", "1234567P")]
)
def test_nurse_and_midwife_numbers_are_accepted_without_a_check_digit(value: str, stored: str) -> None:
    assert validate_npwz(value) == stored
    assert Licence(npwz=value).npwz == stored


# ----------------------------------------------------------------------------- properties

# Pure functions: how long an example takes says something about the machine's load (a collection of a
# long session's heap), nothing about the rule; a deadline only made these fail on a busy machine.
NO_DEADLINE = settings(deadline=None)

PESEL_WEIGHTS = (1, 3, 7, 9, 1, 3, 7, 9, 1, 3)


def build_pesel(born: dt.date, serial: int) -> str:
    month = born.month + (20 if born.year >= 2000 else 0)
    body = f"{born.year % 100:02d}{month:02d}{born.day:02d}{serial:04d}"
    check = (10 - sum(int(d) * w for d, w in zip(body, PESEL_WEIGHTS, strict=True)) % 10) % 10
    return body + str(check)


@NO_DEADLINE
@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2020, 12, 31)), st.integers(0, 9999))
def test_every_pesel_with_a_correct_checksum_is_accepted_and_its_birth_date_read(born: dt.date, serial: int) -> None:
    pesel = build_pesel(born, serial)
    assert validate_pesel(pesel) == pesel
    assert pesel_birth_date(pesel) == born


@NO_DEADLINE
@given(
    st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2020, 12, 31)),
    st.integers(0, 9999),
    st.integers(1, 9),
)
def test_a_wrong_check_digit_is_always_refused(born: dt.date, serial: int, shift: int) -> None:
    pesel = build_pesel(born, serial)
    wrong = pesel[:10] + str((int(pesel[10]) + shift) % 10)
    with pytest.raises(ValueError):
        validate_pesel(wrong)


@NO_DEADLINE
@given(st.text(alphabet="0123456789", min_size=6, max_size=6))
def test_exactly_one_first_digit_makes_a_doctors_npwz_valid(body: str) -> None:
    check = sum(int(d) * w for w, d in enumerate(body, start=1)) % 11
    valid_firsts = [first for first in "0123456789" if npwz_check_digit_ok(first + body)]
    assert valid_firsts == ([] if check in (0, 10) else [str(check)])

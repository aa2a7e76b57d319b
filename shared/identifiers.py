"""National identifiers: PESEL (python-stdnum) and NPWZ (the licence number's check digit)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated

from pydantic import AfterValidator
from stdnum.exceptions import ValidationError as StdnumValidationError
from stdnum.pl import pesel as stdnum_pesel

# ASCII digits only: ``\d`` (and ``str.isdigit``) also match other scripts' digits, e.g. Arabic-Indic
# '٥', which ``int`` reads as 5 — such a number would pass the check and reach the registers as is.
_NPWZ_DIGITS = re.compile(r"[0-9]{7}")
# Nurses and midwives carry a 7-digit number from their chamber followed by P or A; it has no
# check digit of the doctors' kind.
_NPWZ_NURSE = re.compile(r"[0-9]{7}[PA]")


_PESEL = re.compile(r"[0-9]{11}")


def validate_pesel(value: str) -> str:
    # Exactly 11 ASCII digits as sent: python-stdnum would first fold full-width digits to ASCII and
    # drop spaces and hyphens, so a value other than the one stored would pass for it.
    if not _PESEL.fullmatch(value):
        raise ValueError("not a valid PESEL (11 digits with a correct checksum and birth date)")
    try:
        return str(stdnum_pesel.validate(value))
    except StdnumValidationError as exc:
        raise ValueError("not a valid PESEL (11 digits with a correct checksum and birth date)") from exc


def pesel_birth_date(value: str) -> dt.date:
    return stdnum_pesel.get_birth_date(value)


def npwz_check_digit_ok(value: str) -> bool:
    """Doctor/dentist NPWZ: the first digit is (Σ digit_i × i for the next six) mod 11, never 0."""
    if not _NPWZ_DIGITS.fullmatch(value):
        return False
    check = sum(int(d) * weight for weight, d in enumerate(value[1:], start=1)) % 11
    return check != 0 and check != 10 and check == int(value[0])


def validate_npwz(value: str) -> str:
    value = value.strip().upper()
    if npwz_check_digit_ok(value) or _NPWZ_NURSE.fullmatch(value):
        return value
    raise ValueError("not a valid NPWZ (7 digits whose first is the check digit, or 7 digits + P/A for nurses)")


Pesel = Annotated[str, AfterValidator(validate_pesel)]
Npwz = Annotated[str, AfterValidator(validate_npwz)]

"""Calendar months ("YYYY-MM"): orders are issued for, and realised in, whole months."""

from __future__ import annotations

import calendar
import datetime as dt
import re
from dataclasses import dataclass

from .errors import ReimbursementError

_YYYY_MM = re.compile(r"([0-9]{4})-([0-9]{2})")  # [0-9]: \d would take "２０２３" too


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month; ordered chronologically (year first), ``+ n`` moves across year ends."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12:
            raise ReimbursementError("month", f"month number must be between 1 and 12, not {self.month}")
        if not 1 <= self.year <= 9999:
            raise ReimbursementError("month", f"year must be between 1 and 9999, not {self.year}")

    @classmethod
    def parse(cls, text: str, field: str = "month") -> Month:
        """Read ``YYYY-MM`` strictly (no ``2023-1``, no day part): the API's month format."""
        match = _YYYY_MM.fullmatch(text)
        if match is None:
            raise ReimbursementError(field, f"{text!r} is not a month in the form YYYY-MM")
        year, month = int(match.group(1)), int(match.group(2))
        if not 1 <= month <= 12 or year < 1:
            raise ReimbursementError(field, f"{text!r} is not a calendar month")
        return cls(year, month)

    @classmethod
    def of(cls, day: dt.date) -> Month:
        return cls(day.year, day.month)

    @property
    def _index(self) -> int:
        return self.year * 12 + self.month - 1

    @classmethod
    def _from_index(cls, index: int) -> Month:
        year, zero_based = divmod(index, 12)
        return cls(year, zero_based + 1)

    def __add__(self, months: int) -> Month:
        return Month._from_index(self._index + months)

    def __sub__(self, other: Month) -> int:
        """How many months ``other`` lies before this one (negative when after)."""
        return self._index - other._index

    @property
    def first_day(self) -> dt.date:
        return dt.date(self.year, self.month, 1)

    @property
    def last_day(self) -> dt.date:
        return dt.date(self.year, self.month, calendar.monthrange(self.year, self.month)[1])

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


def month_span(first: Month, count: int) -> tuple[Month, ...]:
    """``count`` consecutive months starting with ``first``."""
    return tuple(first + offset for offset in range(count))

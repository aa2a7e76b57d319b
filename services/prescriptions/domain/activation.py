"""Facility activation of prescription ordering: off, demo (3 months) or full (12 months).

Source (KS-SOMED guide): demo "na okres 3 miesięcy od momentu włączenia trybu demo", full "na okres
12 miesięcy od momentu wykupienia usługi" - so for ``full`` the start date is the purchase date;
the caller passes it as ``activated_on``.

Month arithmetic: the same day number N months later, clamped to the last day of a shorter month
(2026-11-30 + 3 months = 2027-02-28; 2027-11-30 + 3 months = 2028-02-29; 2028-02-29 + 12 months =
2029-02-28). ``active_until`` is the LAST day the service is active, inclusive - the same reading
DOMAIN.md gives "N days from a date" for prescriptions (through date + N).
"""

from __future__ import annotations

import calendar
import datetime as dt
import enum
from dataclasses import dataclass

from .errors import PrescriptionError


class ServiceMode(enum.StrEnum):
    OFF = "off"
    DEMO = "demo"
    FULL = "full"


MODE_MONTHS: dict[ServiceMode, int] = {ServiceMode.DEMO: 3, ServiceMode.FULL: 12}


def add_months(day: dt.date, months: int) -> dt.date:
    """``day`` moved by whole calendar months, the day clamped to the target month's length."""
    index = day.year * 12 + (day.month - 1) + months
    year, month0 = divmod(index, 12)
    month = month0 + 1
    last = calendar.monthrange(year, month)[1]
    return dt.date(year, month, min(day.day, last))


@dataclass(frozen=True)
class ServiceActivation:
    """The facility's prescription-ordering service; ``off`` has no dates."""

    mode: ServiceMode
    activated_on: dt.date | None = None

    def __post_init__(self) -> None:
        if self.mode is ServiceMode.OFF:
            if self.activated_on is not None:
                raise PrescriptionError("activated_on", "a service that is off has no activation date")
        elif self.activated_on is None:
            raise PrescriptionError("activated_on", f"the {self.mode.value} mode needs an activation date")

    @property
    def active_until(self) -> dt.date | None:
        """Last active day, inclusive (None when off)."""
        if self.mode is ServiceMode.OFF or self.activated_on is None:
            return None
        return add_months(self.activated_on, MODE_MONTHS[self.mode])

    def is_active(self, on_date: dt.date) -> bool:
        until = self.active_until
        if until is None or self.activated_on is None:
            return False
        return self.activated_on <= on_date <= until

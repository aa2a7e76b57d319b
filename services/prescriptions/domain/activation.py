"""Facility activation of prescription ordering: off, demo (3 months) or full (12 months).

Source (KS-SOMED guide): demo "na okres 3 miesięcy od momentu włączenia trybu demo", full "na okres
12 miesięcy od momentu wykupienia usługi" - so for ``full`` the start date is the purchase date.
Both dates are the server's date, today (DOMAIN.md 2), never one the caller chooses; demo mode is
used once per facility ("Po tym czasie usługę będzie można wykupić na kolejny okres"), after which
the service can only be bought.

Choices where the source is silent (``next_activation``):
- Asking again for the mode that is running (the same mode, still active) is a change of the other
  settings (drug scope, e-mail): the period runs on unchanged - it is neither restarted nor, for
  demo, refused as a second use.
- A ``full`` mode asked for when it is not running (off, demo, or full expired) is a purchase
  starting today; ``demo`` is refused once the facility has used it, even if it was switched off or
  expired, and also for a facility in full mode that used demo before.

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


def next_activation(
    current: ServiceActivation,
    demo_used: bool,
    requested: ServiceMode,
    today: dt.date,
    activated_on: dt.date | None = None,
) -> ServiceActivation:
    """The activation after the facility asks for ``requested`` today (see the module docstring).

    ``activated_on``: the date the caller sent, if any; anything but today is refused.
    """
    if requested is ServiceMode.OFF:
        if activated_on is not None:
            raise PrescriptionError("activated_on", "a service that is off has no activation date")
        return ServiceActivation(ServiceMode.OFF)
    if activated_on is not None and activated_on != today:
        what = "purchase" if requested is ServiceMode.FULL else "activation"
        raise PrescriptionError(
            "activated_on",
            f"the {what} date is the server's date, today ({today.isoformat()}), not {activated_on.isoformat()}; "
            "leave activated_on out",
        )
    if current.mode is requested and current.is_active(today):
        return current
    if requested is ServiceMode.DEMO and demo_used:
        raise PrescriptionError(
            "mode",
            "demo mode can be used once per facility and this facility has used it: "
            "the service can now only be bought (mode full)",
        )
    return ServiceActivation(requested, today)

"""The suite's one source of "now".

Every rule that depends on the date or the instant (the realisation date, "nothing in the past",
a webhook's 300-second window) reads it from the service's clock, so a test fixes time instead of
racing the machine's: on a slow machine a second can pass between a test's ``now`` and the
service's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo


class Clock:
    """The real time."""

    def now(self) -> dt.datetime:
        """The current instant, timezone-aware (UTC)."""
        return dt.datetime.now(dt.UTC)

    def today(self, timezone: str) -> dt.date:
        """Today's date where the rules are applied (Europe/Warsaw for the suite's rules)."""
        return self.now().astimezone(ZoneInfo(timezone)).date()

    def timestamp(self) -> float:
        """Unix seconds."""
        return self.now().timestamp()


@dataclass
class FixedClock(Clock):
    """A clock that stands still until moved: for tests and scripted runs."""

    at: dt.datetime

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise ValueError("a fixed clock needs a timezone-aware instant")

    def now(self) -> dt.datetime:
        return self.at

    def advance(self, **delta: float) -> None:
        self.at += dt.timedelta(**delta)

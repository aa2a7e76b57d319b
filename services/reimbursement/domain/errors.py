"""The one exception family of the reimbursement rules; the API layer turns it into problem+json."""

from __future__ import annotations


class ReimbursementError(ValueError):
    """An eZWM rule the input breaks; ``field`` names the input at fault as the API spells it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class RealisationConflict(ReimbursementError):
    """A month the order has already had supplied: the API answers 409, not 422."""


class RulesNotLoaded(ReimbursementError):
    """The rule set in force that day is known only in shape: its amounts have not been loaded."""

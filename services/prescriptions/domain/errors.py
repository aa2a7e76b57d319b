"""The one domain error of the prescriptions service."""

from __future__ import annotations


class PrescriptionError(ValueError):
    """A prescription rule the input breaks (the API answers 422); ``field`` names the input at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message

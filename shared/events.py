"""The event envelope every service publishes and consumes."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field


class Envelope(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: uuid.UUID = Field(default_factory=uuid.uuid4)
    # Digits allowed after the first letter of a word: "integration.p1.delivery_failed".
    type: str = Field(pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*){2,}$", examples=["scheduling.booking.created"])
    version: int = 1
    occurred_at: dt.datetime = Field(default_factory=lambda: dt.datetime.now(dt.UTC))
    facility_id: str | None = None
    correlation_id: str | None = None
    payload: dict[str, Any] = Field(default_factory=dict)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        return cls.model_validate_json(raw)


class EventPayload(BaseModel):
    """Base of every typed payload; a subclass names its event type in ``event_type``."""

    model_config = ConfigDict(frozen=True)
    event_type: ClassVar[str]
    version: ClassVar[int] = 1

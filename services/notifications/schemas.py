"""The notifications API's language (requests and answers)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from services.notifications.domain import Channel

Phone = Annotated[str, Field(pattern=r"^\+48[0-9]{9}$", examples=["+48600100200"])]


class ContactIn(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: EmailStr | None = Field(default=None, max_length=254)
    phone: Phone | None = None
    channels: list[Channel] = Field(default_factory=list, max_length=2, description="empty: no messages at all")


class ContactOut(BaseModel):
    pesel: str
    email: str | None
    phone: str | None
    channels: list[Channel]


class MessageOut(BaseModel):
    """A message's delivery state. Its body is never listed: an SMS may carry an access code."""

    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    channel: str = Field(description="email, sms, or none (no channel: nothing was sent)")
    recipient: str | None
    template: str
    status: str = Field(description="queued, sent, failed (retrying), dead (gave up: replayable), no_channel")
    attempts: int
    event_id: uuid.UUID
    event_type: str
    last_error: str | None
    created_at: dt.datetime
    sent_at: dt.datetime | None

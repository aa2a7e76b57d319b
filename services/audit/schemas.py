"""The audit API's answers."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class AuditEventOut(BaseModel):
    """One access, as a facility's administrator or the operator sees it (PESEL masked)."""

    id: int = Field(description="pass it as `before` to get the next (older) page")
    at: dt.datetime
    actor: str = Field(description="the token's `sub`, or a system (e.g. `cer`)")
    role: str
    tenant: str | None = Field(description="the facility or pharmacy the access happened in")
    action: str = Field(examples=["scheduling.booking.create"])
    resource: str = Field(examples=["booking/7b0e3c1e-3f1a-4c44-9a57-0f2f3c1d2b4a"])
    patient: str | None = Field(description="the patient's PESEL, masked", examples=["44*********"])
    request_id: str | None


class MyAccessOut(BaseModel):
    """One access to the asking patient's data: which role of which facility did what, when."""

    id: int = Field(description="pass it as `before` to get the next (older) page")
    at: dt.datetime
    actor_role: str
    tenant: str | None
    action: str
    resource: str

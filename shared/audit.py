"""The access audit's event: who read or changed which patient's data, and the helpers that emit it.

Polish law (ustawa o prawach pacjenta, art. 24-26; rozporządzenie w sprawie dokumentacji medycznej)
asks a provider to record who accessed medical documentation and when. Every service records its
accesses as ``audit.access.recorded`` events through its own transactional outbox; the audit service
stores them, one append-only row per patient shown.

- A change is audited in the change's own unit of work (``record_access`` before ``uow.commit()``): the
  audit event is one more outbox row of the same transaction, so a change without its audit row cannot
  exist and the booking path pays one insert.
- A read is audited before its answer leaves (``record_read``): a small transaction of its own that
  writes one outbox row, so once the caller sees the data the audit event is durable and the relay
  delivers it however long the broker is away. A list answer is ONE event carrying an entry per
  patient shown, stored by the audit service in one bulk insert.

The PESEL travels unmasked inside the suite (the audit must be searchable by it); the audit API masks
it when it shows rows, and the logs mask it everywhere.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field

from shared.auth import Principal
from shared.events import EventPayload
from shared.logging import request_id_var
from shared.outbox import UnitOfWork

ACCESS_RECORDED = "audit.access.recorded"
# One event's entries: a list answer of the largest page any API serves (scheduling's bookings: 5000).
MAX_ENTRIES = 5000


class AuditEntry(BaseModel):
    """One thing touched: a resource (``booking/<id>``) and the patient whose data it is, if any."""

    model_config = ConfigDict(frozen=True)

    resource: str = Field(min_length=1, max_length=200)
    patient_pesel: str | None = Field(default=None, pattern=r"^[0-9]{11}$")


class AccessRecorded(EventPayload):
    """Someone (``actor``, a token's ``sub``, or a system such as ``cer``) did ``action`` on ``entries``."""

    event_type: ClassVar[str] = ACCESS_RECORDED

    actor: str = Field(min_length=1, max_length=200)
    role: str = Field(min_length=1, max_length=40)
    tenant: str | None = Field(default=None, max_length=64)
    action: str = Field(min_length=1, max_length=80, pattern=r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
    at: dt.datetime
    request_id: str | None = Field(default=None, max_length=100)
    entries: list[AuditEntry] = Field(min_length=1, max_length=MAX_ENTRIES)


SYSTEM_ROLE = "system"


@dataclass(frozen=True)
class Actor:
    """Who acted when no token did: a national system calling in (CeR's webhook, P1's poller)."""

    sub: str
    role: str
    tenant: str | None

    @classmethod
    def system(cls, name: str, tenant: str | None) -> Actor:
        """``Actor.system("cer", facility_id)``: shown as actor ``system:cer`` with role ``system``."""
        return cls(f"{SYSTEM_ROLE}:{name}", SYSTEM_ROLE, tenant)


Who = Principal | Actor


def tenant_of(who: Who) -> str | None:
    """The facility or pharmacy whose data the actor works in (a patient: the portal's facility)."""
    if isinstance(who, Actor):
        return who.tenant
    return who.facility_id or who.pharmacy_id


def access(
    who: Who, action: str, entries: Sequence[AuditEntry], *, at: dt.datetime, tenant: str | None = None
) -> AccessRecorded:
    """The event for ``who`` doing ``action`` at ``at`` (the service's clock) on ``entries``.

    ``tenant``: the facility the data belongs to when it is not the actor's own (an operator's read).
    """
    return AccessRecorded(
        actor=who.sub,
        role=str(who.role),
        tenant=tenant if tenant is not None else tenant_of(who),
        action=action,
        at=at,
        request_id=request_id_var.get(),
        entries=list(entries),
    )


def record_access(
    uow: UnitOfWork,
    who: Who,
    action: str,
    resource: str,
    patient_pesel: str | None,
    *,
    at: dt.datetime,
    tenant: str | None = None,
) -> None:
    """Audit a change in the change's own transaction: call it before ``uow.commit()``."""
    record_accesses(
        uow, who, action, [AuditEntry(resource=resource, patient_pesel=patient_pesel)], at=at, tenant=tenant
    )


def record_accesses(
    uow: UnitOfWork,
    who: Who,
    action: str,
    entries: Iterable[AuditEntry],
    *,
    at: dt.datetime,
    tenant: str | None = None,
) -> None:
    """Audit many entries in ``uow`` (one outbox row): nothing is emitted for an empty list."""
    listed = list(entries)
    for start in range(0, len(listed), MAX_ENTRIES):
        event = access(who, action, listed[start : start + MAX_ENTRIES], at=at, tenant=tenant)
        uow.emit(event, facility_id=event.tenant)


async def record_read(
    new_uow: Callable[[], UnitOfWork],
    who: Who,
    action: str,
    entries: Iterable[AuditEntry],
    *,
    at: dt.datetime,
    tenant: str | None = None,
) -> None:
    """Audit a read in a unit of work of its own (``ctx.uow``), committed before the answer leaves.

    A list that showed nobody is no access to patient data: nothing is written then.
    """
    listed = list(entries)
    if not listed:
        return
    async with new_uow() as uow:
        record_accesses(uow, who, action, listed, at=at, tenant=tenant)
        await uow.commit()

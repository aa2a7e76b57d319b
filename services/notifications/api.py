"""Notifications HTTP API: contact preferences, the messages' delivery state, replaying a dead one."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from services.notifications import schemas, service
from services.notifications.models import Message
from shared.app import ContextDep
from shared.audit import AuditEntry, record_read
from shared.auth import CurrentPrincipal, Role, allow
from shared.identifiers import Pesel
from shared.problems import PROBLEM_RESPONSES, NotFound

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"], responses=PROBLEM_RESPONSES)

CLINIC = (Role.facility_admin, Role.registrar, Role.practitioner, Role.partner)
# Who may change where a patient's messages go (an SMS may carry an access code): the patient, and the
# clinic staff who take contacts at the desk. Not a partner system, not a practitioner.
CONTACT_EDITORS = (Role.facility_admin, Role.registrar, Role.patient)
STATUS = "^(queued|sent|failed|dead|no_channel)$"


def _view(row: Message) -> schemas.MessageOut:
    return schemas.MessageOut.model_validate(row)


@router.put(
    "/patients/{pesel}/contact",
    response_model=schemas.ContactOut,
    summary="Set a patient's e-mail, phone and channels (the patient, the desk or the facility admin; audited)",
    **allow(*CONTACT_EDITORS),
)
async def put_contact(
    pesel: Pesel, body: schemas.ContactIn, ctx: ContextDep, who: CurrentPrincipal
) -> schemas.ContactOut:
    if who.role == Role.patient and who.pesel != pesel:
        raise NotFound("not found")
    async with ctx.uow() as uow:
        return await service.put_contact(uow, who.require_facility(), pesel, body, who=who, now=ctx.clock.now())


@router.get("/patients/{pesel}/contact", response_model=schemas.ContactOut, **allow(*CLINIC, Role.patient))
async def get_contact(pesel: Pesel, ctx: ContextDep, who: CurrentPrincipal) -> schemas.ContactOut:
    if who.role == Role.patient and who.pesel != pesel:
        raise NotFound("not found")
    async with ctx.sessions() as session:
        contact = await service.get_contact(session, who.require_facility(), pesel)
    entry = AuditEntry(resource=service.CONTACT_RESOURCE, patient_pesel=pesel)
    await record_read(ctx.uow, who, service.CONTACT_READ, [entry], at=ctx.clock.now())
    return contact


@router.get("/messages", response_model=list[schemas.MessageOut], **allow(Role.facility_admin, Role.registrar))
async def list_messages(
    ctx: ContextDep,
    who: CurrentPrincipal,
    recipient: Annotated[str | None, Query(max_length=254)] = None,
    event_type: Annotated[str | None, Query(max_length=200)] = None,
    status: Annotated[str | None, Query(pattern=STATUS)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[schemas.MessageOut]:
    async with ctx.sessions() as session:
        rows = await service.list_messages(
            session, who.require_facility(), recipient=recipient, event_type=event_type, status=status, limit=limit
        )
    return [_view(r) for r in rows]


@router.post("/messages/{message_id}/replay", response_model=schemas.MessageOut, **allow(Role.facility_admin))
async def replay(message_id: uuid.UUID, ctx: ContextDep, who: CurrentPrincipal) -> schemas.MessageOut:
    """A dead message queued again (its attempts start over)."""
    async with ctx.uow() as uow:
        row = await service.replay(uow, who.require_facility(), message_id, who=who, now=ctx.clock.now())
    sending = ctx.extras["sending"]
    sending.wake.set()
    return _view(row)

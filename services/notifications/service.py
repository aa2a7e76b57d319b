"""Notification use cases: contacts, turning events into messages once, sending them with retries.

An event becomes its messages in the transaction that records it in the inbox, so a redelivered
event makes none. Sending happens afterwards, from the table, by a periodic pass: an SMTP or SMS
outage only delays messages (backoff), and after ``send_max_attempts`` a message is ``dead`` until
an operator replays it.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifications import domain, schemas
from services.notifications.mailer import Attachment, Mailer, MailError
from services.notifications.models import DEAD, FAILED, NO_CHANNEL, QUEUED, SENT, Message, PatientContact
from services.notifications.sms import SmsClient, SmsError, SmsUnavailable
from shared.audit import record_access
from shared.auth import Principal
from shared.db import updated_rows, utcnow
from shared.events import Envelope
from shared.outbox import UnitOfWork
from shared.problems import Conflict, NotFound

log = structlog.get_logger("notifications")
NONE_CHANNEL = "none"
CLAIM_LEASE_SECONDS = 120  # longer than any SMTP or SMS timeout


# ----------------------------------------------------------------------------- contacts


def _contact_out(pesel: str, row: PatientContact | None) -> schemas.ContactOut:
    if row is None:
        return schemas.ContactOut(pesel=pesel, email=None, phone=None, channels=[])
    channels = [domain.Channel(c) for c in row.channels.split(",") if c]
    return schemas.ContactOut(pesel=pesel, email=row.email, phone=row.phone, channels=channels)


CONTACT_UPDATE = "notifications.contact.update"
CONTACT_READ = "notifications.contact.read"
MESSAGE_REPLAY = "notifications.message.replay"


# A contact is keyed by its patient, whom the audit row names anyway (its patient column).
CONTACT_RESOURCE = "patient_contact"


async def put_contact(
    uow: UnitOfWork, facility_id: str, pesel: str, body: schemas.ContactIn, *, who: Principal, now: dt.datetime
) -> schemas.ContactOut:
    """Audited in the change's transaction: no contact change without its audit row."""
    record_access(uow, who, CONTACT_UPDATE, CONTACT_RESOURCE, pesel, at=now)
    row = await uow.session.get(PatientContact, (facility_id, pesel), with_for_update=True)
    if row is None:
        row = PatientContact(facility_id=facility_id, pesel=pesel)
        uow.session.add(row)
    row.email = str(body.email) if body.email else None
    row.phone = body.phone
    row.channels = ",".join(sorted({c.value for c in body.channels}))
    row.updated_at = utcnow()
    await uow.commit()
    return _contact_out(pesel, row)


async def get_contact(session: AsyncSession, facility_id: str, pesel: str) -> schemas.ContactOut:
    return _contact_out(pesel, await session.get(PatientContact, (facility_id, pesel)))


# ----------------------------------------------------------------------------- events into messages


async def record_event(session: AsyncSession, envelope: Envelope) -> int:
    """The messages of one event, stored queued (or ``no_channel``); returns how many."""
    payload = envelope.payload
    contact = None
    pesel = payload.get("patient_pesel")
    if isinstance(pesel, str) and envelope.facility_id:
        row = await session.get(PatientContact, (envelope.facility_id, pesel))
        if row is not None:
            channels = frozenset(domain.Channel(c) for c in row.channels.split(",") if c)
            contact = domain.Contact(row.email, row.phone, channels)
    facility_email = payload.get("problem_email") or payload.get("email")
    planned = domain.plan(envelope.type, payload, contact, facility_email if isinstance(facility_email, str) else None)
    for message in planned:
        session.add(
            Message(
                event_id=envelope.id,
                event_type=envelope.type,
                facility_id=envelope.facility_id,
                audience=message.audience.value,
                channel=message.channel.value if message.channel else NONE_CHANNEL,
                recipient=message.recipient,
                template=message.template,
                context=json.dumps(dict(message.context), default=str),
                attach_prescription_pdf=message.attach_prescription_pdf,
                status=QUEUED if message.channel and message.recipient else NO_CHANNEL,
            )
        )
    return len(planned)


# ----------------------------------------------------------------------------- sending


@dataclass(frozen=True)
class Composed:
    subject: str
    text: str
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()


class Composer(Protocol):
    def __call__(
        self, channel: domain.Channel, template: str, context: Mapping[str, Any], attach_pdf: bool
    ) -> Composed: ...


class TemporaryFailure(Exception):
    pass


class PermanentFailure(Exception):
    pass


@dataclass
class Sender:
    sessions: async_sessionmaker[AsyncSession]
    new_uow: Callable[[], UnitOfWork]
    mailer: Mailer
    sms: SmsClient
    compose: Composer
    sms_sender: str
    max_attempts: int
    retry_base_seconds: float
    retry_max_seconds: float
    batch: int

    async def send_due(self, now: dt.datetime | None = None) -> int:
        """One pass over the messages due; returns how many were sent."""
        now = now or utcnow()
        async with self.sessions() as session:
            due = list(
                await session.scalars(
                    sa.select(Message)
                    .where(Message.status.in_((QUEUED, FAILED)), Message.next_attempt_at <= now)
                    .order_by(Message.created_at, Message.id)
                    .limit(self.batch)
                )
            )
        sent = 0
        for message in due:
            sent += await self._deliver(message)
        return sent

    async def _claim(self, message: Message, now: dt.datetime) -> bool:
        """Take the message for one attempt: of two senders (replicas, or a pass and a replay) only
        one sends it. The lease ends the claim if this process dies mid-send; the SMS provider's
        idempotency key (the message id) then keeps the retry from reaching the phone twice."""
        async with self.new_uow() as uow:
            claimed = await updated_rows(
                uow.session,
                sa.update(Message)
                .where(
                    Message.id == message.id,
                    Message.status.in_((QUEUED, FAILED)),
                    Message.next_attempt_at == message.next_attempt_at,
                )
                .values(next_attempt_at=now + dt.timedelta(seconds=CLAIM_LEASE_SECONDS)),
            )
            await uow.commit()
        return claimed == 1

    async def _deliver(self, message: Message) -> int:
        if not await self._claim(message, utcnow()):
            return 0
        try:
            await self._send(message)
        except TemporaryFailure as exc:
            await self._settle(message.id, error=str(exc), permanent=False)
            return 0
        except PermanentFailure as exc:
            await self._settle(message.id, error=str(exc), permanent=True)
            return 0
        await self._settle(message.id, error=None, permanent=False)
        return 1

    async def _send(self, message: Message) -> None:
        channel = domain.Channel(message.channel)
        composed = self.compose(channel, message.template, json.loads(message.context), message.attach_prescription_pdf)
        recipient = message.recipient or ""
        if channel is domain.Channel.SMS:
            try:
                await self.sms.send(recipient, composed.text, sender=self.sms_sender, idempotency_key=str(message.id))
            except SmsUnavailable as exc:
                raise TemporaryFailure(exc.message) from exc
            except SmsError as exc:
                raise PermanentFailure(exc.message) from exc
            return
        try:
            await self.mailer.send(
                recipient,
                composed.subject,
                composed.text,
                html=composed.html,
                attachments=composed.attachments,
                message_id=f"<{message.id}@ehealth>",
            )
        except MailError as exc:
            raise (TemporaryFailure if exc.temporary else PermanentFailure)(exc.message) from exc

    async def _settle(self, message_id: uuid.UUID, *, error: str | None, permanent: bool) -> None:
        async with self.new_uow() as uow:
            row = await uow.session.get(Message, message_id, with_for_update=True)
            if row is None or row.status not in (QUEUED, FAILED):
                return  # another replica settled it
            row.attempts += 1
            row.last_error = error[:400] if error else None
            if error is None:
                row.status, row.sent_at = SENT, utcnow()
                row.context = json.dumps(domain.delivered_context(json.loads(row.context)), default=str)
            elif permanent or domain.is_dead(row.attempts, self.max_attempts):
                row.status = DEAD
                log.error("message_dead", message_id=str(row.id), template=row.template, error=row.last_error)
            else:
                row.status = FAILED
                delay = domain.retry_delay(row.attempts, self.retry_base_seconds, self.retry_max_seconds)
                row.next_attempt_at = utcnow() + dt.timedelta(seconds=delay)
            await uow.commit()


# ----------------------------------------------------------------------------- reading and replaying


async def list_messages(
    session: AsyncSession,
    facility_id: str,
    *,
    recipient: str | None,
    event_type: str | None,
    status: str | None,
    limit: int,
) -> list[Message]:
    query = sa.select(Message).where(Message.facility_id == facility_id)
    if recipient:
        query = query.where(Message.recipient == recipient)
    if event_type:
        query = query.where(Message.event_type == event_type)
    if status:
        query = query.where(Message.status == status)
    return list(await session.scalars(query.order_by(Message.created_at.desc(), Message.id).limit(limit)))


def _patient_of(row: Message) -> str | None:
    """The patient a message is about, when its template context names one."""
    pesel = json.loads(row.context).get("patient_pesel")
    return pesel if isinstance(pesel, str) and len(pesel) == 11 and pesel.isdigit() else None


async def replay(
    uow: UnitOfWork, facility_id: str, message_id: uuid.UUID, *, who: Principal, now: dt.datetime
) -> Message:
    row = await uow.session.get(Message, message_id, with_for_update=True)
    if row is None or row.facility_id != facility_id:
        raise NotFound(f"message {message_id} not found")
    if row.status != DEAD:
        raise Conflict(f"only a dead message is replayed; this one is {row.status}", code="not-dead")
    record_access(uow, who, MESSAGE_REPLAY, f"message/{row.id}", _patient_of(row), at=now)
    row.status, row.attempts, row.next_attempt_at, row.last_error = QUEUED, 0, utcnow(), None
    await uow.commit()
    return row

"""Mail catcher: an SMTP server that keeps every e-mail it receives, readable over HTTP.

Behaviour, so tests and demos can steer it:

- The SMTP server (aiosmtpd) runs in the sandbox app's event loop from its lifespan, on
  ``SANDBOX_SMTP_HOST``/``SANDBOX_SMTP_PORT``; port 0 binds a free port. The bound port is
  ``app.state.mail.port``: a service in the same process reads it there at each send.
- Every message is accepted (no relaying, no authentication) and kept parsed: sender, envelope
  recipients, decoded subject, text and HTML bodies, attachments with size and SHA-256, and the raw
  bytes as received.
- ``GET /messages`` lists them oldest first (``?to=`` one recipient's); ``GET /messages/{id}`` adds
  the bodies; ``.../attachments/{index}`` and ``.../raw`` give the bytes, so a PDF opens in a browser.
- ``POST /down`` makes the SMTP server answer ``421`` to new connections (and ``451`` to recipients
  and data of sessions already open) until ``POST /up``: a temporary failure, which a sender retries.

State lives in memory, per app instance: a restart forgets every message.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import errno
import hashlib
import logging
import uuid
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Annotated, Any, cast
from urllib.parse import quote

import structlog
from aiosmtpd.smtp import SMTP, Envelope, Session
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from shared.problems import PROBLEM_RESPONSES, NotFound

log = structlog.get_logger("sandbox.mail")

# Named in the greeting. Fixed because aiosmtpd's default, socket.getfqdn(), is a DNS lookup made in
# the event loop at every connection.
HOSTNAME = "mail.sandbox.localhost"
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
# Oldest messages are forgotten past this: they hold their attachments in memory.
MAX_KEPT = 1000
# Opened in the browser; anything else (HTML, SVG, scripts) is downloaded, so a caught message cannot
# run script on the gateway's origin.
INLINE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif", "text/plain"})
# Listening everywhere is reached through loopback from this machine.
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104 - not a bind, a lookup


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# ----------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class CaughtAttachment:
    filename: str | None
    content_type: str
    content: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()


@dataclass(frozen=True)
class CaughtMail:
    id: str
    received_at: dt.datetime
    envelope_from: str
    recipients: tuple[str, ...]
    raw: bytes = field(repr=False)
    sender: str | None = None
    subject: str | None = None
    message_id: str | None = None
    text: str | None = None
    html: str | None = None
    attachments: tuple[CaughtAttachment, ...] = ()
    parse_error: str | None = None


def _leaves(part: EmailMessage) -> Iterator[EmailMessage]:
    # Not walk(): it descends into an attached message/rfc822, whose parts are not this mail's.
    if part.get_content_maintype() == "multipart":
        for sub in part.iter_parts():
            yield from _leaves(cast(EmailMessage, sub))
    else:
        yield part


def _text(part: EmailMessage) -> str:
    try:
        text = str(part.get_content())
    except (LookupError, ValueError):  # an unknown or wrong charset: show what can be read
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else str(payload)
    return text.replace("\r\n", "\n")  # CRLF is how SMTP carries lines, not part of the text


def _bytes(part: EmailMessage) -> bytes:
    if part.get_content_maintype() == "message":
        inner = part.get_payload()
        items = inner if isinstance(inner, list) else [inner]
        return b"".join(m.as_bytes() if hasattr(m, "as_bytes") else str(m).encode() for m in items)
    payload = part.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def _header(message: EmailMessage, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else str(value)


def parse_mail(raw: bytes) -> dict[str, Any]:
    """The fields of ``CaughtMail`` read from the message itself."""
    message = BytesParser(policy=policy.default).parsebytes(raw)
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    bodies = [p for p in (text_part, html_part) if p is not None]
    attachments = tuple(
        CaughtAttachment(part.get_filename(), part.get_content_type(), _bytes(part))
        for part in _leaves(message)
        if not any(part is body for body in bodies)
    )
    return {
        "sender": _header(message, "From"),
        "subject": _header(message, "Subject"),
        "message_id": _header(message, "Message-ID"),
        "text": None if text_part is None else _text(cast(EmailMessage, text_part)),
        "html": None if html_part is None else _text(cast(EmailMessage, html_part)),
        "attachments": attachments,
    }


# ----------------------------------------------------------------------------- SMTP


class _Unavailable(asyncio.Protocol):
    """What a new connection meets during an outage: a 421 greeting, then the connection closes."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        writer = cast(asyncio.WriteTransport, transport)
        writer.write(f"421 {HOSTNAME} Service not available, closing transmission channel\r\n".encode())
        writer.close()


class _Handler:
    """aiosmtpd's hooks: refuse while down, keep every message otherwise."""

    def __init__(self, catcher: MailCatcher) -> None:
        self.catcher = catcher

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if not self.catcher.up:
            return "451 4.3.0 Service not available, try again later"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if not self.catcher.up:
            return "451 4.3.0 Service not available, try again later"
        raw = envelope.original_content or b""
        mail = self.catcher.catch(envelope.mail_from or "", envelope.rcpt_tos, raw)
        return f"250 2.0.0 OK: queued as {mail.id}"


@dataclass
class MailCatcher:
    now: Callable[[], dt.datetime] = _utcnow
    up: bool = True
    host: str | None = None  # where the SMTP server listens, once started
    port: int | None = None
    messages: dict[str, CaughtMail] = field(default_factory=dict)  # in the order received
    _server: asyncio.Server | None = field(default=None, repr=False)
    _sessions: weakref.WeakSet[SMTP] = field(default_factory=weakref.WeakSet, repr=False)

    # ------------------------------------------------------------------ the server

    async def start(self, host: str, port: int, *, any_port_if_taken: bool = False) -> None:
        """``any_port_if_taken``: a default port held by another process (a second ``make run``, a
        test run beside one) falls back to a free port instead of failing the whole app's start."""
        if self._server is not None:
            raise RuntimeError("the mail catcher is already running")
        # aiosmtpd logs every command at INFO, addresses included: patients' addresses do not belong
        # in the console, and a demo's log would be mostly SMTP.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(self._protocol, host, port)
        except OSError as exc:
            if not any_port_if_taken or exc.errno != errno.EADDRINUSE:
                raise
            server = await loop.create_server(self._protocol, host, 0)
            log.warning("smtp port taken, mail catcher on a free port", wanted=port, port=_port_of(server))
        self._server = server
        bound_host = server.sockets[0].getsockname()[0]
        self.host, self.port = _WILDCARDS.get(bound_host, bound_host), _port_of(server)
        log.info("mail catcher listening", host=self.host, port=self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        # Open sessions are ended here: before Python 3.12 wait_closed() leaves them running, from 3.12
        # on it waits for them, up to aiosmtpd's five-minute idle timeout.
        for session in list(self._sessions):
            if session.transport is not None:
                session.transport.close()
        await server.wait_closed()
        self.host = self.port = None

    def address(self) -> tuple[str, int]:
        if self.host is None or self.port is None:
            raise RuntimeError("the mail catcher is not running (SANDBOX_SMTP_ENABLED, or the app not started)")
        return self.host, self.port

    def _protocol(self) -> asyncio.BaseProtocol:
        if not self.up:
            return _Unavailable()
        session = SMTP(
            _Handler(self),
            hostname=HOSTNAME,
            enable_SMTPUTF8=True,
            data_size_limit=MAX_MESSAGE_BYTES,
            loop=asyncio.get_running_loop(),
        )
        self._sessions.add(session)
        return session

    # ------------------------------------------------------------------ the messages

    def catch(self, envelope_from: str, recipients: list[str], raw: bytes) -> CaughtMail:
        try:
            parsed = parse_mail(raw)
        except Exception as exc:  # a mail the parser chokes on is still kept, raw, rather than refused
            parsed = {"parse_error": f"{type(exc).__name__}: {exc}"}
        mail = CaughtMail(
            id=str(uuid.uuid4()),
            received_at=self.now(),
            envelope_from=envelope_from,
            recipients=tuple(recipients),
            raw=raw,
            **parsed,
        )
        self.messages[mail.id] = mail
        while len(self.messages) > MAX_KEPT:
            del self.messages[next(iter(self.messages))]
        return mail

    def get(self, mail_id: str) -> CaughtMail:
        mail = self.messages.get(mail_id)
        if mail is None:
            raise NotFound(f"no caught mail {mail_id}")
        return mail


def _port_of(server: asyncio.Server) -> int:
    port: int = server.sockets[0].getsockname()[1]
    return port


# ----------------------------------------------------------------------------- schemas


class AttachmentOut(BaseModel):
    index: int
    filename: str | None
    content_type: str
    size: int
    sha256: str


class MailOut(BaseModel):
    id: str
    received_at: dt.datetime
    sender: str | None = Field(serialization_alias="from", description="the From header, decoded")
    to: list[str] = Field(description="the envelope recipients: everyone it was delivered to, Bcc too")
    envelope_from: str
    subject: str | None
    message_id: str | None
    size: int = Field(description="bytes as received")
    attachments: list[AttachmentOut]
    parse_error: str | None = Field(default=None, description="set when the message could not be parsed")


class MailDetailOut(MailOut):
    text: str | None
    html: str | None


class StatusOut(BaseModel):
    up: bool
    host: str | None = Field(description="where the SMTP server listens; null when not running")
    port: int | None


class ClearedOut(BaseModel):
    deleted: int


def _summary(mail: CaughtMail) -> dict[str, Any]:
    return {
        "id": mail.id,
        "received_at": mail.received_at,
        "sender": mail.sender,
        "to": list(mail.recipients),
        "envelope_from": mail.envelope_from,
        "subject": mail.subject,
        "message_id": mail.message_id,
        "size": len(mail.raw),
        "attachments": [
            AttachmentOut(
                index=i, filename=a.filename, content_type=a.content_type, size=len(a.content), sha256=a.sha256
            )
            for i, a in enumerate(mail.attachments)
        ],
        "parse_error": mail.parse_error,
    }


def _disposition(kind: str, filename: str) -> str:
    quoted = quote(filename, safe="")
    if quoted == filename:
        return f'{kind}; filename="{filename}"'
    return f"{kind}; filename*=UTF-8''{quoted}"  # RFC 6266: a name that is not plain ASCII


# ----------------------------------------------------------------------------- routes


def mail_catcher(request: Request) -> MailCatcher:
    catcher: MailCatcher = request.app.state.mail
    return catcher


CatcherDep = Annotated[MailCatcher, Depends(mail_catcher)]
router = APIRouter(prefix="/sandbox/mail", tags=["sandbox: mail catcher"], responses=PROBLEM_RESPONSES)


def _status(catcher: MailCatcher) -> StatusOut:
    return StatusOut(up=catcher.up, host=catcher.host, port=catcher.port)


@router.post("/down", response_model=StatusOut, summary="Simulate an outage: SMTP answers 421 (new) or 451")
async def go_down(catcher: CatcherDep) -> StatusOut:
    catcher.up = False
    return _status(catcher)


@router.post("/up", response_model=StatusOut, summary="End the simulated outage")
async def go_up(catcher: CatcherDep) -> StatusOut:
    catcher.up = True
    return _status(catcher)


@router.get("/status", response_model=StatusOut, summary="Up or down, and where the SMTP server listens")
async def status(catcher: CatcherDep) -> StatusOut:
    return _status(catcher)


@router.get("/messages", response_model=list[MailOut], summary="Caught mail, oldest first, without bodies")
async def caught_messages(
    catcher: CatcherDep,
    to: Annotated[str | None, Query(min_length=1, max_length=320, description="one envelope recipient")] = None,
) -> list[MailOut]:
    wanted = None if to is None else to.strip().lower()
    return [
        MailOut(**_summary(mail))
        for mail in catcher.messages.values()
        if wanted is None or wanted in (r.lower() for r in mail.recipients)
    ]


@router.delete("/messages", response_model=ClearedOut, summary="Forget every caught mail")
async def clear_messages(catcher: CatcherDep) -> ClearedOut:
    count = len(catcher.messages)
    catcher.messages.clear()
    return ClearedOut(deleted=count)


@router.get("/messages/{mail_id}", response_model=MailDetailOut, summary="One caught mail with its bodies")
async def caught_message(mail_id: str, catcher: CatcherDep) -> MailDetailOut:
    mail = catcher.get(mail_id)
    return MailDetailOut(**_summary(mail), text=mail.text, html=mail.html)


@router.get(
    "/messages/{mail_id}/raw",
    response_class=Response,
    summary="The message as received (an .eml file)",
    responses={200: {"content": {"message/rfc822": {}}}},
)
async def raw_message(mail_id: str, catcher: CatcherDep) -> Response:
    mail = catcher.get(mail_id)
    return Response(
        mail.raw,
        media_type="message/rfc822",
        headers={"Content-Disposition": _disposition("attachment", f"{mail.id}.eml")},
    )


@router.get(
    "/messages/{mail_id}/attachments/{index}",
    response_class=Response,
    summary="An attachment's bytes with its content type (PDFs and images open in the browser)",
    responses={200: {"content": {"application/octet-stream": {}}}},
)
async def attachment(mail_id: str, index: int, catcher: CatcherDep) -> Response:
    mail = catcher.get(mail_id)
    if not 0 <= index < len(mail.attachments):
        raise NotFound(f"the mail has {len(mail.attachments)} attachment(s); there is none at index {index}")
    found = mail.attachments[index]
    kind = "inline" if found.content_type in INLINE_TYPES else "attachment"
    return Response(
        found.content,
        media_type=found.content_type,
        headers={
            "Content-Disposition": _disposition(kind, found.filename or f"attachment-{index}"),
            "X-Content-Type-Options": "nosniff",
        },
    )

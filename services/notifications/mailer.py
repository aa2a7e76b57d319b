"""Sending e-mail over SMTP (aiosmtplib). Temporary failures (4xx, connection) are retried by the
caller; a permanent refusal (5xx) is not."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

import aiosmtplib


class MailError(Exception):
    def __init__(self, message: str, *, temporary: bool) -> None:
        super().__init__(message)
        self.message = message
        self.temporary = temporary


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    maintype: str = "application"
    subtype: str = "pdf"


@dataclass
class Mailer:
    """``where``: the SMTP host and port, asked at each send (the sandbox's catcher may pick its port late)."""

    where: Callable[[], tuple[str, int]]
    sender: str
    username: str | None = None
    password: str | None = None
    starttls: bool = False
    timeout: float = 10.0

    async def send(
        self,
        to: str,
        subject: str,
        text: str,
        *,
        html: str | None = None,
        attachments: tuple[Attachment, ...] = (),
        message_id: str | None = None,
    ) -> None:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        if message_id:
            message["Message-ID"] = message_id
        message.set_content(text)
        if html:
            message.add_alternative(html, subtype="html")
        for attachment in attachments:
            message.add_attachment(
                attachment.content,
                maintype=attachment.maintype,
                subtype=attachment.subtype,
                filename=attachment.filename,
            )
        host, port = self.where()
        try:
            await aiosmtplib.send(
                message,
                hostname=host,
                port=port,
                username=self.username,
                password=self.password,
                start_tls=self.starttls,
                timeout=self.timeout,
            )
        except aiosmtplib.SMTPResponseException as exc:
            raise MailError(f"SMTP {exc.code}: {exc.message}", temporary=400 <= exc.code < 500) from exc
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise MailError(f"SMTP unreachable: {type(exc).__name__}", temporary=True) from exc

"""A stored message turned into what is sent: the rendered template, and for an issued
prescription's e-mail the PDF with the prescription information."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.notifications import documents
from services.notifications.domain import Channel
from services.notifications.mailer import Attachment
from services.notifications.service import Composed


def compose(channel: Channel, template: str, context: Mapping[str, Any], attach_pdf: bool) -> Composed:
    rendered = documents.render(f"{channel.value}/{template}", **context)
    attachments: tuple[Attachment, ...] = ()
    if attach_pdf:
        pdf = documents.prescription_pdf(documents.prescription_infos(context), access_code=context.get("access_code"))
        attachments = (Attachment(f"recepta-{context.get('package_key', 'pakiet')}.pdf", pdf),)
    return Composed(rendered.subject or "", rendered.text, rendered.html, attachments)

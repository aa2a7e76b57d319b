"""What the notifications service writes: the prescription information PDF and the Polish texts.

Pure functions: nothing is read but the packaged font (``fonts/``) and templates (``templates/``).

The PDF (``prescription_pdf``) is the "Informacja o wystawionej recepcie" the source describes
(DOMAIN.md 3, seeds/e-prescription-rules.txt): one page per prescription of the package with the
drug, quantity, dosage, issue date, issuer, realisation window, optional control visit, the key in
digits and as a QR code a pharmacy can scan. DejaVu Sans is embedded because the PDF core fonts
have no ą ć ę ł ń ó ś ź ż.

Templates: a message is named ``<channel>/<kind>`` and lives in ``templates/<channel>/``:

- ``sms/<kind>.txt``: the SMS text; whitespace is collapsed to single spaces, so a template may
  wrap its lines.
- ``email/<kind>.subject.txt``: the subject (one line), ``email/<kind>.txt``: the plain-text body,
  ``email/<kind>.html``: the HTML alternative, only for patients' messages.
- ``_shared/``: what messages include (footer, HTML layout, the order-verification check); not
  messages themselves.

Jinja2 runs with ``StrictUndefined``: a missing variable raises instead of printing nothing, so a
message never goes out with a hole in it. ``MESSAGES`` lists, per message, the variables it needs;
a variable it may do without is tested with ``is defined`` in the template. The context is the
event's payload as the notifications service stores it, so dates may arrive as ``date``/
``datetime`` objects or as ISO strings; the filters ``date_pl`` (``31.03.2025``) and
``datetime_pl`` (``31.03.2025, godz. 10:30``, Europe/Warsaw) accept both.

Contexts (the variables beyond the required ones are optional):

========================== ===============================================================
message                    variables
========================== ===============================================================
prescription_issued        access_code, prescriptions (each: drug, valid_until); the e-mail
                           also issued_on and, in each prescription, packages and valid_from
booking_created            start
booking_cancelled          start
booking_moved              start (the new time)
booking_needs_rescheduling start
order_number               number, verification (``positive`` or ``negative``, anything else
                           raises); optional reasons (a list, shown when negative)
problem (e-mail only)      problem_text, fix_text, npwz, request_id (the last two may be None)
cer_sync_failed (e-mail)   failure (what failed, a Polish sentence); optional slot_id, start
========================== ===============================================================

The SMS of an issued prescription carries the access code and the drugs with their validity, and
nothing else: no PESEL, no facility internals. Polish letters put an SMS in UCS-2 (70 characters,
67 per part of a longer one); ``sms_parts`` counts the parts.
"""

from __future__ import annotations

import datetime as dt
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import segno
from fpdf import FPDF

PACKAGE_DIR = Path(__file__).parent
TEMPLATES_DIR = PACKAGE_DIR / "templates"
FONTS_DIR = PACKAGE_DIR / "fonts"
FONT_FAMILY = "DejaVuSans"
LOCAL_TIMEZONE = "Europe/Warsaw"
KEY_DIGITS = 44

# message -> the variables it cannot do without (the tests hold the templates to this)
MESSAGES: Mapping[str, frozenset[str]] = {
    "sms/prescription_issued": frozenset({"access_code", "prescriptions"}),
    "email/prescription_issued": frozenset({"access_code", "issued_on", "prescriptions"}),
    "sms/booking_created": frozenset({"start"}),
    "email/booking_created": frozenset({"start"}),
    "sms/booking_cancelled": frozenset({"start"}),
    "email/booking_cancelled": frozenset({"start"}),
    "sms/booking_moved": frozenset({"start"}),
    "email/booking_moved": frozenset({"start"}),
    "sms/booking_needs_rescheduling": frozenset({"start"}),
    "email/booking_needs_rescheduling": frozenset({"start"}),
    "sms/order_number": frozenset({"number", "verification"}),
    "email/order_number": frozenset({"number", "verification"}),
    "email/problem": frozenset({"problem_text", "fix_text", "npwz", "request_id"}),
    "email/cer_sync_failed": frozenset({"failure"}),
}


# ----------------------------------------------------------------------------- the prescription PDF


@dataclass(frozen=True)
class PrescriptionInfo:
    """One e-prescription as the patient's information shows it; ``key`` and ``package_key`` are
    the 44-digit P1 keys."""

    key: str
    package_key: str
    drug: str
    packages: int
    quantity_text: str | None
    dosage: str | None
    issued_on: dt.date
    issuer_name: str | None
    issuer_npwz: str
    valid_from: dt.date
    valid_until: dt.date
    control_visit_on: dt.date | None
    patient_name: str | None

    def __post_init__(self) -> None:
        # The QR code is what the pharmacy scans: a malformed key must fail here, not at the counter.
        for name in ("key", "package_key"):
            value = getattr(self, name)
            if len(value) != KEY_DIGITS or not value.isdigit():
                raise ValueError(f"{name} must be {KEY_DIGITS} digits")
        if self.packages < 1:
            raise ValueError("packages must be at least 1")
        if self.valid_until < self.valid_from:
            raise ValueError("valid_until is before valid_from")


def prescription_infos(payload: Mapping[str, Any]) -> list[PrescriptionInfo]:
    """The infos of a ``prescriptions.prescription.issued`` payload (as stored: dates may be ISO
    strings). Fields the event may not carry (dosage, quantity_text per line; issuer_name,
    control_visit_on, patient_name per package) are read when present."""
    issued_on = _as_date(payload["issued_on"])
    control = payload.get("control_visit_on")
    return [
        PrescriptionInfo(
            key=str(line["key"]),
            package_key=str(payload["package_key"]),
            drug=str(line["drug"]),
            packages=int(line["packages"]),
            quantity_text=line.get("quantity_text"),
            dosage=line.get("dosage"),
            issued_on=issued_on,
            issuer_name=payload.get("issuer_name"),
            issuer_npwz=str(payload["issuer_npwz"]),
            valid_from=_as_date(line["valid_from"]),
            valid_until=_as_date(line["valid_until"]),
            control_visit_on=_as_date(control) if control else None,
            patient_name=payload.get("patient_name"),
        )
        for line in payload["prescriptions"]
    ]


def prescription_pdf(
    infos: Sequence[PrescriptionInfo], *, facility_name: str | None = None, access_code: str | None = None
) -> bytes:
    """One A4 page per prescription. ``access_code`` is printed when given, as on the official
    printout: the PDF goes only to the patient's own e-mail."""
    if not infos:
        raise ValueError("a prescription PDF needs at least one prescription")
    pdf = FPDF(orientation="portrait", unit="mm", format="A4")
    pdf.add_font(FONT_FAMILY, "", str(FONTS_DIR / "DejaVuSans.ttf"))
    pdf.add_font(FONT_FAMILY, "B", str(FONTS_DIR / "DejaVuSans-Bold.ttf"))
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.set_margins(left=15, top=15, right=15)
    pdf.set_lang("pl")
    pdf.set_title("Informacja o wystawionej recepcie")
    pdf.set_creator("ehealth-suite")
    if facility_name:
        pdf.set_author(facility_name)
    # A fixed date: the same prescription gives the same bytes, whenever the message is retried.
    issued = infos[0].issued_on
    pdf.set_creation_date(dt.datetime(issued.year, issued.month, issued.day, tzinfo=dt.UTC))
    for number, info in enumerate(infos, start=1):
        _page(pdf, info, number, len(infos), facility_name, access_code)
    return bytes(pdf.output())


QR_SIZE_MM = 45.0
LABEL_WIDTH_MM = 50.0
LINE_MM = 6.5


def _page(
    pdf: FPDF, info: PrescriptionInfo, number: int, total: int, facility_name: str | None, access_code: str | None
) -> None:
    pdf.add_page()
    qr_x = pdf.w - pdf.r_margin - QR_SIZE_MM
    pdf.image(_qr_png(info.key), x=qr_x, y=pdf.t_margin, w=QR_SIZE_MM, h=QR_SIZE_MM)
    text_width = qr_x - pdf.l_margin - 5
    pdf.set_font(FONT_FAMILY, "B", 15)
    pdf.multi_cell(text_width, 8, "Informacja o wystawionej recepcie", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT_FAMILY, "", 10)
    if total > 1:
        pdf.multi_cell(text_width, 6, f"Recepta {number} z {total} w pakiecie", new_x="LMARGIN", new_y="NEXT")
    if facility_name:
        pdf.multi_cell(text_width, 6, facility_name, new_x="LMARGIN", new_y="NEXT")
    pdf.set_y(max(pdf.get_y(), pdf.t_margin + QR_SIZE_MM) + 6)

    rows: list[tuple[str, str | None]] = [
        ("Pacjent", info.patient_name),
        ("Lek", info.drug),
        ("Ilość", info.quantity_text or f"{info.packages} op."),
        ("Dawkowanie", info.dosage),
        ("Data wystawienia", _date_pl(info.issued_on)),
        ("Data realizacji", f"od {_date_pl(info.valid_from)} do {_date_pl(info.valid_until)}"),
        ("Wystawiający", info.issuer_name),
        ("NPWZ wystawiającego", info.issuer_npwz),
        ("Wizyta kontrolna", _date_pl(info.control_visit_on) if info.control_visit_on else None),
        ("Klucz recepty", info.key),
        ("Klucz pakietu", info.package_key),
        ("Kod dostępu", access_code),
    ]
    for label, value in rows:
        if value:
            _row(pdf, label, value)

    pdf.ln(6)
    pdf.set_font(FONT_FAMILY, "", 8.5)
    pdf.multi_cell(
        0,
        4.5,
        "W aptece okaż kod QR do zeskanowania albo podaj kod dostępu wraz z numerem PESEL. "
        "Informacja dla pacjenta nie jest receptą i nie wymaga pieczątki ani podpisu osoby wystawiającej.",
        new_x="LMARGIN",
        new_y="NEXT",
    )


def _row(pdf: FPDF, label: str, value: str) -> None:
    pdf.set_font(FONT_FAMILY, "B", 10)
    pdf.cell(LABEL_WIDTH_MM, LINE_MM, f"{label}:")
    pdf.set_font(FONT_FAMILY, "", 10)
    pdf.multi_cell(0, LINE_MM, value, new_x="LMARGIN", new_y="NEXT")


def _qr_png(data: str) -> io.BytesIO:
    # Border 4 is the quiet zone the QR standard asks for; scanners miss codes printed without it.
    buffer = io.BytesIO()
    segno.make_qr(data, error="m").save(buffer, kind="png", scale=10, border=4)
    buffer.seek(0)
    return buffer


# ----------------------------------------------------------------------------- the texts


@dataclass(frozen=True)
class RenderedMessage:
    subject: str | None
    text: str
    html: str | None


def render(template: str, /, **context: Any) -> RenderedMessage:
    """``template``: ``sms/<kind>`` or ``email/<kind>`` (see the module's docstring)."""
    channel, _, kind = template.partition("/")
    env = _environment()
    if channel == "sms":
        text = env.get_template(f"sms/{kind}.txt").render(context)
        return RenderedMessage(subject=None, text=" ".join(text.split()), html=None)
    if channel == "email":
        subject = env.get_template(f"email/{kind}.subject.txt").render(context)
        text = env.get_template(f"email/{kind}.txt").render(context)
        html_name = f"email/{kind}.html"
        html = env.get_template(html_name).render(context) if html_name in _template_names() else None
        return RenderedMessage(subject=" ".join(subject.split()), text=_tidy_text(text), html=html)
    raise ValueError(f"unknown channel in template name {template!r}: sms or email")


def sms_parts(text: str) -> int:
    """How many SMS parts ``text`` takes: GSM-7 (160, or 153 per part) unless a character is
    outside it, then UCS-2 (70, or 67 per part) - which every Polish diacritic forces."""
    if all(char in _GSM7_BASIC or char in _GSM7_EXTENDED for char in text):
        units = sum(2 if char in _GSM7_EXTENDED else 1 for char in text)
        single, part = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, part = 70, 67
    return 1 if units <= single else -(-units // part)


_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


@cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["date_pl"] = _date_pl
    env.filters["datetime_pl"] = _datetime_pl
    env.globals["fail"] = _fail
    return env


def _fail(message: str) -> str:
    raise ValueError(message)


@cache
def _template_names() -> frozenset[str]:
    return frozenset(_environment().list_templates())


def _tidy_text(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)) + "\n"


def _as_date(value: object) -> dt.date:
    if isinstance(value, dt.datetime):
        return _local(value).date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        # "2025-03-31", or a date and time with "T" or a space (str() of a datetime)
        return dt.date.fromisoformat(value) if len(value) == 10 else _as_date(dt.datetime.fromisoformat(value))
    raise TypeError(f"not a date: {value!r}")


def _as_datetime(value: object) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return _local(value)
    if isinstance(value, str):
        return _local(dt.datetime.fromisoformat(value))
    raise TypeError(f"not a date and time: {value!r}")


def _local(moment: dt.datetime) -> dt.datetime:
    # A naive time has no zone to convert from: it is shown as given.
    return moment.astimezone(ZoneInfo(LOCAL_TIMEZONE)) if moment.tzinfo else moment


def _date_pl(value: object) -> str:
    _defined(value)
    return _as_date(value).strftime("%d.%m.%Y")


def _datetime_pl(value: object) -> str:
    _defined(value)
    return _as_datetime(value).strftime("%d.%m.%Y, godz. %H:%M")


def _defined(value: object) -> None:
    # A filter receives a missing variable as an Undefined object: report it as missing, like any
    # other use of it, rather than as a value of the wrong type.
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()

"""The prescription information PDF (read back with pypdf, its QR code decoded with zxing-cpp) and
the Polish message templates of the notifications service."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import uuid
from typing import Any

import jinja2
import pytest
import zxingcpp
from pypdf import PdfReader

from services.notifications.documents import (
    MESSAGES,
    TEMPLATES_DIR,
    PrescriptionInfo,
    prescription_infos,
    prescription_pdf,
    render,
    sms_parts,
)
from services.prescriptions.domain import PROBLEM_TEXTS
from services.prescriptions.events import IssuedPrescriptionLine, PrescriptionIssued

PESEL = "44051401359"
NPWZ = "5425740"
# A leading zero on purpose: the QR code must keep it (a number would not).
KEY = "0" + "1234567890" * 4 + "123"
PACKAGE_KEY = "9876543210" * 4 + "5678"
ACCESS_CODE = "7391"
DRUG = "Żółć wołowa 200 mg"
ISSUER = "lek. Łucja Ścibór-Źdźbło"


def info(**changes: Any) -> PrescriptionInfo:
    base = PrescriptionInfo(
        key=KEY,
        package_key=PACKAGE_KEY,
        drug=DRUG,
        packages=2,
        quantity_text="2 op. po 30 tabl.",
        dosage="1 tabletka 2 razy dziennie",
        issued_on=dt.date(2025, 3, 1),
        issuer_name=ISSUER,
        issuer_npwz=NPWZ,
        valid_from=dt.date(2025, 3, 1),
        valid_until=dt.date(2025, 3, 31),
        control_visit_on=dt.date(2025, 4, 15),
        patient_name="Grzegorz Brzęczyszczykiewicz",
    )
    return dataclasses.replace(base, **changes)


def read(pdf: bytes) -> PdfReader:
    assert pdf.startswith(b"%PDF-")
    return PdfReader(io.BytesIO(pdf))


def qr_codes(reader: PdfReader, page: int) -> list[str]:
    images = reader.pages[page].images
    found = [result for image in images for result in zxingcpp.read_barcodes(image.image)]
    assert all(result.format == zxingcpp.BarcodeFormat.QRCode for result in found)
    return [result.text for result in found]


# ----------------------------------------------------------------------------- the PDF


def test_pdf_text_holds_every_field_with_polish_letters() -> None:
    reader = read(prescription_pdf([info()], facility_name="Przychodnia „Zdrowie” w Łodzi", access_code=ACCESS_CODE))

    text = reader.pages[0].extract_text()
    for expected in (
        "Informacja o wystawionej recepcie",
        "Przychodnia „Zdrowie” w Łodzi",
        "Grzegorz Brzęczyszczykiewicz",
        DRUG,
        "2 op. po 30 tabl.",
        "1 tabletka 2 razy dziennie",
        "Data wystawienia",
        "01.03.2025",
        "od 01.03.2025 do 31.03.2025",
        ISSUER,
        NPWZ,
        "Wizyta kontrolna",
        "15.04.2025",
        KEY,
        PACKAGE_KEY,
        "Kod dostępu:",
        ACCESS_CODE,
    ):
        assert expected in text, expected
    assert len(reader.pages) == 1


def test_pdf_leaves_out_what_was_not_given() -> None:
    bare = info(control_visit_on=None, issuer_name=None, patient_name=None, dosage=None, quantity_text=None, packages=3)

    text = read(prescription_pdf([bare])).pages[0].extract_text()

    assert "Wizyta kontrolna" not in text
    assert "15.04.2025" not in text
    assert "Kod dostępu:" not in text
    assert "Dawkowanie" not in text
    assert "3 op." in text  # the quantity falls back to the packages
    assert DRUG in text and KEY in text and NPWZ in text


def test_the_qr_code_decodes_to_the_prescription_key() -> None:
    reader = read(prescription_pdf([info()], access_code=ACCESS_CODE))

    assert qr_codes(reader, 0) == [KEY]


def test_a_package_of_three_gives_one_page_each_with_its_own_code() -> None:
    keys = [f"{n}" * 44 for n in (1, 2, 3)]
    drugs = ["Amoksycylina 500 mg", "Ibuprofen 400 mg", "Żelazo 80 mg"]
    infos = [info(key=key, drug=drug) for key, drug in zip(keys, drugs, strict=True)]

    reader = read(prescription_pdf(infos, access_code=ACCESS_CODE))

    assert len(reader.pages) == 3
    for page, (key, drug) in enumerate(zip(keys, drugs, strict=True)):
        text = reader.pages[page].extract_text()
        assert drug in text and key in text
        assert f"Recepta {page + 1} z 3 w pakiecie" in text
        assert qr_codes(reader, page) == [key]


def test_the_same_prescription_gives_the_same_bytes() -> None:
    assert prescription_pdf([info()], access_code=ACCESS_CODE) == prescription_pdf([info()], access_code=ACCESS_CODE)


@pytest.mark.parametrize(
    "changes",
    [
        {"key": KEY[:-1]},
        {"key": "x" * 44},
        {"package_key": "1" * 45},
        {"packages": 0},
        {"valid_until": dt.date(2025, 2, 1)},
    ],
)
def test_a_malformed_prescription_is_refused(changes: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        info(**changes)


def test_no_prescription_no_pdf() -> None:
    with pytest.raises(ValueError):
        prescription_pdf([])


def test_infos_come_from_the_issued_event_as_stored() -> None:
    event = PrescriptionIssued(
        package_id=uuid.uuid4(),
        package_key=PACKAGE_KEY,
        access_code=ACCESS_CODE,
        patient_pesel=PESEL,
        issuer_npwz=NPWZ,
        issuer_profession="doctor",
        issued_on=dt.date(2025, 3, 1),
        request_id=None,
        prescriptions=[
            IssuedPrescriptionLine(
                key=KEY,
                drug=DRUG,
                packages=2,
                units_per_package="30",
                daily_dose_units="2",
                kind="standard",
                valid_from=dt.date(2025, 3, 1),
                valid_until=dt.date(2025, 3, 31),
            )
        ],
    )
    payload = event.model_dump(mode="json")  # dates as ISO strings, as the messages table keeps them

    [only] = prescription_infos(payload)

    assert only == info(quantity_text=None, dosage=None, issuer_name=None, control_visit_on=None, patient_name=None)
    extended = prescription_infos({**payload, "control_visit_on": "2025-04-15", "issuer_name": ISSUER})
    assert extended[0].control_visit_on == dt.date(2025, 4, 15) and extended[0].issuer_name == ISSUER


# ----------------------------------------------------------------------------- the templates

LINE = {
    "key": KEY,
    "drug": DRUG,
    "packages": 2,
    "valid_from": "2025-03-01",
    "valid_until": "2025-03-31",
}
CONTEXTS: dict[str, dict[str, Any]] = {
    "prescription_issued": {
        "access_code": ACCESS_CODE,
        "issued_on": "2025-03-01",
        "prescriptions": [LINE],
        "patient_pesel": PESEL,
        "issuer_npwz": NPWZ,
        "package_key": PACKAGE_KEY,
    },
    "booking_created": {"start": "2025-03-12T09:30:00+00:00", "patient_pesel": PESEL},
    "booking_cancelled": {"start": "2025-03-12T09:30:00+00:00", "patient_pesel": PESEL},
    "booking_moved": {"start": "2025-03-12T09:30:00+00:00", "patient_pesel": PESEL},
    "booking_needs_rescheduling": {"start": "2025-03-12T09:30:00+00:00", "patient_pesel": PESEL},
    "order_number": {"number": "2025/03/000123", "verification": "positive", "patient_pesel": PESEL},
    "problem": {
        "problem": 5,
        "problem_text": PROBLEM_TEXTS[next(iter(PROBLEM_TEXTS))].problem_pl,
        "fix_text": PROBLEM_TEXTS[next(iter(PROBLEM_TEXTS))].fix_pl,
        "npwz": NPWZ,
        "request_id": "1f0e3c1e-8f0a-4c55-9a57-5b7d2f7f4c11",
    },
    "cer_sync_failed": {
        "failure": "Pacjent ma wizytę potwierdzoną w CeR, a placówka nie ma jej w harmonogramie.",
        "slot_id": "9b1c",
        "start": "2025-03-12T09:30:00+00:00",
    },
}


def context_of(message: str) -> dict[str, Any]:
    return CONTEXTS[message.partition("/")[2]]


def test_every_template_file_is_a_listed_message() -> None:
    on_disk = set()
    for channel in ("sms", "email"):
        for path in (TEMPLATES_DIR / channel).iterdir():
            on_disk.add(f"{channel}/{path.name.split('.')[0]}")
    assert on_disk == set(MESSAGES)
    for message in MESSAGES:
        if message.startswith("email/"):
            kind = message.partition("/")[2]
            assert (TEMPLATES_DIR / "email" / f"{kind}.subject.txt").is_file()
            assert (TEMPLATES_DIR / "email" / f"{kind}.txt").is_file()


@pytest.mark.parametrize("message", sorted(MESSAGES))
def test_every_message_renders_in_polish(message: str) -> None:
    rendered = render(message, **context_of(message))

    assert rendered.text.strip()
    assert "{{" not in rendered.text and "{%" not in rendered.text
    if message.startswith("sms/"):
        assert rendered.subject is None and rendered.html is None
        assert "\n" not in rendered.text
    else:
        assert rendered.subject and "\n" not in rendered.subject
        assert "Wiadomość wysłana automatycznie" in rendered.text
        if rendered.html is not None:
            assert rendered.html.startswith("<!DOCTYPE html>") and 'lang="pl"' in rendered.html


@pytest.mark.parametrize("message", sorted(MESSAGES))
def test_the_required_variables_are_enough(message: str) -> None:
    context = {name: value for name, value in context_of(message).items() if name in MESSAGES[message]}

    assert render(message, **context).text.strip()


@pytest.mark.parametrize(
    ("message", "missing"), [(message, name) for message in sorted(MESSAGES) for name in sorted(MESSAGES[message])]
)
def test_a_missing_variable_is_an_error_not_an_empty_string(message: str, missing: str) -> None:
    context = {name: value for name, value in context_of(message).items() if name != missing}

    with pytest.raises(jinja2.UndefinedError):
        render(message, **context)


def test_a_missing_field_of_a_prescription_is_an_error_too() -> None:
    context = {**CONTEXTS["prescription_issued"], "prescriptions": [{"drug": DRUG}]}

    with pytest.raises(jinja2.UndefinedError):
        render("sms/prescription_issued", **context)


def test_unknown_channel_or_template() -> None:
    with pytest.raises(ValueError):
        render("fax/booking_created", start="2025-03-12T09:30:00+00:00")
    with pytest.raises(jinja2.TemplateNotFound):
        render("sms/no_such_message")


def test_prescription_sms_has_the_code_and_the_drug_and_no_pesel() -> None:
    text = render("sms/prescription_issued", **CONTEXTS["prescription_issued"]).text

    assert text == f"Recepta wystawiona. Kod dostępu: {ACCESS_CODE}. Lek: {DRUG}. Ważna do 31.03.2025."
    assert PESEL not in text and PACKAGE_KEY not in text and KEY not in text and NPWZ not in text
    # Polish letters force UCS-2: 70 characters fit one SMS, this one takes two parts.
    assert len(text) == 84
    assert sms_parts(text) == 2


def test_prescription_sms_of_a_package_names_each_drug_with_its_validity() -> None:
    lines = [LINE, {**LINE, "key": "2" * 44, "drug": "Amoksycylina 500 mg", "valid_until": "2025-03-08"}]
    context = {**CONTEXTS["prescription_issued"], "prescriptions": lines}

    text = render("sms/prescription_issued", **context).text

    assert text == (
        f"Recepty wystawione. Kod dostępu: {ACCESS_CODE}. "
        f"Leki: {DRUG} do 31.03.2025; Amoksycylina 500 mg do 08.03.2025."
    )
    assert PESEL not in text


def test_prescription_email_mentions_the_attachment_and_the_code() -> None:
    rendered = render("email/prescription_issued", **CONTEXTS["prescription_issued"])

    assert rendered.subject == "Informacja o wystawionej e-recepcie"
    assert "W załączniku (PDF)" in rendered.text and ACCESS_CODE in rendered.text and DRUG in rendered.text
    assert "od 01.03.2025 do 31.03.2025" in rendered.text
    assert PESEL not in rendered.text
    assert rendered.html is not None and DRUG in rendered.html


def test_html_is_escaped_and_text_is_not() -> None:
    line = {**LINE, "drug": "Lek <b>A</b> & B"}
    rendered = render("email/prescription_issued", **{**CONTEXTS["prescription_issued"], "prescriptions": [line]})

    assert "Lek <b>A</b> & B" in rendered.text
    assert rendered.html is not None and "Lek &lt;b&gt;A&lt;/b&gt; &amp; B" in rendered.html


@pytest.mark.parametrize("problem", sorted(PROBLEM_TEXTS))
def test_problem_email_carries_the_problem_and_the_fix_verbatim(problem: Any) -> None:
    text = PROBLEM_TEXTS[problem]
    context = {**CONTEXTS["problem"], "problem": int(problem), "problem_text": text.problem_pl, "fix_text": text.fix_pl}

    rendered = render("email/problem", **context)

    assert f"Problem: {text.problem_pl}" in rendered.text
    assert f"Proponowane rozwiązanie: {text.fix_pl}" in rendered.text
    assert rendered.subject == f"Powiadomienie: {text.problem_pl.rstrip('.')}"
    assert NPWZ in rendered.text and CONTEXTS["problem"]["request_id"] in rendered.text
    assert rendered.html is None


def test_a_refusal_notice_lists_what_was_refused_and_an_older_notice_has_no_list() -> None:
    refused = ["Lek Xanax 1 nie był wcześniej przepisany pacjentowi w tej placówce (brak na koncie pacjenta)."]
    rendered = render("email/problem", **{**CONTEXTS["problem"], "problem": 6, "details": refused})
    assert f"Szczegóły:\n- {refused[0]}\n" in rendered.text

    assert "Szczegóły" not in render("email/problem", **{**CONTEXTS["problem"], "details": []}).text
    assert "Szczegóły" not in render("email/problem", **CONTEXTS["problem"]).text  # events from before


def test_problem_email_without_npwz_or_request() -> None:
    rendered = render("email/problem", **{**CONTEXTS["problem"], "npwz": None, "request_id": None})

    assert "NPWZ lekarza" not in rendered.text and "Identyfikator zamówienia" not in rendered.text


def test_cer_sync_failure_says_what_failed_and_what_to_do() -> None:
    rendered = render("email/cer_sync_failed", **CONTEXTS["cer_sync_failed"])

    assert CONTEXTS["cer_sync_failed"]["failure"] in rendered.text
    assert "12.03.2025, godz. 10:30" in rendered.text and "9b1c" in rendered.text
    assert "To wymaga weryfikacji przez dostawcę oprogramowania placówki." in rendered.text
    assert "Nie odsyłaj pacjentów." in rendered.text


@pytest.mark.parametrize("channel", ["sms", "email"])
def test_a_negatively_verified_order_says_so(channel: str) -> None:
    positive = render(f"{channel}/order_number", **CONTEXTS["order_number"])
    negative = render(
        f"{channel}/order_number",
        **{**CONTEXTS["order_number"], "verification": "negative", "reasons": ["Brak ubezpieczenia"]},
    )

    assert "2025/03/000123" in positive.text and "2025/03/000123" in negative.text
    assert "negatywnie" not in positive.text
    assert "zweryfikowane negatywnie przez NFZ" in negative.text
    if channel == "email":
        assert "Brak ubezpieczenia" in negative.text
        assert negative.subject is not None and "weryfikacja negatywna" in negative.subject
    with pytest.raises(ValueError, match="verification"):
        render(f"{channel}/order_number", **{**CONTEXTS["order_number"], "verification": "pozytywna"})


@pytest.mark.parametrize(
    ("start", "shown"),
    [
        ("2025-01-10T08:00:00+00:00", "10.01.2025, godz. 09:00"),  # CET
        ("2025-07-01T08:00:00+00:00", "01.07.2025, godz. 10:00"),  # CEST
        ("2025-07-01 08:00:00+00:00", "01.07.2025, godz. 10:00"),  # str() of a datetime
        (dt.datetime(2025, 7, 1, 8, 0, tzinfo=dt.UTC), "01.07.2025, godz. 10:00"),
    ],
)
def test_booking_times_are_shown_in_polish_time(start: Any, shown: str) -> None:
    assert render("sms/booking_created", start=start).text.startswith(f"Wizyta potwierdzona: {shown}.")


def test_sms_parts_follow_gsm7_and_ucs2() -> None:
    assert sms_parts("a" * 160) == 1
    assert sms_parts("a" * 161) == 2
    assert sms_parts("a" * 306) == 2
    assert sms_parts("[" * 80) == 1  # GSM-7 extension characters count twice
    assert sms_parts("[" * 81) == 2
    assert sms_parts("ż" * 70) == 1
    assert sms_parts("ż" * 71) == 2
    assert sms_parts("ż" * 134) == 2
    assert sms_parts("ż" * 135) == 3

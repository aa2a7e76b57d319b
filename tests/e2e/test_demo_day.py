"""`make demo` end to end: the scripted clinic-and-pharmacy day runs through the embedded gateway,
prints each of its nine steps and never prints a whole PESEL or the access code."""

from __future__ import annotations

import re

import pytest

from gateway.demo_day import JAN, MARIA, demo_day

STEPS = (
    ("1. Clinic set-up", ("department code 0010", "published to CeR", "e-mail + SMS")),
    ("2. Desk booking", ("(desk)", "409 Conflict")),
    ("3. CeR booking", ("signed notification", "(cer_ikp)", "compliance, cardiology")),
    ("4. IKP order routed to the duty doctor", ("P1 confirmed: enabled", "2 items in one go", "duty doctor")),
    ("5. The duty doctor issues the package", ("2 prescriptions", "registered in P1")),
    ("6. Realised in two pharmacies", ("realised by apteka-pod-lipami", "realised by apteka-centralna")),
    ("7. A psychoactive OTC sale refused", ("policy: block", "7 packages: block")),
    ("8. eZWM order realised and settled", ("subsidy 94.50", "patient pays 40.50", "CSV 3 lines")),
    ("9. Messages sent", ("mail catcher: 5 e-mails", "SMS provider: 4 SMS")),
)


async def test_the_demo_day_plays_every_step_and_masks_what_is_secret(capsys: pytest.CaptureFixture[str]) -> None:
    report = await demo_day()

    captured = capsys.readouterr()
    out = captured.out + captured.err
    assert report.steps_done == list(range(1, 10))
    sections = re.split(r"\n(?=\d\. )", out)
    for header, words in STEPS:
        section = next((s for s in sections if s.startswith(header)), None)
        assert section is not None, f"no step {header!r} in:\n{out}"
        for word in words:
            assert word in section, f"{word!r} missing from step {header!r}:\n{section}"
    assert "Summary: 9/9 steps" in out and "Gateway readiness: ready" in out
    assert (report.sale_decision, report.subsidy, report.patient_share) == ("block", "94.50", "40.50")

    for pesel in (JAN.pesel, MARIA.pesel):
        assert pesel not in out
    assert "440514*****" in out
    assert re.search(r"(?<!\d)\d{11}(?!\d)", out) is None  # nothing else that looks like a PESEL either
    code = report.access_code
    assert re.fullmatch(r"\d{4}", code)
    assert "code ****" in out and re.search(r"(?<!department )\bcode\W*\d{4}", out) is None
    # The code as a number of its own (dates, months and the department code are no such mention).
    without_dates = re.sub(r"\d{4}-\d{2}(-\d{2})?|\b0010\b", "", out)
    assert re.search(rf"(?<![0-9A-Za-z]){code}(?![0-9A-Za-z])", without_dates) is None


def test_a_failing_day_exits_1_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from gateway import demo_day as module

    monkeypatch.setenv("P1_URL", "https://p1.example.gov.pl")  # a real system: the day refuses to start

    with pytest.raises(SystemExit) as exited:
        module.main()

    assert exited.value.code == 1
    assert "The demo day failed: unset P1_URL: the demo day runs on the sandbox only" in capsys.readouterr().err

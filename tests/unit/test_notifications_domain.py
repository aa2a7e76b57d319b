"""Which messages an event makes: channels from the patient's preferences, facilities by e-mail."""

from __future__ import annotations

import pytest

from services.notifications import domain
from services.notifications.domain import (
    Audience,
    Channel,
    Contact,
    is_dead,
    plan,
    retry_delay,
    subscribed_event_types,
)

BOTH = Contact("jan@example.pl", "+48600100200", frozenset({Channel.EMAIL, Channel.SMS}))
ISSUED = "prescriptions.prescription.issued"


def test_an_issued_prescription_goes_by_sms_and_by_email_with_the_pdf() -> None:
    planned = plan(ISSUED, {"access_code": "1234"}, BOTH, None)

    assert [(p.channel, p.recipient, p.attach_prescription_pdf) for p in planned] == [
        (Channel.EMAIL, "jan@example.pl", True),
        (Channel.SMS, "+48600100200", False),
    ]
    assert all(p.audience is Audience.PATIENT and p.template == "prescription_issued" for p in planned)


@pytest.mark.parametrize(
    ("contact", "expected"),
    [
        (None, [(None, None)]),  # never told us anything: recorded as no channel
        (Contact("a@b.pl", "+48600100200", frozenset()), [(None, None)]),  # chose none
        (Contact(None, "+48600100200", frozenset({Channel.EMAIL})), [(Channel.EMAIL, None)]),  # no address
        (
            Contact("a@b.pl", None, frozenset({Channel.SMS, Channel.EMAIL})),
            [(Channel.EMAIL, "a@b.pl"), (Channel.SMS, None)],
        ),
    ],
)
def test_no_channel_or_no_address_is_planned_so_that_it_is_visible(
    contact: Contact | None, expected: list[tuple[Channel | None, str | None]]
) -> None:
    assert [
        (p.channel, p.recipient) for p in plan("scheduling.booking.created", {"source": "desk"}, contact, None)
    ] == (expected)


def test_a_booking_for_a_prescription_request_is_not_announced_to_the_patient() -> None:
    assert plan("scheduling.booking.created", {"source": "prescription_request"}, BOTH, None) == []
    assert len(plan("scheduling.booking.created", {"source": "portal"}, BOTH, None)) == 2


def test_a_problem_goes_to_the_facility_email_only() -> None:
    planned = plan("prescriptions.problem.raised", {"patient_pesel": "44051401359"}, BOTH, "rejestracja@clinic.pl")
    assert [(p.audience, p.channel, p.recipient, p.template) for p in planned] == [
        (Audience.FACILITY, Channel.EMAIL, "rejestracja@clinic.pl", "problem")
    ]
    unset = plan("prescriptions.problem.raised", {}, None, None)
    assert [(p.channel, p.recipient) for p in unset] == [(None, None)]


def test_events_nobody_is_told_about_make_nothing() -> None:
    assert plan("scheduling.schedule.published", {}, BOTH, "x@y.pl") == []
    assert "scheduling.schedule.published" not in subscribed_event_types()
    assert ISSUED in subscribed_event_types()


def test_retries_double_up_to_the_cap_and_die_after_the_last_attempt() -> None:
    assert [retry_delay(n, 2.0, 60.0) for n in range(1, 8)] == [2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]
    assert not is_dead(5, 6) and is_dead(6, 6)


def test_a_delivered_message_keeps_everything_but_the_access_code() -> None:
    context = {"access_code": "1234", "prescriptions": [{"drug": "Metformax"}], "issued_on": "2030-03-04"}
    kept = domain.delivered_context(context)
    assert kept == {"prescriptions": [{"drug": "Metformax"}], "issued_on": "2030-03-04"}
    assert context["access_code"] == "1234"  # the message being composed is not changed under it

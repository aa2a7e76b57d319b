"""The audit's pure rules: who lists what, how a row is shown, what retention keeps, how events split."""

from __future__ import annotations

import datetime as dt
import uuid
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from services.audit import domain
from shared import audit
from shared.auth import Principal, Role
from shared.problems import Forbidden

AT = dt.datetime(2030, 1, 7, 8, 0, tzinfo=dt.UTC)


def test_a_facility_admin_lists_its_facility_and_the_operator_everything() -> None:
    admin = Principal(sub="a", role=Role.facility_admin, facility_id="clinic-a")
    assert domain.events_scope(admin) == domain.Scope(tenant="clinic-a")
    assert domain.events_scope(Principal(sub="ops", role=Role.operator)) == domain.Scope(tenant=None)
    # An operator token that happens to carry a facility still sees all: the role decides.
    assert domain.events_scope(Principal(sub="ops", role=Role.operator, facility_id="x")).tenant is None


def test_a_role_bound_to_no_facility_gets_no_scope_but_a_403() -> None:
    with pytest.raises(Forbidden):
        domain.events_scope(Principal(sub="p", role=Role.pharmacist, pharmacy_id="apteka"))


def test_a_pesel_is_shown_masked_and_no_patient_stays_none() -> None:
    assert domain.masked("44051401359") == "44*********"
    assert domain.masked(None) is None


WARSAW = ZoneInfo("Europe/Warsaw")


@pytest.mark.parametrize(
    ("now", "years", "cutoff"),
    [
        # A row of 2026 is kept through 31 December 2046: in 2046 only the rows before 2026 go.
        (dt.datetime(2046, 6, 1, 12, tzinfo=dt.UTC), 20, dt.datetime(2026, 1, 1, tzinfo=WARSAW)),
        (dt.datetime(2046, 1, 1, 0, 0, tzinfo=WARSAW), 20, dt.datetime(2026, 1, 1, tzinfo=WARSAW)),
        (dt.datetime(2045, 12, 31, 23, 59, 59, tzinfo=WARSAW), 20, dt.datetime(2025, 1, 1, tzinfo=WARSAW)),
        # New Year's night: 23:30 UTC on 31 December is already the new year in Warsaw.
        (dt.datetime(2045, 12, 31, 23, 30, tzinfo=dt.UTC), 20, dt.datetime(2026, 1, 1, tzinfo=WARSAW)),
        (dt.datetime(2046, 6, 1, tzinfo=dt.UTC), 1, dt.datetime(2045, 1, 1, tzinfo=WARSAW)),
    ],
)
def test_retention_counts_from_the_end_of_the_rows_calendar_year(
    now: dt.datetime, years: int, cutoff: dt.datetime
) -> None:
    assert domain.retention_cutoff(now, years, WARSAW) == cutoff


def test_retention_of_less_than_a_year_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one year"):
        domain.retention_cutoff(AT, 0, WARSAW)


def _who() -> Principal:
    return Principal(sub="desk", role=Role.registrar, facility_id="clinic-a")


def test_an_event_becomes_one_numbered_row_per_entry() -> None:
    entries = [audit.AuditEntry(resource=f"booking/{n}", patient_pesel="44051401359") for n in range(3)]
    event_id = uuid.uuid4()
    rows = domain.rows_of(event_id, audit.access(_who(), "scheduling.booking.list", entries, at=AT))
    assert [r["position"] for r in rows] == [0, 1, 2]
    assert {(r["event_id"], r["actor"], r["role"], r["tenant"], r["at"]) for r in rows} == {
        (event_id, "desk", "registrar", "clinic-a", AT)
    }
    assert [r["resource"] for r in rows] == ["booking/0", "booking/1", "booking/2"]


def test_an_operators_access_names_the_facility_whose_data_it_was() -> None:
    operator = Principal(sub="ops", role=Role.operator)
    event = audit.access(operator, "x.y", [audit.AuditEntry(resource="r")], at=AT, tenant="clinic-b")
    assert event.tenant == "clinic-b"
    pharmacist = Principal(sub="ph", role=Role.pharmacist, pharmacy_id="apteka")
    assert audit.access(pharmacist, "x.y", [audit.AuditEntry(resource="r")], at=AT).tenant == "apteka"


@pytest.mark.parametrize(
    "bad",
    [
        {"entries": []},
        {"action": "Booking Created"},
        {"entries": [{"resource": "r", "patient_pesel": "4405140135"}]},
        {"entries": [{"resource": ""}]},
    ],
)
def test_an_event_without_entries_or_with_a_malformed_field_is_refused(bad: dict[str, object]) -> None:
    good = {"actor": "a", "role": "registrar", "action": "x.y", "at": AT, "entries": [{"resource": "r"}]}
    with pytest.raises(ValidationError):
        audit.AccessRecorded.model_validate({**good, **bad})


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[audit.AccessRecorded, str | None]] = []

    def emit(self, payload: audit.AccessRecorded, *, facility_id: str | None) -> None:
        self.events.append((payload, facility_id))


def test_a_long_list_is_split_into_events_of_at_most_max_entries_and_an_empty_one_emits_nothing() -> None:
    recorder = _Recorder()
    many = [audit.AuditEntry(resource=f"booking/{n}") for n in range(audit.MAX_ENTRIES + 1)]
    audit.record_accesses(recorder, _who(), "scheduling.booking.list", many, at=AT)  # type: ignore[arg-type]
    assert [len(e.entries) for e, _ in recorder.events] == [audit.MAX_ENTRIES, 1]
    assert {facility for _, facility in recorder.events} == {"clinic-a"}
    recorder.events.clear()
    audit.record_accesses(recorder, _who(), "scheduling.booking.list", [], at=AT)  # type: ignore[arg-type]
    assert recorder.events == []


def test_a_patient_sees_the_accesses_in_its_portals_facility_or_everywhere_without_one() -> None:
    portal = Principal(sub="p", role=Role.patient, pesel="44051401359", facility_id="clinic-a")
    assert domain.my_scope(portal) == domain.Scope(tenant="clinic-a")
    national = Principal(sub="p", role=Role.patient, pesel="44051401359")
    assert domain.my_scope(national) == domain.Scope(tenant=None)


def test_a_national_system_is_audited_as_a_system_actor_of_the_facility_it_acted_in() -> None:
    cer = audit.Actor.system("cer", "clinic-a")
    event = audit.access(cer, "scheduling.booking.create", [audit.AuditEntry(resource="booking/1")], at=AT)
    assert (event.actor, event.role, event.tenant) == ("system:cer", "system", "clinic-a")

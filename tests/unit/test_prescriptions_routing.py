"""Routing order (own doctor, duty here, duty elsewhere), races and the five problem notifications."""

from __future__ import annotations

import datetime as dt
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.prescriptions.domain import (
    PROBLEM_TEXTS,
    FreeSlot,
    Problem,
    RouteKind,
    RoutingOutcome,
    TargetDoctor,
    portal_refusal,
    route_candidates,
    route_request,
)
from services.prescriptions.routing import ordering_enabled
from services.scheduling.schemas import PractitionerOut, Profession

T0 = dt.datetime(2026, 3, 2, 8, 0, tzinfo=dt.UTC)
HERE, THERE = "loc-here", "loc-there"
NPWZ = "5425740"
DOC = TargetDoctor("doc", NPWZ, ordering_enabled=True)
DISABLED = TargetDoctor("doc", NPWZ, ordering_enabled=False)


def slot(slot_id: str, who: str, where: str, minutes: int) -> FreeSlot:
    return FreeSlot(slot_id, who, where, T0 + dt.timedelta(minutes=minutes))


OWN = [slot("own-late", "doc", THERE, 90), slot("own-early", "doc", HERE, 30)]
DUTY = [
    slot("duty-there-early", "duty", THERE, 0),
    slot("duty-here-late", "duty", HERE, 60),
    slot("duty-here-early", "duty", HERE, 45),
]


def route(
    *,
    target: TargetDoctor | None = DOC,
    own: list[FreeSlot] | None = None,
    duty: list[FreeSlot] | None = None,
    duty_id: str | None = "duty",
    active: bool = True,
    taken: frozenset[str] = frozenset(),
) -> RoutingOutcome:
    return route_request(
        service_active=active,
        npwz=NPWZ,
        target=target,
        target_slots=OWN if own is None else own,
        location_id=HERE,
        duty_doctor_id=duty_id,
        duty_slots=DUTY if duty is None else duty,
        taken=taken,
    )


def chosen(outcome: RoutingOutcome) -> str | None:
    return None if outcome.choice is None else outcome.choice.slot.slot_id


def problems(outcome: RoutingOutcome) -> list[Problem]:
    return [p.problem for p in outcome.problems]


def test_earliest_own_slot_first_even_when_duty_is_earlier() -> None:
    outcome = route()
    assert chosen(outcome) == "own-early"
    assert outcome.choice is not None and outcome.choice.kind is RouteKind.OWN
    assert problems(outcome) == []


def test_own_slot_at_another_location_beats_the_duty_doctor() -> None:
    outcome = route(own=[slot("own-there", "doc", THERE, 500)])
    assert chosen(outcome) == "own-there"
    assert outcome.choice is not None and not outcome.choice.at_request_location


def test_no_own_slot_goes_to_duty_here_earliest_first_with_problem_3() -> None:
    outcome = route(own=[])
    assert chosen(outcome) == "duty-here-early"
    assert outcome.choice is not None and outcome.choice.kind is RouteKind.DUTY and outcome.choice.at_request_location
    assert problems(outcome) == [Problem.NO_FREE_SLOTS_DOCTOR]


def test_duty_elsewhere_only_when_duty_has_nothing_here() -> None:
    outcome = route(
        own=[], duty=[slot("duty-there-late", "duty", THERE, 99), slot("duty-there-early", "duty", THERE, 1)]
    )
    assert chosen(outcome) == "duty-there-early"
    assert outcome.choice is not None and not outcome.choice.at_request_location
    assert problems(outcome) == [Problem.NO_FREE_SLOTS_DOCTOR]


def test_nothing_anywhere_raises_problem_4_only() -> None:
    outcome = route(own=[], duty=[])
    assert chosen(outcome) is None
    assert problems(outcome) == [Problem.NO_FREE_SLOTS_DOCTOR_AND_DUTY]


def test_no_duty_doctor_configured_counts_as_no_duty_slot() -> None:
    outcome = route(own=[], duty_id=None)
    assert chosen(outcome) is None
    assert problems(outcome) == [Problem.NO_FREE_SLOTS_DOCTOR_AND_DUTY]


def test_unknown_npwz_goes_to_duty_with_problem_5() -> None:
    outcome = route(target=None)
    assert chosen(outcome) == "duty-here-early"
    assert problems(outcome) == [Problem.NO_PRACTITIONER_WITH_NPWZ]
    assert outcome.problems[0].npwz == NPWZ


def test_unknown_npwz_and_no_duty_slot_raises_5_and_4() -> None:
    outcome = route(target=None, duty=[])
    assert chosen(outcome) is None
    assert problems(outcome) == [Problem.NO_PRACTITIONER_WITH_NPWZ, Problem.NO_FREE_SLOTS_DOCTOR_AND_DUTY]


def test_disabled_doctor_slots_are_never_used_duty_takes_it_with_problem_2() -> None:
    outcome = route(target=DISABLED)
    assert chosen(outcome) == "duty-here-early"
    assert problems(outcome) == [Problem.NOT_ENABLED_FOR_DOCTOR]
    assert outcome.problems[0].practitioner_id == "doc"


def test_disabled_doctor_and_no_duty_slot_raises_2_and_4() -> None:
    outcome = route(target=DISABLED, duty=[])
    assert chosen(outcome) is None
    assert problems(outcome) == [Problem.NOT_ENABLED_FOR_DOCTOR, Problem.NO_FREE_SLOTS_DOCTOR_AND_DUTY]


def test_inactive_service_routes_nothing_and_raises_problem_1_only() -> None:
    outcome = route(active=False, target=None, own=[], duty=[])
    assert chosen(outcome) is None
    assert problems(outcome) == [Problem.NO_ACTIVE_SERVICE]
    assert chosen(route(active=False)) is None


def test_race_lost_on_earliest_own_slot_takes_the_next_own_slot() -> None:
    assert chosen(route(taken=frozenset({"own-early"}))) == "own-late"


def test_race_lost_on_every_own_slot_goes_to_duty_here_then_elsewhere() -> None:
    taken = {"own-early", "own-late"}
    assert chosen(route(taken=frozenset(taken))) == "duty-here-early"
    assert problems(route(taken=frozenset(taken))) == [Problem.NO_FREE_SLOTS_DOCTOR]
    taken |= {"duty-here-early"}
    assert chosen(route(taken=frozenset(taken))) == "duty-here-late"
    taken |= {"duty-here-late"}
    assert chosen(route(taken=frozenset(taken))) == "duty-there-early"
    taken |= {"duty-there-early"}
    outcome = route(taken=frozenset(taken))
    assert chosen(outcome) is None
    assert problems(outcome) == [Problem.NO_FREE_SLOTS_DOCTOR_AND_DUTY]


def test_candidates_list_the_whole_order() -> None:
    candidates = route_candidates(DOC, OWN, HERE, DUTY)
    assert [c.slot.slot_id for c in candidates] == [
        "own-early",
        "own-late",
        "duty-here-early",
        "duty-here-late",
        "duty-there-early",
    ]
    assert [c.kind for c in candidates] == [RouteKind.OWN] * 2 + [RouteKind.DUTY] * 3


def test_equal_start_times_are_ordered_by_slot_id() -> None:
    same = [slot("b", "doc", HERE, 0), slot("a", "doc", HERE, 0)]
    assert chosen(route(own=same)) == "a"


@pytest.mark.parametrize("problem", list(Problem))
def test_every_problem_has_both_languages_problem_and_fix(problem: Problem) -> None:
    text = PROBLEM_TEXTS[problem]
    for sentence in (text.problem_pl, text.fix_pl, text.problem_en, text.fix_en):
        assert sentence.strip().endswith(".")
        assert len(sentence) > 20


def test_problem_texts_use_the_source_wording() -> None:
    assert PROBLEM_TEXTS[Problem.NO_ACTIVE_SERVICE].problem_pl.startswith(
        "Placówka nie posiada aktywowanej usługi Zamawiania recept on-line"
    )
    assert "lekarza i lekarza dyżurnego" in PROBLEM_TEXTS[Problem.NO_FREE_SLOTS_DOCTOR_AND_DUTY].problem_pl
    assert "NPWZ" in PROBLEM_TEXTS[Problem.NO_PRACTITIONER_WITH_NPWZ].fix_pl
    assert [p.value for p in Problem] == [1, 2, 3, 4, 5, 6]  # 6: a refused request or items


slots_strategy = st.lists(
    st.builds(
        FreeSlot,
        slot_id=st.uuids().map(str),
        practitioner_id=st.just("x"),
        location_id=st.sampled_from([HERE, THERE]),
        starts_at=st.integers(0, 10_000).map(lambda m: T0 + dt.timedelta(minutes=m)),
    ),
    max_size=8,
)


@given(slots_strategy, slots_strategy, st.sampled_from([DOC, DISABLED, None]))
def test_routing_properties(own: list[FreeSlot], duty: list[FreeSlot], target: TargetDoctor | None) -> None:
    outcome = route(target=target, own=own, duty=duty)
    usable_own = own if target is DOC else []
    if usable_own:
        assert outcome.choice is not None and outcome.choice.kind is RouteKind.OWN
        assert outcome.choice.slot.starts_at == min(s.starts_at for s in usable_own)
        assert outcome.problems == ()
    elif duty:
        assert outcome.choice is not None and outcome.choice.kind is RouteKind.DUTY
        here = [s for s in duty if s.location_id == HERE]
        pool = here or duty
        assert outcome.choice.slot.starts_at == min(s.starts_at for s in pool)
        assert len(outcome.problems) == 1
    else:
        assert outcome.choice is None
        assert problems(outcome)[-1] is Problem.NO_FREE_SLOTS_DOCTOR_AND_DUTY


def test_the_portal_takes_a_request_only_for_a_practitioner_with_ordering_enabled() -> None:
    assert portal_refusal(NPWZ, DOC) is None
    disabled = portal_refusal(NPWZ, DISABLED)
    assert disabled is not None
    assert (disabled.problem, disabled.npwz, disabled.practitioner_id) == (Problem.NOT_ENABLED_FOR_DOCTOR, NPWZ, "doc")
    unknown = portal_refusal(NPWZ, None)
    assert unknown is not None and (unknown.problem, unknown.npwz) == (Problem.NO_PRACTITIONER_WITH_NPWZ, NPWZ)


@pytest.mark.parametrize(
    ("switch", "ikp", "poz", "enabled"),
    [
        (True, False, False, True),  # switched on by the facility
        (False, True, True, False),  # switched off explicitly: IKP does not switch it back on
        (None, True, True, True),  # IKP integration enables every POZ doctor
        (None, True, False, False),  # ... but not a specialist
        (None, False, True, False),  # nothing switched on at all
    ],
)
def test_who_has_ordering_enabled(switch: bool | None, ikp: bool, poz: bool, enabled: bool) -> None:
    practitioner = PractitionerOut(id=uuid.uuid4(), name="Dr", npwz=NPWZ, profession=Profession.doctor, poz=poz)
    assert ordering_enabled(practitioner, switch, ikp) is enabled

"""Routing a prescription request to a slot, and the five problem notifications.

Order (DOMAIN.md 2, KS-SOMED "Konfiguracja lekarzy dyżurnych"): the target doctor's earliest free
prescription slot; else the duty doctor of the request's location - first at that location, then
at that duty doctor's other locations. Earliest slot first within each tier (ties: slot id).

Choices where the source is silent:
- No active service (problem 1): the request is not routed at all; only problem 1 is raised.
- Doctor not enabled (2), no free slot of the doctor (3), no practitioner with the NPWZ (5): an IKP
  request still goes to the duty doctor (the source: "W przypadku braku możliwości zapisania
  zamówienia ... do wybranego lekarza np. z powodu braku wolnych terminów lub braku lekarza ...
  zapisywane w harmonogramie tzw. dyżurnego"), and the notification is raised as well. A disabled
  doctor's slots are never used. A portal request to a disabled or unknown doctor is refused
  instead (``portal_refusal``); one to an enabled doctor without a free slot goes to the duty doctor.
- When the duty doctor has no slot either (or the location has no duty doctor), problem 4 is raised
  and nothing is booked; it replaces problem 3 and is added to problems 2 and 5.
- Racing: ``taken`` lists slots lost to a concurrent booking; the caller retries with them excluded
  (or walks ``route_candidates`` in order).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass


class Problem(enum.IntEnum):
    NO_ACTIVE_SERVICE = 1
    NOT_ENABLED_FOR_DOCTOR = 2
    NO_FREE_SLOTS_DOCTOR = 3
    NO_FREE_SLOTS_DOCTOR_AND_DUTY = 4
    NO_PRACTITIONER_WITH_NPWZ = 5
    # Not one of the source's five: DOMAIN.md 2 wants every refused request or item noticed, and
    # none of the five says "refused" (e.g. a drug outside the portal's drug scope).
    REQUEST_REFUSED = 6


@dataclass(frozen=True)
class ProblemText:
    problem_pl: str
    fix_pl: str
    problem_en: str
    fix_en: str


PROBLEM_TEXTS: dict[Problem, ProblemText] = {
    Problem.NO_ACTIVE_SERVICE: ProblemText(
        "Placówka nie posiada aktywowanej usługi Zamawiania recept on-line.",
        "Rozwiązaniem jest włączenie usługi Zamawiania recept on-line w ustawieniach placówki.",
        "The facility has no active online prescription-ordering service.",
        "Activate the online prescription-ordering service in the facility's settings.",
    ),
    Problem.NOT_ENABLED_FOR_DOCTOR: ProblemText(
        "Nie włączono usługi Zamawiania recept on-line dla lekarza.",
        "Rozwiązaniem jest włączenie usługi zamawiania recept dla wskazanego lekarza, a następnie "
        "udostępnienie terminów dla lekarza, w tym terminów receptowych.",
        "The online prescription-ordering service is not enabled for the doctor.",
        "Enable prescription ordering for the doctor, then publish the doctor's slots, including prescription slots.",
    ),
    Problem.NO_FREE_SLOTS_DOCTOR: ProblemText(
        "Nie znaleziono wolnych terminów przeznaczonych do obsługi zamówień dla lekarza.",
        "Rozwiązaniem jest udostępnienie terminów receptowych w ramach harmonogramu czasu pracy lekarza, "
        "którego dotyczy zgłoszenie.",
        "No free slots for handling prescription orders were found for the doctor.",
        "Publish prescription slots in the work schedule of the doctor concerned.",
    ),
    Problem.NO_FREE_SLOTS_DOCTOR_AND_DUTY: ProblemText(
        "Nie znaleziono wolnych terminów przeznaczonych do obsługi zamówień dla lekarza i lekarza dyżurnego.",
        "Rozwiązaniem jest udostępnienie terminów receptowych w ramach harmonogramu czasu pracy lekarzy, "
        "których dotyczy zgłoszenie (lekarza i lekarza dyżurnego).",
        "No free slots for handling prescription orders were found for the doctor nor the duty doctor.",
        "Publish prescription slots in the work schedules of the doctors concerned (the doctor and the duty doctor).",
    ),
    Problem.NO_PRACTITIONER_WITH_NPWZ: ProblemText(
        "Nie znaleziono lekarza o NPWZ, do którego zostało wystawione zamówienie na receptę.",
        "Rozwiązaniem jest uzupełnienie pola NPWZ na karcie pracownika (karta lekarza), a następnie "
        "sprawdzenie, czy udostępniono terminy dla lekarza, w tym terminy receptowe.",
        "No practitioner with the NPWZ the prescription order was addressed to was found.",
        "Fill in the NPWZ on the practitioner's record, then check that the doctor's slots, "
        "including prescription slots, are published.",
    ),
    Problem.REQUEST_REFUSED: ProblemText(
        "Odrzucono zamówienie na receptę lub jego pozycje.",
        "Rozwiązaniem jest sprawdzenie podanych powodów odrzucenia i, jeśli zamówienie powinno zostać przyjęte, "
        "poprawienie ustawień placówki (zakres leków, konto pacjenta, lokalizacje) albo kontakt z pacjentem.",
        "A prescription order or some of its items were refused.",
        "Check the reasons given; if the order should have been accepted, correct the facility's settings "
        "(drug scope, the patient's account, locations) or contact the patient.",
    ),
}


@dataclass(frozen=True)
class ProblemNotice:
    """``details``: what exactly was refused and why (Polish sentences), for the refusal notice."""

    problem: Problem
    npwz: str | None = None
    practitioner_id: str | None = None
    details: tuple[str, ...] = ()

    @property
    def text(self) -> ProblemText:
        return PROBLEM_TEXTS[self.problem]


@dataclass(frozen=True)
class FreeSlot:
    slot_id: str
    practitioner_id: str
    location_id: str
    starts_at: dt.datetime


@dataclass(frozen=True)
class TargetDoctor:
    practitioner_id: str
    npwz: str
    ordering_enabled: bool


class RouteKind(enum.StrEnum):
    OWN = "own"
    DUTY = "duty"


@dataclass(frozen=True)
class RouteChoice:
    kind: RouteKind
    slot: FreeSlot
    at_request_location: bool


@dataclass(frozen=True)
class RoutingOutcome:
    """``choice`` None means nothing is booked; ``problems`` are the notifications to raise, in order."""

    choice: RouteChoice | None
    problems: tuple[ProblemNotice, ...]


def _earliest(slots: Iterable[FreeSlot], taken: Collection[str]) -> list[FreeSlot]:
    return sorted((s for s in slots if s.slot_id not in taken), key=lambda s: (s.starts_at, s.slot_id))


@dataclass(frozen=True)
class RoutingTier:
    """One step of the routing order: whose prescription slots, and where (None: anywhere)."""

    kind: RouteKind
    practitioner_id: str
    only_at: str | None = None
    not_at: str | None = None

    def admits(self, slot: FreeSlot) -> bool:
        return (self.only_at is None or slot.location_id == self.only_at) and (
            self.not_at is None or slot.location_id != self.not_at
        )


def routing_tiers(target: TargetDoctor | None, location_id: str, duty_doctor_id: str | None) -> tuple[RoutingTier, ...]:
    """The order, in one place: the doctor (if ordering is on for them), then the duty doctor at the
    request's location, then the duty doctor elsewhere."""
    tiers: list[RoutingTier] = []
    if target is not None and target.ordering_enabled:
        tiers.append(RoutingTier(RouteKind.OWN, target.practitioner_id))
    if duty_doctor_id is not None:
        tiers.append(RoutingTier(RouteKind.DUTY, duty_doctor_id, only_at=location_id))
        tiers.append(RoutingTier(RouteKind.DUTY, duty_doctor_id, not_at=location_id))
    return tuple(tiers)


def portal_refusal(npwz: str, target: TargetDoctor | None) -> ProblemNotice | None:
    """Why a portal request to ``target`` is refused, as the facility's notice; None: it is taken.

    DOMAIN.md 2: the portal offers ordering only for practitioners the facility enabled, so a portal
    request to anyone else (ordering off, or no practitioner with the NPWZ) is refused with 422 and
    never rerouted: the duty doctor with notices 2 and 5 is the IKP path, where the patient could
    not choose.
    """
    if target is None:
        return ProblemNotice(Problem.NO_PRACTITIONER_WITH_NPWZ, npwz)
    if not target.ordering_enabled:
        return ProblemNotice(Problem.NOT_ENABLED_FOR_DOCTOR, npwz, target.practitioner_id)
    return None


def route_candidates(
    target: TargetDoctor | None,
    target_slots: Sequence[FreeSlot],
    location_id: str,
    duty_slots: Sequence[FreeSlot],
    taken: Collection[str] = frozenset(),
) -> tuple[RouteChoice, ...]:
    """Every slot the request may take, best first: own, duty here, duty elsewhere."""
    duty_doctor_id = duty_slots[0].practitioner_id if duty_slots else None
    choices: list[RouteChoice] = []
    for tier in routing_tiers(target, location_id, duty_doctor_id):
        slots = target_slots if tier.kind is RouteKind.OWN else duty_slots
        choices += [
            RouteChoice(tier.kind, s, s.location_id == location_id) for s in _earliest(slots, taken) if tier.admits(s)
        ]
    return tuple(choices)


def routing_problems(*, npwz: str, target: TargetDoctor | None, booked: RouteKind | None) -> tuple[ProblemNotice, ...]:
    """The notifications for a request whose active service booked ``booked`` (None: nothing)."""
    problems: list[ProblemNotice] = []
    if target is None:
        problems.append(ProblemNotice(Problem.NO_PRACTITIONER_WITH_NPWZ, npwz))
    elif not target.ordering_enabled:
        problems.append(ProblemNotice(Problem.NOT_ENABLED_FOR_DOCTOR, npwz, target.practitioner_id))
    if booked is RouteKind.OWN:
        return ()
    doctor_id = target.practitioner_id if target is not None else None
    if booked is None:
        problems.append(ProblemNotice(Problem.NO_FREE_SLOTS_DOCTOR_AND_DUTY, npwz, doctor_id))
    elif target is not None and target.ordering_enabled:
        problems.append(ProblemNotice(Problem.NO_FREE_SLOTS_DOCTOR, npwz, doctor_id))
    return tuple(problems)


def route_request(
    *,
    service_active: bool,
    npwz: str,
    target: TargetDoctor | None,
    target_slots: Sequence[FreeSlot],
    location_id: str,
    duty_doctor_id: str | None,
    duty_slots: Sequence[FreeSlot],
    taken: Collection[str] = frozenset(),
) -> RoutingOutcome:
    """The slot to book and the problems to notify (see the module docstring for the rules).

    ``duty_slots`` are the free prescription slots of the duty doctor of ``location_id`` at every
    location (those at ``location_id`` are tried first); ``duty_doctor_id`` None = no duty doctor.
    """
    if not service_active:
        return RoutingOutcome(None, (ProblemNotice(Problem.NO_ACTIVE_SERVICE, npwz),))
    usable_duty = duty_slots if duty_doctor_id is not None else ()
    candidates = route_candidates(target, target_slots, location_id, usable_duty, taken)
    choice = candidates[0] if candidates else None
    problems = routing_problems(npwz=npwz, target=target, booked=choice.kind if choice else None)
    return RoutingOutcome(choice, problems)

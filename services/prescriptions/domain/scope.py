"""Drug scope: which ordered drugs a request may contain.

The scope is the facility's portal setting: portal requests under ``patient_account`` accept only
drugs on the patient's account (drugs previously prescribed to the patient by the facility; the
caller supplies that list). IKP requests are taken as P1 delivers them: P1 already limits them to
the patient's e-prescription history, whoever prescribed the drug (a specialist, privately - the
KS-SOMED guide: "Zamówienie może również obejmować leki wystawione ... u specjalisty lub
prywatnie"), which this facility's account does not know.

Names are compared normalised: Unicode NFKC, case-folded, runs of whitespace collapsed to one
space, ends stripped. Diacritics are NOT removed ("ł" has no decomposition anyway, and
stripping would merge names that differ in Polish).
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .grouping import RequestItem
from .routing import Problem, ProblemNotice


class RequestSource(enum.StrEnum):
    PORTAL = "portal"
    IKP = "ikp"


class DrugScope(enum.StrEnum):
    ANY = "any"
    PATIENT_ACCOUNT = "patient_account"


_SPACES = re.compile(r"\s+")

REFUSAL_EN = "{drug} was not previously prescribed to the patient by this facility, so it cannot be ordered here."
REFUSAL_PL = "Lek {drug} nie był wcześniej przepisany pacjentowi w tej placówce (brak na koncie pacjenta)."


def normalise_drug_name(name: str) -> str:
    return _SPACES.sub(" ", unicodedata.normalize("NFKC", name).casefold()).strip()


@dataclass(frozen=True)
class RefusedItem:
    item: RequestItem
    reason: str
    reason_pl: str


@dataclass(frozen=True)
class ScopeCheck:
    accepted: tuple[RequestItem, ...]
    refused: tuple[RefusedItem, ...]


def restricted_to_account(source: RequestSource, scope: DrugScope) -> bool:
    return source is RequestSource.PORTAL and scope is DrugScope.PATIENT_ACCOUNT


def check_drug_scope(
    items: Sequence[RequestItem], source: RequestSource, scope: DrugScope, account_drugs: Iterable[str]
) -> ScopeCheck:
    """Split ``items`` into accepted and refused (with a reason sentence), keeping their order."""
    if not restricted_to_account(source, scope):
        return ScopeCheck(tuple(items), ())
    known = {normalise_drug_name(d) for d in account_drugs}
    accepted: list[RequestItem] = []
    refused: list[RefusedItem] = []
    for item in items:
        if normalise_drug_name(item.drug) in known:
            accepted.append(item)
        else:
            name = item.drug.strip()
            refused.append(RefusedItem(item, REFUSAL_EN.format(drug=name), REFUSAL_PL.format(drug=name)))
    return ScopeCheck(tuple(accepted), tuple(refused))


def refusal_notice(npwz: str, reasons_pl: Sequence[str]) -> ProblemNotice:
    """The facility's notice of a refused request or items: one notice naming every reason."""
    if not reasons_pl:
        raise ValueError("a refusal notice needs at least one reason")
    return ProblemNotice(Problem.REQUEST_REFUSED, npwz, details=tuple(reasons_pl))

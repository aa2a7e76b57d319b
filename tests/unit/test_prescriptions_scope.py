"""Drug scope: the portal under patient_account takes only drugs on the patient's account; IKP takes what P1 sends."""

from __future__ import annotations

import pytest

from services.prescriptions.domain import (
    DrugScope,
    Problem,
    RequestItem,
    RequestSource,
    check_drug_scope,
    normalise_drug_name,
    refusal_notice,
)

ACCOUNT = ["Euthyrox N 50", "Metformax  500"]
ITEMS = (RequestItem("euthyrox n 50", 2, None), RequestItem("Xanax", 1, None), RequestItem(" METFORMAX 500 ", 1, "x"))


@pytest.mark.parametrize(
    ("source", "scope", "restricted"),
    [
        # P1 already limits IKP items to the patient's history, also drugs from a specialist or private
        # practice this facility's account never saw: the facility's scope is the portal's alone.
        (RequestSource.IKP, DrugScope.ANY, False),
        (RequestSource.IKP, DrugScope.PATIENT_ACCOUNT, False),
        (RequestSource.PORTAL, DrugScope.PATIENT_ACCOUNT, True),
        (RequestSource.PORTAL, DrugScope.ANY, False),
    ],
)
def test_who_is_restricted(source: RequestSource, scope: DrugScope, restricted: bool) -> None:
    result = check_drug_scope(ITEMS, source, scope, ACCOUNT)
    if restricted:
        assert [i.drug for i in result.accepted] == ["euthyrox n 50", " METFORMAX 500 "]
        assert [r.item.drug for r in result.refused] == ["Xanax"]
        assert "Xanax" in result.refused[0].reason and result.refused[0].reason.endswith(".")
        assert "Xanax" in result.refused[0].reason_pl
    else:
        assert result.accepted == ITEMS
        assert result.refused == ()


def test_empty_account_refuses_everything_under_restriction() -> None:
    result = check_drug_scope(ITEMS, RequestSource.PORTAL, DrugScope.PATIENT_ACCOUNT, [])
    assert result.accepted == ()
    assert len(result.refused) == 3


def test_an_ikp_item_never_on_the_account_is_accepted_whatever_the_scope() -> None:
    for scope in DrugScope:
        result = check_drug_scope(ITEMS, RequestSource.IKP, scope, [])
        assert (result.accepted, result.refused) == (ITEMS, ())


def test_a_refusal_notice_names_every_reason_and_needs_one() -> None:
    refused = check_drug_scope(ITEMS, RequestSource.PORTAL, DrugScope.PATIENT_ACCOUNT, []).refused
    notice = refusal_notice("5425740", [r.reason_pl for r in refused])
    assert (notice.problem, notice.npwz) == (Problem.REQUEST_REFUSED, "5425740")
    assert len(notice.details) == 3 and "Xanax" in notice.details[1]
    assert notice.text.problem_pl.startswith("Odrzucono zamówienie")
    with pytest.raises(ValueError, match="at least one reason"):
        refusal_notice("5425740", [])


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("Euthyrox N 50", "euthyrox  n\t50", True),
        ("ＩＢＵＭ", "ibum", True),  # full-width letters (NFKC)
        ("STRASSE", "straße", True),  # casefold
        ("Łaz", "Laz", False),  # diacritics are kept
        ("Euthyrox N 50", "Euthyrox N 75", False),
    ],
)
def test_name_normalisation(a: str, b: str, same: bool) -> None:
    assert (normalise_drug_name(a) == normalise_drug_name(b)) is same

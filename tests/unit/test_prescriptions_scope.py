"""Drug scope: IKP always, portal under patient_account, only drugs on the patient's account."""

from __future__ import annotations

import pytest

from services.prescriptions.domain import (
    DrugScope,
    RequestItem,
    RequestSource,
    check_drug_scope,
    normalise_drug_name,
)

ACCOUNT = ["Euthyrox N 50", "Metformax  500"]
ITEMS = (RequestItem("euthyrox n 50", 2, None), RequestItem("Xanax", 1, None), RequestItem(" METFORMAX 500 ", 1, "x"))


@pytest.mark.parametrize(
    ("source", "scope", "restricted"),
    [
        (RequestSource.IKP, DrugScope.ANY, True),
        (RequestSource.IKP, DrugScope.PATIENT_ACCOUNT, True),
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
    result = check_drug_scope(ITEMS, RequestSource.IKP, DrugScope.ANY, [])
    assert result.accepted == ()
    assert len(result.refused) == 3


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

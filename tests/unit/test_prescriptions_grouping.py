"""IKP grouping by the pause between items, and comment folding."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.prescriptions.domain import (
    DEFAULT_GAP,
    IkpItem,
    PrescriptionError,
    fold_comments,
    group_ikp_items,
)

T0 = dt.datetime(2026, 3, 2, 9, 0, tzinfo=dt.UTC)


def item(seconds: float, drug: str = "Euthyrox", comment: str | None = None, patient: str = "p1") -> IkpItem:
    return IkpItem(patient, drug, 1, T0 + dt.timedelta(seconds=seconds), comment)


def sizes(items: list[IkpItem], gap: dt.timedelta = DEFAULT_GAP) -> list[int]:
    return [len(r.items) for r in group_ikp_items(items, gap)]


def test_default_gap_is_120_seconds() -> None:
    assert dt.timedelta(seconds=120) == DEFAULT_GAP


def test_gap_exactly_120_s_joins_the_request() -> None:
    assert sizes([item(0, "A"), item(120, "B")]) == [2]


def test_gap_over_120_s_by_a_millisecond_starts_a_new_request() -> None:
    assert sizes([item(0, "A"), item(120.001, "B")]) == [1, 1]


def test_gap_over_120_s_by_a_microsecond_starts_a_new_request() -> None:
    assert sizes([item(0, "A"), item(120.000001, "B")]) == [1, 1]


def test_gaps_chain_from_item_to_item() -> None:
    assert sizes([item(0, "A"), item(100, "B"), item(200, "C"), item(300, "D")]) == [4]


def test_items_spread_over_time_are_one_request_each() -> None:
    groups = group_ikp_items([item(0, "A"), item(300, "B"), item(3600 * 5, "C")])
    assert [[i.drug for i in g.items] for g in groups] == [["A"], ["B"], ["C"]]


def test_items_are_ordered_by_submission_not_input() -> None:
    groups = group_ikp_items([item(60, "B"), item(0, "A"), item(500, "C")])
    assert [[i.drug for i in g.items] for g in groups] == [["A", "B"], ["C"]]
    assert groups[0].first_submitted_at == T0
    assert groups[0].last_submitted_at == T0 + dt.timedelta(seconds=60)


def test_configurable_gap() -> None:
    items = [item(0, "A"), item(30, "B")]
    assert sizes(items, dt.timedelta(seconds=30)) == [2]
    assert sizes(items, dt.timedelta(seconds=29)) == [1, 1]
    assert sizes([item(0, "A"), item(0, "B")], dt.timedelta(0)) == [2]


def test_negative_gap_refused() -> None:
    with pytest.raises(PrescriptionError) as error:
        group_ikp_items([], dt.timedelta(seconds=-1))
    assert error.value.field == "gap"


def test_patients_are_never_mixed() -> None:
    groups = group_ikp_items([item(0, "A", patient="p1"), item(1, "B", patient="p2"), item(2, "C", patient="p1")])
    assert [(g.patient_id, [i.drug for i in g.items]) for g in groups] == [("p1", ["A", "C"]), ("p2", ["B"])]


def test_time_zones_compare_as_instants() -> None:
    warsaw = dt.timezone(dt.timedelta(hours=1))
    a = IkpItem("p1", "A", 1, T0)
    b = IkpItem("p1", "B", 1, (T0 + dt.timedelta(seconds=120)).astimezone(warsaw))
    assert sizes([a, b]) == [2]


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("submitted_at", {"submitted_at": dt.datetime(2026, 3, 2, 9, 0)}),  # naive on purpose
        ("packages", {"packages": 0}),
        ("drug", {"drug": "  "}),
        ("patient_id", {"patient_id": ""}),
    ],
)
def test_bad_items_name_the_field(field: str, kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {"patient_id": "p1", "drug": "A", "packages": 1, "submitted_at": T0}
    base.update(kwargs)
    with pytest.raises(PrescriptionError) as error:
        IkpItem(**base)  # type: ignore[arg-type]
    assert error.value.field == field


def test_identical_comments_fold_into_the_global_comment() -> None:
    (request,) = group_ikp_items([item(0, "A", "proszę o 3 op."), item(10, "B", "proszę o 3 op.")])
    assert request.comment == "proszę o 3 op."
    assert [i.comment for i in request.items] == [None, None]


def test_different_comments_stay_on_each_item() -> None:
    (request,) = group_ikp_items([item(0, "A", "rano"), item(10, "B", "wieczorem")])
    assert request.comment is None
    assert [i.comment for i in request.items] == ["rano", "wieczorem"]


def test_some_items_without_comment_keep_per_item_comments() -> None:
    (request,) = group_ikp_items([item(0, "A", "pilne"), item(10, "B", None), item(20, "C", "  ")])
    assert request.comment is None
    assert [i.comment for i in request.items] == ["pilne", None, None]


def test_no_comments_at_all_means_no_comment() -> None:
    (request,) = group_ikp_items([item(0, "A", None), item(10, "B", ""), item(20, "C", "   ")])
    assert request.comment is None
    assert [i.comment for i in request.items] == [None, None, None]


def test_single_item_comment_becomes_global() -> None:
    (request,) = group_ikp_items([item(0, "A", " pilne ")])
    assert request.comment == "pilne"
    assert request.items[0].comment is None


def test_fold_comments_compares_after_trimming_but_case_sensitively() -> None:
    assert fold_comments(["x ", " x"]) == ("x", (None, None))
    assert fold_comments(["x", "X"]) == (None, ("x", "X"))
    assert fold_comments([]) == (None, ())


@given(st.lists(st.integers(min_value=0, max_value=600), min_size=1, max_size=15))
def test_grouping_keeps_every_item_and_respects_the_gap(offsets: list[int]) -> None:
    items = [item(s, f"D{n}") for n, s in enumerate(offsets)]
    groups = group_ikp_items(items)
    assert sum(len(g.items) for g in groups) == len(items)
    for g in groups:
        assert g.first_submitted_at <= g.last_submitted_at
    for earlier, later in itertools.pairwise(groups):
        assert later.first_submitted_at - earlier.last_submitted_at > DEFAULT_GAP


@given(st.lists(st.one_of(st.none(), st.sampled_from(["", " ", "a", "b", " a"])), min_size=1, max_size=6))
def test_folding_never_loses_a_comment(comments: list[str | None]) -> None:
    global_comment, per_item = fold_comments(comments)
    stripped = [(c or "").strip() or None for c in comments]
    if global_comment is not None or all(c is None for c in per_item):
        assert all(c is None for c in per_item)
        assert set(stripped) == {global_comment}
    else:
        assert list(per_item) == stripped

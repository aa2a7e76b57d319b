"""The access-code limit's rule (services/pharmacy/code_limit.py) at its boundaries."""

from __future__ import annotations

import datetime as dt

import pytest

from services.pharmacy.code_limit import Limit, Scope, digest_key, pesel_digest, retry_after

NOW = dt.datetime(2026, 12, 8, 9, 0, tzinfo=dt.UTC)
FIVE_IN_TEN_MINUTES = Limit(Scope.pharmacy, 5, dt.timedelta(minutes=10))


def _ago(*seconds: int) -> list[dt.datetime]:
    return [NOW - dt.timedelta(seconds=s) for s in seconds]


def test_the_fifth_attempt_in_the_window_goes_on_and_the_sixth_waits() -> None:
    assert retry_after(FIVE_IN_TEN_MINUTES, 5, _ago(10, 20, 30, 40), NOW) is None
    assert retry_after(FIVE_IN_TEN_MINUTES, 6, _ago(10, 20, 30, 40, 50), NOW) is not None


def test_the_wait_ends_when_the_limit_th_newest_other_attempt_leaves_the_window() -> None:
    # Others 10..50 s ago: one more fits when the one 50 s ago is 600 s old, in 550 s.
    assert retry_after(FIVE_IN_TEN_MINUTES, 6, _ago(10, 20, 30, 40, 50), NOW) == 550
    # Seven others (a burst): the 5th newest (50 s ago) decides, not the oldest.
    assert retry_after(FIVE_IN_TEN_MINUTES, 8, _ago(10, 20, 30, 40, 50, 60, 70), NOW) == 550


def test_the_wait_is_whole_seconds_rounded_up_and_never_zero() -> None:
    almost_gone = [NOW - dt.timedelta(seconds=599, microseconds=500_000)] * 5
    assert retry_after(FIVE_IN_TEN_MINUTES, 6, almost_gone, NOW) == 1
    fraction_left = [NOW - dt.timedelta(seconds=100, microseconds=500_000)] * 5
    assert retry_after(FIVE_IN_TEN_MINUTES, 6, fraction_left, NOW) == 500


def test_a_limit_of_one() -> None:
    one = Limit(Scope.patient, 1, dt.timedelta(hours=1))
    assert retry_after(one, 1, [], NOW) is None
    assert retry_after(one, 2, _ago(60), NOW) == 3540


@pytest.mark.parametrize(
    ("in_window", "others"),
    [(0, []), (6, _ago(10, 20, 30, 40))],  # nothing counted; too few others to say when
)
def test_impossible_counts_are_refused(in_window: int, others: list[dt.datetime]) -> None:
    with pytest.raises(ValueError, match="attempt"):
        retry_after(FIVE_IN_TEN_MINUTES, in_window, others, NOW)


@pytest.mark.parametrize(("allowed", "window"), [(0, dt.timedelta(minutes=1)), (5, dt.timedelta(0))])
def test_a_limit_allows_something(allowed: int, window: dt.timedelta) -> None:
    with pytest.raises(ValueError, match="at least one"):
        Limit(Scope.pharmacy, allowed, window)


def test_a_pesel_is_kept_as_a_keyed_digest() -> None:
    key = digest_key("a-secret-of-the-service-of-32-characters")
    digest = pesel_digest(key, "44051401359")
    assert "44051401359" not in digest and len(digest) == 64
    assert digest == pesel_digest(key, "44051401359")
    assert digest != pesel_digest(key, "02070803628")
    assert digest != pesel_digest(digest_key("another-secret-of-32-characters-xx"), "44051401359")

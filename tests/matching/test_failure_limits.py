"""FailureTracker, pure: consecutive failures per key, lock-out and the back-off left."""
from __future__ import annotations

import pytest

from appliance.matching import BACKOFF_S, MAX_CONSECUTIVE_FAILURES, FailureTracker


def fail(tracker: FailureTracker, key: str, times: int, now: float) -> None:
    for _ in range(times):
        tracker.record(key, False, now)


def test_the_defaults_are_five_failures_and_thirty_seconds():
    assert (MAX_CONSECUTIVE_FAILURES, BACKOFF_S) == (5, 30.0)
    tracker = FailureTracker()
    fail(tracker, "device:d", MAX_CONSECUTIVE_FAILURES - 1, 100.0)
    assert tracker.retry_after("device:d", 100.0) == 0.0
    tracker.record("device:d", False, 100.0)
    assert tracker.retry_after("device:d", 100.0) == BACKOFF_S


def test_retry_after_counts_down_to_zero():
    tracker = FailureTracker(limit=2, backoff_s=10.0)
    fail(tracker, "k", 2, 1000.0)
    assert tracker.retry_after("k", 1000.0) == 10.0
    assert tracker.retry_after("k", 1004.5) == pytest.approx(5.5)
    assert tracker.retry_after("k", 1010.0) == 0.0
    assert tracker.retry_after("k", 2000.0) == 0.0


def test_after_the_back_off_each_further_failure_locks_again():
    """Past the limit, the face is not tried again freely: every failure is a new back-off,
    until a success (the non-face alternative) or an operator clears the key."""
    tracker = FailureTracker(limit=3, backoff_s=30.0)
    fail(tracker, "k", 3, 0.0)
    assert tracker.retry_after("k", 31.0) == 0.0
    tracker.record("k", False, 31.0)
    assert tracker.retry_after("k", 31.0) == 30.0


def test_a_success_or_an_operator_clears_the_key():
    tracker = FailureTracker(limit=2)
    fail(tracker, "a", 2, 0.0)
    fail(tracker, "b", 2, 0.0)
    tracker.record("a", True, 1.0)
    tracker.clear("b")
    assert tracker.retry_after("a", 1.0) == 0.0 and tracker.retry_after("b", 1.0) == 0.0
    fail(tracker, "a", 1, 2.0)  # counting starts over
    assert tracker.retry_after("a", 2.0) == 0.0


def test_a_success_in_between_resets_the_count():
    tracker = FailureTracker(limit=3)
    fail(tracker, "k", 2, 0.0)
    tracker.record("k", True, 0.0)
    fail(tracker, "k", 2, 0.0)
    assert tracker.retry_after("k", 0.0) == 0.0


def test_keys_are_independent():
    tracker = FailureTracker(limit=1)
    tracker.record("device:a", False, 0.0)
    assert tracker.retry_after("device:a", 0.0) > 0 and tracker.retry_after("device:b", 0.0) == 0.0

"""Anti-passback presence: entry, exit, timed reset."""
from __future__ import annotations

from appliance.access.passback import MemoryPresence, PassbackTracker


def test_inside_after_entry_until_exit_or_reset():
    tracker = PassbackTracker(MemoryPresence())
    assert not tracker.inside("hall", "s1", 100.0, 60.0)
    tracker.record("hall", "s1", True, 100.0)
    assert tracker.inside("hall", "s1", 120.0, 60.0)
    assert not tracker.inside("hall", "s1", 160.0, 60.0)  # reset after 60 s
    assert tracker.inside("hall", "s1", 10_000.0, 0.0)  # 0: never reset
    assert not tracker.inside("garage", "s1", 120.0, 60.0)  # per area
    tracker.record("hall", "s1", False, 130.0)
    assert not tracker.inside("hall", "s1", 131.0, 60.0)


def test_the_pass_that_entered_asked_again_is_not_a_second_entry():
    tracker = PassbackTracker(MemoryPresence())
    tracker.record("hall", "s1", True, 100.0, "req-1")
    assert not tracker.inside("hall", "s1", 105.0, 0.0, "req-1")  # the same pass retried
    assert tracker.inside("hall", "s1", 105.0, 0.0, "req-2")  # another pass: a second entry
    assert tracker.inside("hall", "s1", 105.0, 0.0)  # a pass without an id is never "the same"
    tracker.record("hall", "s1", True, 110.0)
    assert tracker.inside("hall", "s1", 111.0, 0.0, "")


def test_a_pass_decided_elsewhere_is_taken_only_when_newer():
    tracker = PassbackTracker(MemoryPresence())
    assert tracker.merge("hall", "s1", True, 100.0, "door-pass-1")  # nothing held: taken
    assert tracker.inside("hall", "s1", 101.0, 0.0)
    assert tracker.merge("hall", "s1", False, 150.0, "door-pass-2")  # left later: taken
    assert not tracker.inside("hall", "s1", 151.0, 0.0)
    assert not tracker.merge("hall", "s1", True, 120.0, "door-pass-late")  # delivered late, older: ignored
    assert not tracker.merge("hall", "s1", True, 150.0, "door-pass-same-time")  # not newer: the book wins
    assert not tracker.inside("hall", "s1", 152.0, 0.0)
    assert tracker.book.presence("hall", "s1") == (False, 150.0, "door-pass-2")

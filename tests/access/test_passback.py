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

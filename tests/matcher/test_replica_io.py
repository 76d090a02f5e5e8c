"""``StoreTrouble``: a store the replica cannot write is counted per kind and logged at once,
then once a minute while it lasts - not a traceback per message, not a strike against a door."""
from __future__ import annotations

import logging
from collections import Counter

from appliance.errors import ApplianceError, ErrorCode, is_unwritable
from appliance.matcher.replica_io import LEFT_UNANSWERED, STORE_TROUBLE_LOG_EVERY_S, StoreTrouble

FULL = ApplianceError(ErrorCode.STORE_UNWRITABLE, "sync.db: database or disk is full")


def test_only_an_unwritable_store_is_store_trouble():
    assert is_unwritable(FULL)
    assert not is_unwritable(ApplianceError(ErrorCode.MESSAGE_REJECTED, "bad field"))
    assert not is_unwritable(ValueError("no"))


def test_counted_each_time_logged_once_a_minute_with_the_count_since(caplog):
    now = [100.0]
    stats: Counter[str] = Counter()
    trouble = StoreTrouble("matcher-1", stats, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="appliance.matcher.replica_io"):
        trouble.note("door-a", "req", FULL, LEFT_UNANSWERED)
        for _ in range(5):
            now[0] += 1.0
            trouble.note("door-b", "req", FULL, LEFT_UNANSWERED)
        trouble.note("door-c", "event", FULL, "not acknowledged", count=40)
        assert len(caplog.records) == 1  # within the minute: counted, not logged
        now[0] += STORE_TROUBLE_LOG_EVERY_S
        trouble.note("door-c", "req", FULL, LEFT_UNANSWERED)
    assert stats == Counter({"unwritable:req": 7, "unwritable:event": 40})
    first, second = (record.getMessage() for record in caplog.records)
    assert first == ("matcher-1: 1 message(s) not recorded (the last a req message from door-a, left unanswered: "
                     "the doors decide from their caches meanwhile): E213 store cannot be written now (a full disk "
                     "or an I/O error): sync.db: database or disk is full; free disk space")
    assert second.startswith("matcher-1: 46 message(s) not recorded (the last a req message from door-c")

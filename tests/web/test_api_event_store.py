"""The door log's queries in the sync store (the SQL behind /api/events and /metrics), and
its migration: events recorded before the outcome column existed get it filled in."""
from __future__ import annotations

import json

from appliance.matcher.sync_store import EventQuery, EventRecord, SyncStore, event_outcome

T0 = 1_790_000_000.0


class SchemaOneStore(SyncStore):
    """The sync store as released before the door log was queryable (its first migration)."""

    MIGRATIONS = SyncStore.MIGRATIONS[:1]


def test_outcome_rule():
    assert event_outcome(EventRecord("a", "d", "event", "pass", T0, {"outcome": "attack"})) == "attack"
    assert event_outcome(EventRecord("b", "d", "event", "local_decision", T0, {"accepted": True})) == "accepted"
    assert event_outcome(EventRecord("c", "d", "event", "local_decision", T0, {"accepted": False})) == "rejected"
    assert event_outcome(EventRecord("e", "d", "alarm", "decision_unavailable", T0, {"reason": "x"})) == ""


def test_events_recorded_before_the_migration_get_their_outcome(tmp_path, keys):
    path = tmp_path / "sync.db"
    old = SchemaOneStore.open(path, keys)
    rows = [("p1", "door-1", "event", "pass", T0, {"outcome": "accepted"}),
            ("l1", "door-1", "event", "local_decision", T0 + 1, {"accepted": False}),
            ("a1", "door-2", "alarm", "decision_unavailable", T0 + 2, {"reason": "unavailable"})]
    with old.transaction():
        for event_id, device, kind_type, kind, at, details in rows:  # what version 1 wrote
            old.execute("INSERT INTO events (event_id, device_id, type, kind, at, received_at, details) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)",
                        (event_id, device, kind_type, kind, at, at, json.dumps(details)))
    old.close()
    store = SyncStore.open(path, keys)
    try:
        assert store.schema_version == len(SyncStore.MIGRATIONS)
        found = {e.event_id: e.outcome for e in store.find_events(EventQuery())}
        assert found == {"p1": "accepted", "l1": "rejected", "a1": ""}
        assert store.outcome_counts() == {("event", "pass", "accepted"): 1, ("event", "local_decision", "rejected"): 1,
                                          ("alarm", "decision_unavailable", ""): 1}
    finally:
        store.close()


def test_queries_page_filter_count_and_resume(tmp_path, keys):
    store = SyncStore.open(tmp_path / "sync.db", keys)
    try:
        batch = [EventRecord(f"e{i}", f"door-{i % 2}", "event", "pass", T0 + i,
                             {"outcome": "accepted" if i % 3 else "rejected"}) for i in range(10)]
        assert store.record_events(batch, T0 + 100) == (10, 0)
        assert store.record_events(batch[:2], T0 + 200) == (0, 2)  # exactly once
        assert store.count_events(EventQuery()) == 10 and store.last_seq() == 10
        assert store.count_events(EventQuery(device="door-0", outcome="rejected")) == 2  # e0, e6
        newest = store.find_events(EventQuery(limit=3))
        assert [e.event_id for e in newest] == ["e9", "e8", "e7"]
        resumed = store.find_events(EventQuery(after_seq=8, order="asc"))
        assert [e.event_id for e in resumed] == ["e8", "e9"]
        window = store.find_events(EventQuery(since=T0 + 2, until=T0 + 4, order="asc"))
        assert [e.event_id for e in window] == ["e2", "e3"]
        contacts = store.device_contacts()
        assert contacts["door-0"].last_event_at == T0 + 100 and contacts["door-0"].revision == 0
        store.record_ack("door-1", 7, [], T0 + 300)
        assert store.device_contacts()["door-1"].revision == 7
    finally:
        store.close()

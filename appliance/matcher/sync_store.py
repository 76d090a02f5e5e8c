"""The matcher's sync store, one SQLCipher file shared by the replicas: what each device
holds (its acknowledged revision), deletion confirmations, the events received from device
outboxes (the one queryable door log of the site: REST API, console, metrics), who announced
which revision, the door groups of each subject, and the site's own state (the matching-mode
decision, the last retention run, the filing alarm level: ``site_state``, small JSON values
every replica and the admin commands read)."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from appliance.matcher.access_store import (
    ACCESS_GENERATION_MIGRATION, ACCESS_MIGRATION, PRESENCE_PASS_MIGRATION, AccessTables,
)
from appliance.security.keys import SYNC_DB
from appliance.stores.base import CipherStore
from appliance.stores.protected import ProtectedData

SYNC_FILE = "sync.db"
MAX_EVENT_PAGE = 1000  # most events one query returns; the API pages through more
ACCEPTED, REJECTED = "accepted", "rejected"


@dataclass(frozen=True)
class EventRecord:
    """One event or alarm from a device outbox, as recorded (exactly once, by its id)."""

    event_id: str
    device_id: str
    type: str  # topics.EVENT or topics.ALARM
    kind: str  # "pass", "local_decision", "decision_unavailable", ...
    at: float
    details: dict[str, Any] = field(default_factory=dict)
    signature: str = ""  # the device's own signature over the event (security.device_reports)


def event_outcome(event: EventRecord) -> str:
    """What a door decided, one word for every kind: a pass says it (``details.outcome``), a
    local decision says accepted or not; an alarm or another event has none (empty). Stored
    in its own column so the door log filters on it with an index, not by parsing JSON."""
    outcome = event.details.get("outcome")
    if isinstance(outcome, str):
        return outcome
    accepted = event.details.get("accepted")
    return (ACCEPTED if accepted else REJECTED) if isinstance(accepted, bool) else ""


@dataclass(frozen=True)
class EventQuery:
    """A filter over the door log; every field is optional (None: any). Times are Unix
    seconds of the event at the door (``at``), ``until`` exclusive."""

    device: str | None = None
    since: float | None = None
    until: float | None = None
    outcome: str | None = None
    kind: str | None = None
    type: str | None = None
    after_seq: int = 0  # only events recorded after this one (streams resume from here)
    offset: int = 0
    limit: int = 100
    order: Literal["asc", "desc"] = "desc"  # by recording order: newest first for a listing

    def where(self) -> tuple[str, list[Any]]:
        clauses, params = ["seq > ?"], [self.after_seq]
        for column, value in (("device_id = ?", self.device), ("at >= ?", self.since), ("at < ?", self.until),
                              ("outcome = ?", self.outcome), ("kind = ?", self.kind), ("type = ?", self.type)):
            if value is not None:
                clauses.append(column)
                params.append(value)
        return " AND ".join(clauses), params


@dataclass(frozen=True)
class StoredEvent:
    """An event as the door log holds it: its recording order (``seq``), and when it came."""

    seq: int
    event_id: str
    device_id: str
    type: str
    kind: str
    outcome: str
    at: float
    received_at: float
    details: dict[str, Any]


@dataclass(frozen=True)
class DeviceContact:
    """What the store knows of one device: the revision it holds and when it said so, and
    when its last event was recorded (0: never)."""

    revision: int
    acked_at: float
    last_event_at: float


class SyncStore(AccessTables, CipherStore):
    KEY_NAME = SYNC_DB
    MIGRATIONS = (
        """
        CREATE TABLE devices (device_id TEXT PRIMARY KEY, revision INTEGER NOT NULL, acked_at REAL NOT NULL);
        CREATE TABLE confirmations (revision INTEGER NOT NULL, subject_id TEXT NOT NULL, device_id TEXT NOT NULL,
                                    confirmed_at REAL NOT NULL, PRIMARY KEY (revision, device_id));
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
                             device_id TEXT NOT NULL, type TEXT NOT NULL, kind TEXT NOT NULL, at REAL NOT NULL,
                             received_at REAL NOT NULL, details TEXT NOT NULL);
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE announced (revision INTEGER PRIMARY KEY, by TEXT NOT NULL, at REAL NOT NULL);
        CREATE TABLE subject_groups (subject_id TEXT NOT NULL, grp TEXT NOT NULL, PRIMARY KEY (subject_id, grp));
        """,
        # the door log is queried by door, time and outcome (REST API, console); the backfill
        # applies event_outcome's rule to the events recorded before
        """
        ALTER TABLE events ADD COLUMN outcome TEXT NOT NULL DEFAULT '';
        UPDATE events SET outcome = CASE
            WHEN json_type(details, '$.outcome') = 'text' THEN json_extract(details, '$.outcome')
            WHEN json_type(details, '$.accepted') = 'true' THEN 'accepted'
            WHEN json_type(details, '$.accepted') = 'false' THEN 'rejected'
            ELSE '' END;
        CREATE INDEX events_at ON events (at);
        CREATE INDEX events_device_at ON events (device_id, at);
        CREATE INDEX events_outcome_at ON events (outcome, at);
        """,
        # site-level decisions and records (appliance.matcher.site_policy, appliance.ops.retention,
        # appliance.ops.filing): one row per name, replaced as a whole
        """
        CREATE TABLE site_state (name TEXT PRIMARY KEY, value TEXT NOT NULL, at REAL NOT NULL);
        """,
        # a door decision owes an audit entry (matcher.events): when it was claimed (0: owes none);
        # the replica that recorded it writes the entry, a claim older than a lease is taken over
        """
        ALTER TABLE events ADD COLUMN audit_owed REAL NOT NULL DEFAULT 0;
        ALTER TABLE events ADD COLUMN signature TEXT NOT NULL DEFAULT '';
        CREATE INDEX events_audit_owed ON events (audit_owed) WHERE audit_owed > 0;
        CREATE INDEX events_subject ON events (json_extract(details, '$.subject'), at);
        """,
        ACCESS_MIGRATION,  # access groups, doors, schedules, validity, holidays, areas (matcher.access_store)
        PRESENCE_PASS_MIGRATION,  # the pass that set each presence (matcher.access_store)
        ACCESS_GENERATION_MIGRATION,  # a count raised by every change of the access rules (matcher.access_store)
    )

    def __init__(self, path, key) -> None:
        super().__init__(path, key)
        self._lock = threading.RLock()  # the sync and event handlers share this connection

    @contextmanager
    def transaction(self) -> Iterator:
        with self._lock, super().transaction() as conn:
            yield conn

    def execute(self, sql: str, params=()):
        with self._lock:
            return list(self.conn.execute(sql, params))

    # -- devices and deletion confirmations -----------------------------------------------
    def record_ack(self, device: str, revision: int, tombstones: list[tuple[str, int]], now: float) -> None:
        """The device holds ``revision``, committed; each (subject, revision) tombstone up to
        it is confirmed for the device at ``now``."""
        with self.transaction():
            self.execute("INSERT INTO devices VALUES (?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
                         "revision = excluded.revision, acked_at = excluded.acked_at", (device, revision, now))
            self.conn.executemany("INSERT OR IGNORE INTO confirmations VALUES (?, ?, ?, ?)",
                                  [(rev, subject, device, now) for subject, rev in tombstones])

    def device_revision(self, device: str) -> int:
        rows = self.execute("SELECT revision FROM devices WHERE device_id = ?", (device,))
        return int(rows[0][0]) if rows else 0

    def confirmations(self, revision: int) -> dict[str, float]:
        """device -> when it confirmed the tombstone of ``revision``."""
        return {d: t for d, t in self.execute(
            "SELECT device_id, confirmed_at FROM confirmations WHERE revision = ?", (revision,))}

    # -- events from device outboxes ------------------------------------------------------
    def record_events(self, batch: list[EventRecord], now: float) -> tuple[int, int]:
        """(new, duplicate) after recording a batch in one transaction, in arrival order."""
        new = len(self.record_new_events(batch, now))
        return new, len(batch) - new

    def record_new_events(self, batch: list[EventRecord], now: float,
                          owes_audit: Callable[[EventRecord], bool] = lambda event: False) -> list[EventRecord]:
        """Record a batch in one transaction, in arrival order; the events recorded now (each
        id once, whichever replica gets it first). Those ``owes_audit`` picks are claimed for
        the audit log at ``now`` until ``audits_written``."""
        new: list[EventRecord] = []
        with self.transaction():
            for event in batch:
                owed = now if owes_audit(event) else 0.0
                if self.conn.execute(
                        "INSERT OR IGNORE INTO events (event_id, device_id, type, kind, at, received_at, outcome, "
                        "details, audit_owed, signature) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (event.event_id, event.device_id, event.type, event.kind, event.at, now, event_outcome(event),
                         json.dumps(event.details, separators=(",", ":"), ensure_ascii=False), owed,
                         event.signature)).rowcount:
                    new.append(event)
            duplicates = len(batch) - len(new)
            if duplicates:
                self.execute("INSERT INTO counters VALUES ('duplicate_events', ?) ON CONFLICT (name) DO UPDATE "
                             "SET value = value + excluded.value", (duplicates,))
        return new

    def audits_written(self, event_ids: list[str]) -> None:
        """The audit entries of these events are committed: they owe nothing any more."""
        with self.transaction():
            self.conn.executemany("UPDATE events SET audit_owed = 0 WHERE event_id = ?", [(e,) for e in event_ids])

    def claim_owed_audits(self, now: float, lease_s: float, limit: int) -> list[EventRecord]:
        """Events whose audit entry was claimed before ``now - lease_s`` and never written (a
        replica died between recording and auditing), claimed again at ``now``: one taker."""
        with self.transaction():
            rows = self.execute(
                "UPDATE events SET audit_owed = ? WHERE seq IN (SELECT seq FROM events WHERE audit_owed > 0 "
                "AND audit_owed < ? ORDER BY seq LIMIT ?) RETURNING seq, event_id, device_id, type, kind, at, details, "
                "signature", (now, now - lease_s, limit))
        return [EventRecord(r[1], r[2], r[3], r[4], r[5], json.loads(r[6]), r[7]) for r in sorted(rows)]

    def event_ids(self, device: str | None = None) -> list[str]:
        """Recorded event and alarm ids, in the order they were recorded."""
        sql = "SELECT event_id FROM events" + (" WHERE device_id = ?" if device else "") + " ORDER BY seq"
        return [r[0] for r in self.execute(sql, (device,) if device else ())]

    def events(self, device: str | None = None) -> list[EventRecord]:
        sql = "SELECT event_id, device_id, type, kind, at, details FROM events"
        sql += (" WHERE device_id = ?" if device else "") + " ORDER BY seq"
        return [EventRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]))
                for r in self.execute(sql, (device,) if device else ())]

    def find_events(self, query: EventQuery) -> list[StoredEvent]:
        """One page of the door log matching ``query`` (at most ``MAX_EVENT_PAGE``)."""
        where, params = query.where()
        order = "DESC" if query.order == "desc" else "ASC"
        limit = max(0, min(query.limit, MAX_EVENT_PAGE))
        rows = self.execute(
            "SELECT seq, event_id, device_id, type, kind, outcome, at, received_at, details FROM events "
            f"WHERE {where} ORDER BY seq {order} LIMIT ? OFFSET ?", (*params, limit, max(0, query.offset)))
        return [StoredEvent(*r[:8], json.loads(r[8])) for r in rows]

    def subject_events(self, subject_id: str, since: float, limit: int = MAX_EVENT_PAGE) -> list[StoredEvent]:
        """Events about one person (their pseudonym in ``details.subject``) that happened at the
        door since ``since``, oldest first: what a subject access request lists."""
        rows = self.execute(
            "SELECT seq, event_id, device_id, type, kind, outcome, at, received_at, details FROM events "
            "WHERE json_extract(details, '$.subject') = ? AND at >= ? ORDER BY at, seq LIMIT ?",
            (subject_id, since, max(0, limit)))
        return [StoredEvent(*r[:8], json.loads(r[8])) for r in rows]

    def count_events(self, query: EventQuery) -> int:
        """How many events match ``query`` (paging and order ignored)."""
        where, params = query.where()
        return int(self.execute(f"SELECT count(*) FROM events WHERE {where}", params)[0][0])

    def last_seq(self) -> int:
        """The recording order of the newest event (0: none): a stream starts after it."""
        return int(self.execute("SELECT coalesce(max(seq), 0) FROM events")[0][0])

    def outcome_counts(self) -> dict[tuple[str, str, str], int]:
        """(type, kind, outcome) -> events recorded: the decisions every door made."""
        return {(r[0], r[1], r[2]): int(r[3]) for r in self.execute(
            "SELECT type, kind, outcome, count(*) FROM events GROUP BY type, kind, outcome")}

    def device_contacts(self) -> dict[str, DeviceContact]:
        """device -> what it holds and when it was last heard of (acknowledgement or event)."""
        contacts = {d: DeviceContact(int(rev), at, 0.0)
                    for d, rev, at in self.execute("SELECT device_id, revision, acked_at FROM devices")}
        for device, last in self.execute("SELECT device_id, max(received_at) FROM events GROUP BY device_id"):
            known = contacts.get(device, DeviceContact(0, 0.0, 0.0))
            contacts[device] = DeviceContact(known.revision, known.acked_at, float(last))
        return contacts

    def counter(self, name: str) -> int:
        rows = self.execute("SELECT value FROM counters WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def prune_events(self, before: float) -> int:
        """Remove events and alarms that happened at the door before ``before`` (retention)."""
        with self.transaction():
            return self.conn.execute("DELETE FROM events WHERE at < ?", (before,)).rowcount

    def oldest_event_at(self) -> float | None:
        """When the oldest recorded event happened (None: no events): what retention left."""
        rows = self.execute("SELECT min(at) FROM events")
        return None if rows[0][0] is None else float(rows[0][0])

    # -- site state -----------------------------------------------------------------------
    def site_value(self, name: str) -> tuple[dict[str, Any], float] | None:
        """The value recorded under ``name`` and when, or None."""
        rows = self.execute("SELECT value, at FROM site_state WHERE name = ?", (name,))
        return (json.loads(rows[0][0]), float(rows[0][1])) if rows else None

    def put_site_value(self, name: str, value: dict[str, Any], at: float) -> None:
        with self.transaction():
            self.execute("INSERT INTO site_state VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                         "value = excluded.value, at = excluded.at",
                         (name, json.dumps(value, separators=(",", ":"), ensure_ascii=False), at))

    def delete_site_value(self, name: str) -> bool:
        with self.transaction():
            return self.conn.execute("DELETE FROM site_state WHERE name = ?", (name,)).rowcount > 0

    # -- replicas -------------------------------------------------------------------------
    def claim_announcements(self, revisions: list[int], by: str) -> set[int]:
        """The revisions this replica is first to announce (one transaction)."""
        claimed = set()
        with self.transaction():
            for revision in revisions:
                if self.conn.execute("INSERT OR IGNORE INTO announced VALUES (?, ?, ?)",
                                     (revision, by, time.time())).rowcount == 1:
                    claimed.add(revision)
        return claimed

    # -- door groups ----------------------------------------------------------------------
    def assign_groups(self, subject_id: str, groups: tuple[str, ...]) -> None:
        """Door groups whose devices may hold the subject (none: all). Takes effect for a
        device with the subject's next revision (re-enrollment) or the device's next snapshot."""
        with self.transaction():
            self.execute("DELETE FROM subject_groups WHERE subject_id = ?", (subject_id,))
            self.conn.executemany("INSERT INTO subject_groups VALUES (?, ?)", [(subject_id, g) for g in groups])

    def groups(self, subject_id: str) -> frozenset[str]:
        return frozenset(r[0] for r in self.execute("SELECT grp FROM subject_groups WHERE subject_id = ?",
                                                    (subject_id,)))


def open_sync_store(data: ProtectedData, keys) -> SyncStore:
    """The sync store beside the central stores of ``data``."""
    return SyncStore.open(Path(data.root) / SYNC_FILE, keys)

"""The matcher's sync store, one SQLCipher file shared by the replicas: what each device
holds (its acknowledged revision), deletion confirmations, the ids of events received from
device outboxes, who announced which revision, and the door groups of each subject."""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.security.keys import SYNC_DB
from appliance.stores.base import CipherStore
from appliance.stores.protected import ProtectedData

SYNC_FILE = "sync.db"


@dataclass(frozen=True)
class EventRecord:
    """One event or alarm from a device outbox, as recorded (exactly once, by its id)."""

    event_id: str
    device_id: str
    type: str  # topics.EVENT or topics.ALARM
    kind: str  # "pass", "local_decision", "decision_unavailable", ...
    at: float
    details: dict[str, Any] = field(default_factory=dict)


class SyncStore(CipherStore):
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
        new = 0
        with self.transaction():
            for event in batch:
                new += self.conn.execute(
                    "INSERT OR IGNORE INTO events (event_id, device_id, type, kind, at, received_at, details) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (event.event_id, event.device_id, event.type, event.kind, event.at, now,
                     json.dumps(event.details, separators=(",", ":"), ensure_ascii=False))).rowcount
            duplicates = len(batch) - new
            if duplicates:
                self.execute("INSERT INTO counters VALUES ('duplicate_events', ?) ON CONFLICT (name) DO UPDATE "
                             "SET value = value + excluded.value", (duplicates,))
        return new, duplicates

    def event_ids(self, device: str | None = None) -> list[str]:
        """Recorded event and alarm ids, in the order they were recorded."""
        sql = "SELECT event_id FROM events" + (" WHERE device_id = ?" if device else "") + " ORDER BY seq"
        return [r[0] for r in self.execute(sql, (device,) if device else ())]

    def events(self, device: str | None = None) -> list[EventRecord]:
        sql = "SELECT event_id, device_id, type, kind, at, details FROM events"
        sql += (" WHERE device_id = ?" if device else "") + " ORDER BY seq"
        return [EventRecord(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]))
                for r in self.execute(sql, (device,) if device else ())]

    def counter(self, name: str) -> int:
        rows = self.execute("SELECT value FROM counters WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

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

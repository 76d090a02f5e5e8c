"""Device-side stores: the template cache a door device may match against, and the outbox
of sealed events waiting for the transport.

The cache holds only the subset of templates assigned to the device, with the central
revision it is synced to; tombstones remove entries as they arrive. The outbox keeps events
(already sealed envelopes, so never plaintext) until the transport confirms delivery.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from appliance.security.datakeys import decode_vector, encode_vector
from appliance.security.keys import CACHE_DB, OUTBOX_DB
from appliance.stores.base import CipherStore
from appliance.vision.templates import Template


class DeviceCache(CipherStore):
    KEY_NAME = CACHE_DB
    MIGRATIONS = (
        """
        CREATE TABLE cached (
            subject_id TEXT NOT NULL, pack_id TEXT NOT NULL, pack_version TEXT NOT NULL,
            vector BLOB NOT NULL, revision INTEGER NOT NULL, PRIMARY KEY (subject_id, pack_id, pack_version));
        CREATE TABLE sync_state (id INTEGER PRIMARY KEY CHECK (id = 1), revision INTEGER NOT NULL);
        INSERT INTO sync_state VALUES (1, 0);
        """,
    )

    @property
    def revision(self) -> int:
        return int(self.execute("SELECT revision FROM sync_state WHERE id = 1").fetchone()[0])

    def apply(self, upserts: list[tuple[str, Template, int]], tombstones: list[tuple[str, int]],
              revision: int) -> None:
        """Apply one sync batch atomically: (subject, template, revision) upserts, then
        (subject, revision) tombstones, and record the revision reached."""
        with self.transaction():
            for subject_id, template, rev in upserts:
                self.execute("INSERT OR REPLACE INTO cached VALUES (?, ?, ?, ?, ?)",
                             (subject_id, template.pack_id, template.pack_version,
                              encode_vector(template.vector), rev))
            for subject_id, rev in tombstones:
                self.execute("DELETE FROM cached WHERE subject_id = ? AND revision < ?", (subject_id, rev))
            self.execute("UPDATE sync_state SET revision = max(revision, ?) WHERE id = 1", (revision,))
        if tombstones:
            self.checkpoint()

    def gallery(self, pack_id: str, pack_version: str) -> tuple[list[str], np.ndarray]:
        rows = self.execute("SELECT subject_id, vector FROM cached WHERE pack_id = ? AND pack_version = ? "
                            "ORDER BY subject_id", (pack_id, pack_version)).fetchall()
        vectors = np.stack([decode_vector(r[1]) for r in rows]) if rows else np.zeros((0, 0), np.float32)
        return [r[0] for r in rows], vectors

    def subject_ids(self) -> list[str]:
        return [r[0] for r in self.execute("SELECT DISTINCT subject_id FROM cached ORDER BY subject_id")]


@dataclass(frozen=True)
class OutboxEvent:
    id: int
    kind: str
    payload: bytes  # a sealed envelope
    created: float
    attempts: int


class Outbox(CipherStore):
    KEY_NAME = OUTBOX_DB
    MIGRATIONS = (
        """
        CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, payload BLOB NOT NULL,
            created REAL NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, sent_at REAL);
        CREATE INDEX events_pending ON events(sent_at, id);
        """,
    )

    def enqueue(self, kind: str, sealed: bytes) -> int:
        with self.transaction():
            return int(self.execute("INSERT INTO events (kind, payload, created) VALUES (?, ?, ?)",
                                    (kind, sealed, time.time())).lastrowid)

    def pending(self, limit: int = 100) -> list[OutboxEvent]:
        rows = self.execute("SELECT id, kind, payload, created, attempts FROM events WHERE sent_at IS NULL "
                            "ORDER BY id LIMIT ?", (limit,))
        return [OutboxEvent(*r) for r in rows]

    def mark_attempt(self, event_id: int) -> None:
        with self.transaction():
            self.execute("UPDATE events SET attempts = attempts + 1 WHERE id = ?", (event_id,))

    def mark_sent(self, event_ids: list[int]) -> None:
        with self.transaction():
            self.conn.executemany("UPDATE events SET sent_at = ? WHERE id = ?", [(time.time(), i) for i in event_ids])

    def prune(self, before: float) -> int:
        """Remove events older than ``before`` (retention), sent or not."""
        with self.transaction():
            return self.execute("DELETE FROM events WHERE created < ?", (before,)).rowcount

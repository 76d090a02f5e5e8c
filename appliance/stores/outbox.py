"""The device outbox: sealed events waiting for the transport, kept until delivery is confirmed.

Events are already sealed envelopes, so never plaintext; the queue is bounded and pruned by
retention (``ops.retention``). Split from ``stores.device`` (which re-exports it).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path

from appliance.security.keys import OUTBOX_DB, KeyProvider
from appliance.stores.base import CipherStore

# what SQLite keeps beside a store file: the write-ahead log, its index, a rollback journal
STORE_COMPANIONS = ("-wal", "-shm", "-journal")


def shred_store(path: Path, keys: KeyProvider, key_name: str) -> list[str]:
    """Crypto-shred a closed store: its key first (after that, no copy of the file - a WAL page,
    a disk image - can be opened), then the file and its companions. Idempotent, so a wipe
    cut by a power loss is finished by running it again. Returns the names of files deleted."""
    keys.destroy(key_name)
    removed = []
    for candidate in (Path(path), *(Path(f"{path}{suffix}") for suffix in STORE_COMPANIONS)):
        if candidate.exists():
            candidate.unlink()
            removed.append(candidate.name)
    return removed


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
        # offline operation: the message id the matcher acknowledges, and a bounded queue
        """
        ALTER TABLE events ADD COLUMN ref TEXT NOT NULL DEFAULT '';
        CREATE INDEX events_ref ON events(ref);
        CREATE TABLE queue_state (id INTEGER PRIMARY KEY CHECK (id = 1), pending INTEGER NOT NULL,
                                  spilled INTEGER NOT NULL);
        INSERT INTO queue_state SELECT 1, count(*), 0 FROM events WHERE sent_at IS NULL;
        """,
    )

    def __init__(self, path, key) -> None:
        super().__init__(path, key)
        self.lock = threading.RLock()  # the door enqueues while the pump drains

    def destroy(self, keys: KeyProvider) -> list[str]:
        """Remote wipe: the pending events name who passed the door; shredded like the cache."""
        with self.lock:
            self.close()
            return shred_store(self.path, keys, self.KEY_NAME)

    def put(self, kind: str, ref: str, sealed: bytes, max_events: int) -> int:
        """Queue one sealed message (``ref`` = its message id) in its own durable transaction.
        Beyond ``max_events`` pending, the oldest pending events are spilled (deleted and
        counted): the newest events are the ones an operator needs after a long outage."""
        with self.lock, self.transaction():
            row_id = int(self.execute("INSERT INTO events (kind, payload, created, ref) VALUES (?, ?, ?, ?)",
                                      (kind, sealed, time.time(), ref)).lastrowid)
            pending = int(self.execute("SELECT pending FROM queue_state WHERE id = 1").fetchone()[0]) + 1
            spill = max(0, pending - max_events)
            if spill:
                self.execute("DELETE FROM events WHERE id IN (SELECT id FROM events WHERE sent_at IS NULL "
                             "ORDER BY id LIMIT ?)", (spill,))
            self.execute("UPDATE queue_state SET pending = ?, spilled = spilled + ? WHERE id = 1",
                         (pending - spill, spill))
        return row_id

    def acknowledge(self, refs: list[str]) -> int:
        """Drop the events the matcher confirmed; returns how many were still queued."""
        if not refs:
            return 0
        with self.lock, self.transaction():
            removed = 0
            for start in range(0, len(refs), 500):
                chunk = refs[start:start + 500]
                removed += self.execute(f"DELETE FROM events WHERE sent_at IS NULL AND ref IN "
                                        f"({','.join('?' * len(chunk))})", chunk).rowcount
            self.execute("UPDATE queue_state SET pending = pending - ? WHERE id = 1", (removed,))
        return removed

    def next_after(self, after_id: int, limit: int) -> list[tuple[int, str, str, bytes]]:
        """(row id, kind, ref, sealed) of pending events after ``after_id``, oldest first."""
        with self.lock:
            return [tuple(r) for r in self.execute(
                "SELECT id, kind, ref, payload FROM events WHERE sent_at IS NULL AND id > ? ORDER BY id LIMIT ?",
                (after_id, limit))]

    def depth(self) -> int:
        with self.lock:
            return int(self.execute("SELECT pending FROM queue_state WHERE id = 1").fetchone()[0])

    def spilled(self) -> int:
        with self.lock:
            return int(self.execute("SELECT spilled FROM queue_state WHERE id = 1").fetchone()[0])

    def enqueue(self, kind: str, sealed: bytes) -> int:
        with self.transaction():
            row_id = int(self.execute("INSERT INTO events (kind, payload, created) VALUES (?, ?, ?)",
                                      (kind, sealed, time.time())).lastrowid)
            self.execute("UPDATE queue_state SET pending = pending + 1 WHERE id = 1")
            return row_id

    def pending(self, limit: int = 100) -> list[OutboxEvent]:
        rows = self.execute("SELECT id, kind, payload, created, attempts FROM events WHERE sent_at IS NULL "
                            "ORDER BY id LIMIT ?", (limit,))
        return [OutboxEvent(*r) for r in rows]

    def prune(self, before: float) -> int:
        """Remove events older than ``before`` (retention), sent or not."""
        with self.transaction():
            removed = self.execute("DELETE FROM events WHERE created < ?", (before,)).rowcount
            self._recount()
            return removed

    def _recount(self) -> None:
        self.execute("UPDATE queue_state SET pending = (SELECT count(*) FROM events WHERE sent_at IS NULL) "
                     "WHERE id = 1")

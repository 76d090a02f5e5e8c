"""Device-side stores: the template cache a door device may match against, and the outbox
of sealed events waiting for the transport.

The cache holds only the subset of templates assigned to the device, with the central
revision it is synced to; tombstones remove entries as they arrive. The outbox keeps events
(already sealed envelopes, so never plaintext) until the transport confirms delivery.
"""
from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.security.datakeys import decode_vector, encode_vector
from appliance.security.keys import CACHE_DB, OUTBOX_DB, KeyProvider
from appliance.stores.base import CipherStore
from appliance.vision.templates import Template

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
        # offline operation (docs/offline.md): masked names and claim hashes for local decisions,
        # when the cache was last confirmed current, and a snapshot staged page by page
        """
        ALTER TABLE cached ADD COLUMN display TEXT NOT NULL DEFAULT '';
        ALTER TABLE cached ADD COLUMN claim TEXT NOT NULL DEFAULT '';
        CREATE INDEX cached_claim ON cached(claim);
        ALTER TABLE sync_state ADD COLUMN confirmed_at REAL NOT NULL DEFAULT 0;
        CREATE TABLE staging (
            subject_id TEXT NOT NULL, pack_id TEXT NOT NULL, pack_version TEXT NOT NULL, vector BLOB NOT NULL,
            revision INTEGER NOT NULL, display TEXT NOT NULL, claim TEXT NOT NULL,
            PRIMARY KEY (subject_id, pack_id, pack_version));
        CREATE TABLE snapshot_state (id INTEGER PRIMARY KEY CHECK (id = 1), snapshot_id TEXT NOT NULL,
                                     revision INTEGER NOT NULL, cursor TEXT NOT NULL);
        INSERT INTO snapshot_state VALUES (1, '', 0, '');
        """,
    )

    def __init__(self, path, key) -> None:
        super().__init__(path, key)
        self.lock = threading.RLock()  # the sync worker writes while the door decides
        self.generation = 0  # bumped after every committed change (in-memory galleries reload)

    def destroy(self, keys: KeyProvider) -> list[str]:
        """Remote wipe (``edge.wipe``): close, then ``shred_store`` the cache and its key."""
        with self.lock:
            self.close()
            return shred_store(self.path, keys, self.KEY_NAME)

    @property
    def revision(self) -> int:
        return int(self.execute("SELECT revision FROM sync_state WHERE id = 1").fetchone()[0])

    def apply(self, upserts: list[tuple[str, Template, int]], tombstones: list[tuple[str, int]],
              revision: int) -> None:
        """Apply one sync batch atomically: (subject, template, revision) upserts, then
        (subject, revision) tombstones, and record the revision reached."""
        with self.transaction():
            for subject_id, template, rev in upserts:
                self.execute("INSERT OR REPLACE INTO cached (subject_id, pack_id, pack_version, vector, revision) "
                             "VALUES (?, ?, ?, ?, ?)",
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

    # -- offline operation: revisioned deltas, snapshots, digests ------------------------
    def apply_changes(self, base: int, revision: int, upserts: list["CacheEntry"],
                      tombstones: list[tuple[str, int]]) -> bool:
        """Apply one delta atomically on top of ``base``; False when already held (a repeat),
        SYNC_GAP when it does not follow the cached revision. An entry never replaces a
        newer one, and a tombstone removes only entries older than itself."""
        with self.lock, self.transaction():
            current = self.revision
            if revision <= current and (upserts or tombstones or revision < current):
                return False
            if base > current:
                raise ApplianceError(ErrorCode.SYNC_GAP, f"delta from {base}, cache at {current}")
            self._insert("cached", upserts, newer_only=True)
            self.conn.executemany("DELETE FROM cached WHERE subject_id = ? AND revision < ?", tombstones)
            self.execute("UPDATE sync_state SET revision = ? WHERE id = 1", (max(current, revision),))
        self.generation += 1
        if tombstones:
            self.checkpoint()  # no deleted template left in the WAL
        return True

    def stage_snapshot(self, snapshot_id: str, revision: int, after: str, cursor: str,
                       entries: list["CacheEntry"], complete: bool) -> bool:
        """Stage one snapshot page; the ``complete`` page swaps the staged set in, in the same
        transaction, and the cache then holds exactly the snapshot at ``revision``. A page
        that does not continue the staged snapshot is refused (False) and changes nothing."""
        with self.lock, self.transaction():
            staged_id, _, staged_cursor = self.execute(
                "SELECT snapshot_id, revision, cursor FROM snapshot_state WHERE id = 1").fetchone()
            if after == "":
                self.execute("DELETE FROM staging")
            elif (staged_id, staged_cursor) != (snapshot_id, after):
                return False
            self._insert("staging", entries, newer_only=False)
            self.execute("UPDATE snapshot_state SET snapshot_id = ?, revision = ?, cursor = ? WHERE id = 1",
                         (snapshot_id, revision, cursor))
            if complete:
                self.execute("DELETE FROM cached")
                self.execute("INSERT INTO cached (subject_id, pack_id, pack_version, vector, revision, display, claim) "
                             "SELECT subject_id, pack_id, pack_version, vector, revision, display, claim FROM staging")
                self.execute("DELETE FROM staging")
                self.execute("UPDATE snapshot_state SET snapshot_id = '', revision = 0, cursor = '' WHERE id = 1")
                self.execute("UPDATE sync_state SET revision = ? WHERE id = 1", (revision,))
        if complete:
            self.generation += 1
            self.checkpoint()
        return True

    def snapshot_progress(self) -> tuple[str, int, str]:
        """(snapshot id, its revision, last staged subject) of a snapshot being received."""
        with self.lock:
            row = self.execute("SELECT snapshot_id, revision, cursor FROM snapshot_state WHERE id = 1").fetchone()
        return str(row[0]), int(row[1]), str(row[2])

    def _insert(self, table: str, entries: list["CacheEntry"], newer_only: bool) -> None:
        conflict = (" ON CONFLICT (subject_id, pack_id, pack_version) DO UPDATE SET vector = excluded.vector, "
                    "revision = excluded.revision, display = excluded.display, claim = excluded.claim "
                    "WHERE excluded.revision > revision") if newer_only else ""
        verb = "INSERT" if newer_only else "INSERT OR REPLACE"
        self.conn.executemany(
            f"{verb} INTO {table} (subject_id, pack_id, pack_version, vector, revision, display, claim) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?){conflict}",
            [(e.subject_id, e.template.pack_id, e.template.pack_version, encode_vector(e.template.vector),
              e.revision, e.display, e.claim) for e in entries])

    def held(self) -> list[tuple[str, str, str, int]]:
        """(subject, pack, version, revision) of every cached template."""
        with self.lock:
            return [tuple(r) for r in self.execute("SELECT subject_id, pack_id, pack_version, revision FROM cached")]

    def digest(self) -> str:
        """sha256 over the sorted (subject, pack, version, revision) lines: what the matcher
        compares with the set it believes this device holds."""
        return cache_digest(self.held())

    def count(self) -> int:
        with self.lock:
            return int(self.execute("SELECT count(*) FROM cached").fetchone()[0])

    def confirm_current(self, now: float | None = None) -> None:
        """Record that the matcher confirmed this cache is at its head (caught up)."""
        with self.lock, self.transaction():
            self.execute("UPDATE sync_state SET confirmed_at = ? WHERE id = 1", (time.time() if now is None else now,))

    @property
    def confirmed_at(self) -> float:
        with self.lock:
            return float(self.execute("SELECT confirmed_at FROM sync_state WHERE id = 1").fetchone()[0])

    def local_view(self, pack_id: str,
                   pack_version: str) -> tuple[list[str], np.ndarray, dict[str, str], dict[str, str]]:
        """(subject ids, vectors, claim hash -> subject, subject -> masked name) for local matching."""
        with self.lock:
            rows = self.execute("SELECT subject_id, vector, claim, display FROM cached WHERE pack_id = ? "
                                "AND pack_version = ? ORDER BY subject_id", (pack_id, pack_version)).fetchall()
        vectors = np.stack([decode_vector(r[1]) for r in rows]) if rows else np.zeros((0, 0), np.float32)
        return ([r[0] for r in rows], vectors, {r[2]: r[0] for r in rows if r[2]}, {r[0]: r[3] for r in rows})


def cache_digest(rows) -> str:
    lines = sorted(f"{s}|{p}|{v}|{r}" for s, p, v, r in rows)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def claim_hash(claim: str) -> str:
    """What a device cache stores for a card/PIN credential: never the credential itself."""
    return hashlib.sha256(b"appliance/claim/v1|" + claim.encode("utf-8")).hexdigest() if claim else ""


@dataclass(frozen=True)
class CacheEntry:
    subject_id: str
    template: Template
    revision: int
    display: str = ""  # masked name
    claim: str = ""  # claim_hash of the subject's card, "" when none


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

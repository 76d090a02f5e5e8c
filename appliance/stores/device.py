"""Device-side stores: the template cache a door device may match against, and the outbox
of sealed events waiting for the transport.

The cache holds only the subset of templates assigned to the device, with the central
revision it is synced to; tombstones remove entries as they arrive. Beside a template an entry
carries the person's keyed card claim (``stores.claims``), PIN verifier and face refusal, so the
door decides card and card + PIN passes offline; an entry with an empty vector is a person with
no face template (they refused face recognition): a card holder, never in a gallery. The outbox
(``stores.outbox``) keeps sealed events until the transport confirms delivery.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.security.datakeys import decode_vector, encode_vector
from appliance.security.keys import CACHE_DB, KeyProvider
from appliance.stores.base import CipherStore
from appliance.stores.claims import CLAIM_KEY, claim_hash, held_claim_key, replace_claim_key
# their old home: callers import them from here
from appliance.stores.outbox import STORE_COMPANIONS, Outbox, OutboxEvent, shred_store  # noqa: F401
from appliance.vision.templates import Template

CACHE_COLUMNS = "subject_id, pack_id, pack_version, vector, revision, display, claim, access, pin, face_refused"


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
        # access rules (docs/access.md): each person's groups at this door and validity, and
        # the door's rules as the matcher last sent them ('{}': no rules, everyone may pass)
        """
        ALTER TABLE cached ADD COLUMN access TEXT NOT NULL DEFAULT '{}';
        ALTER TABLE staging ADD COLUMN access TEXT NOT NULL DEFAULT '{}';
        CREATE TABLE door_rules (id INTEGER PRIMARY KEY CHECK (id = 1), rules TEXT NOT NULL);
        INSERT INTO door_rules VALUES (1, '{}');
        CREATE TABLE presence (area TEXT NOT NULL, subject_id TEXT NOT NULL, inside INTEGER NOT NULL,
                               at REAL NOT NULL, PRIMARY KEY (area, subject_id));
        """,
        # offline card + PIN (docs/door-modes.md): the PIN verifier and face refusal; claims made
        # before the keyed hash go (the site's claim key, when it arrives, re-syncs the cache)
        """
        ALTER TABLE cached ADD COLUMN pin TEXT NOT NULL DEFAULT '';
        ALTER TABLE cached ADD COLUMN face_refused INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE staging ADD COLUMN pin TEXT NOT NULL DEFAULT '';
        ALTER TABLE staging ADD COLUMN face_refused INTEGER NOT NULL DEFAULT 0;
        UPDATE cached SET claim = '';
        """,
        # the pass (request id) that set each presence (appliance.access.passback)
        """
        ALTER TABLE presence ADD COLUMN pass_id TEXT NOT NULL DEFAULT '';
        """,
    )

    def __init__(self, path, key) -> None:
        super().__init__(path, key)
        self.lock = threading.RLock()  # the sync worker writes while the door decides
        self.generation = 0  # bumped after every committed change (in-memory galleries reload)
        self.keys: KeyProvider | None = None  # where the site's claim key is kept (``open``)

    @classmethod
    def open(cls, path: Path, keys: KeyProvider, **extra) -> DeviceCache:
        cache = super().open(path, keys, **extra)
        cache.keys = keys
        return cache

    def destroy(self, keys: KeyProvider) -> list[str]:
        """Remote wipe (``edge.wipe``): close, then ``shred_store`` the cache and its key, and
        destroy the site's claim key."""
        with self.lock:
            self.close()
            keys.destroy(CLAIM_KEY)
            return shred_store(self.path, keys, self.KEY_NAME)

    def claim_of(self, card: str) -> str:
        """The keyed claim of ``card`` as this cache stores it; "" without the site's key."""
        key = held_claim_key(self.keys)
        return claim_hash(card, key) if key else ""

    def adopt_claim_key(self, material: bytes) -> bool:
        """Keep the site's claim key from a sync answer. A new key (the first, or a rotation)
        makes every held claim meaningless: the cache empties to revision 0 and is synced
        again. True when that happened to a cache that held something."""
        if self.keys is None:
            raise ApplianceError(ErrorCode.KEY_MISSING, "the cache was not opened with a key provider")
        with self.lock:
            if not replace_claim_key(self.keys, material):
                return False
            with self.transaction():
                held = self.revision > 0 or self.count() > 0 or bool(self.snapshot_progress()[0])
                self.execute("DELETE FROM cached")
                self.execute("DELETE FROM staging")
                self.execute("UPDATE snapshot_state SET snapshot_id = '', revision = 0, cursor = '' WHERE id = 1")
                self.execute("UPDATE sync_state SET revision = 0 WHERE id = 1")
        self.generation += 1
        self.checkpoint()
        return held

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
                            "AND length(vector) > 0 ORDER BY subject_id", (pack_id, pack_version)).fetchall()
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
                self.execute(f"INSERT INTO cached ({CACHE_COLUMNS}) SELECT {CACHE_COLUMNS} FROM staging")
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
                    "revision = excluded.revision, display = excluded.display, claim = excluded.claim, "
                    "access = excluded.access, pin = excluded.pin, face_refused = excluded.face_refused "
                    "WHERE excluded.revision > revision") if newer_only else ""
        verb = "INSERT" if newer_only else "INSERT OR REPLACE"
        self.conn.executemany(
            f"{verb} INTO {table} (subject_id, pack_id, pack_version, vector, revision, display, claim, access, pin, "
            f"face_refused) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?){conflict}",
            [(e.subject_id, e.template.pack_id, e.template.pack_version, encode_vector(e.template.vector),
              e.revision, e.display, e.claim, json.dumps(e.access, sort_keys=True), e.pin, int(e.face_refused))
             for e in entries])

    # -- access rules held for offline decisions (appliance.access) -----------------------
    def put_rules(self, rules: dict) -> None:
        """The door's rules from the matcher's latest answer ({}: none); bumps ``generation``
        only when they changed, so a decider reloads them."""
        text = json.dumps(rules, sort_keys=True)
        with self.lock, self.transaction():
            changed = self.execute("UPDATE door_rules SET rules = ? WHERE id = 1 AND rules != ?",
                                   (text, text)).rowcount
        if changed:
            self.generation += 1

    def rules(self) -> dict:
        with self.lock:
            return json.loads(self.execute("SELECT rules FROM door_rules WHERE id = 1").fetchone()[0])

    def presence(self, area: str, subject_id: str) -> tuple[bool, float, str] | None:
        """This door's own anti-passback book (``appliance.access.passback.PresenceBook``)."""
        with self.lock:
            row = self.execute("SELECT inside, at, pass_id FROM presence WHERE area = ? AND subject_id = ?",
                               (area, subject_id)).fetchone()
        return (bool(row[0]), float(row[1]), str(row[2])) if row else None

    @contextmanager
    def passing(self) -> Iterator[None]:
        """The door's own read and record of one pass, as one write transaction."""
        with self.lock, self.transaction():
            yield

    def set_presence(self, area: str, subject_id: str, inside: bool, at: float, pass_id: str = "") -> None:
        with self.lock, self.transaction():
            self.execute("INSERT OR REPLACE INTO presence (area, subject_id, inside, at, pass_id) "
                         "VALUES (?, ?, ?, ?, ?)", (area, subject_id, int(inside), at, pass_id))

    def subject_access(self, subject_id: str) -> dict:
        """The cached person's groups at this door (``g``) and validity (``f``, ``u``); {}: none."""
        with self.lock:
            row = self.execute("SELECT access FROM cached WHERE subject_id = ? LIMIT 1", (subject_id,)).fetchone()
        return json.loads(row[0]) if row else {}

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
                                "AND pack_version = ? AND length(vector) > 0 ORDER BY subject_id",
                                (pack_id, pack_version)).fetchall()
        vectors = np.stack([decode_vector(r[1]) for r in rows]) if rows else np.zeros((0, 0), np.float32)
        return ([r[0] for r in rows], vectors, {r[2]: r[0] for r in rows if r[2]}, {r[0]: r[3] for r in rows})

    def claim_holder(self, claim: str) -> tuple[str, str, str, bool] | None:
        """(subject, masked name, PIN verifier or "", refused face recognition) of the cached
        person whose card has the keyed ``claim``, or None (a card pass: edge.door_modes)."""
        with self.lock:
            row = self.execute("SELECT subject_id, display, pin, face_refused FROM cached WHERE claim = ? LIMIT 1",
                               (claim,)).fetchone()
        return None if row is None or not claim else (str(row[0]), str(row[1]), str(row[2]), bool(row[3]))


def cache_digest(rows) -> str:
    lines = sorted(f"{s}|{p}|{v}|{r}" for s, p, v, r in rows)
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    subject_id: str
    template: Template
    revision: int
    display: str = ""  # masked name
    claim: str = ""  # keyed claim_hash of the subject's card (stores.claims), "" when none
    access: dict = field(default_factory=dict, compare=False)  # groups at this door, validity (appliance.access)
    pin: str = ""  # the PIN verifier (scrypt, matching.credentials.hash_pin), "" when none
    face_refused: bool = False  # refused face recognition: an empty template, card + PIN passes

"""Operation log: append-only, hash-chained, with signed checkpoints and a signed head.

Each entry's hash covers its sequence number, its fields and the previous entry's hash, so
changing, deleting, inserting or reordering an entry breaks the chain at a point that
:meth:`AuditLog.verify` names; every ``checkpoint_every`` entries the node also signs (seq,
hash) inside the database. Chain and checkpoints alone yield to anyone holding the database
key (cut the tail, delete the last checkpoint, recompute every hash), so after every group of
writes the node signs the log's *head* - where it starts and ends - into a file beside the
database (``stores.audit_head``); verify fails unless the database is what the head signs.
Pruning leaves a signed prune record. Appends are group-committed off the callers' threads
(``stores.audit_writer``). Entries never carry biometric data or scores. A door's own decision
also keeps when the door decided and the event as the door signed it (``stores.audit_devices``).

It is a store like the others (``CipherStore``, its own key): it lives beside them so that
``appliance.security`` (keys, roles, masking, signing) never imports ``appliance.stores``.
"""
from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.config import MIN_AUDIT_RETENTION_DAYS, SecurityConfig
from appliance.errors import ApplianceError, ErrorCode
from appliance.security import signing
from appliance.security.keys import AUDIT_DB, NODE_SIGNING, KeyProvider, SecretKey
from appliance.security.masking import mask_text
from appliance.security.roles import Permission, Principal, Role, require, require_any
from appliance.stores import audit_head, audit_schema
from appliance.stores.audit_chain import (
    CHECKPOINT_DOMAIN, DEVICE_FIELDS, FIELDS, PRUNE_DOMAIN, AuditEntry, AuditVerdict, checkpoint_body, entry_fields,
    entry_hash, signed_rows, stamped, walk_chain,
)
from appliance.stores.audit_head import AuditHead, Evidence, Span
from appliance.stores.audit_writer import GROUP_LINGER_S, GROUP_MAX_ENTRIES, MAX_QUEUED, GroupCommit
from appliance.stores.reserve import AUDIT_RESERVE_BYTES, DiskReserve, reserve_path
from appliance.stores.base import CipherStore

log = logging.getLogger(__name__)

GENESIS = audit_head.GENESIS
SECONDS_PER_DAY = 86400
DEFAULT_CHECKPOINT_EVERY = 100
DEFAULT_HEAD_MAX_AGE_S = SecurityConfig().audit_head_max_age_s
HEAD_REFRESHES_PER_MAX_AGE = 3  # an idle writer re-signs its head this many times within the allowed age
MAX_DETAIL_CHARS = 200
_INSERT = "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SIGNED_ROWS = {table: f"SELECT seq, hash, time, node, signature FROM {table}"
                for table in ("checkpoints", "prunes", "tail")}
_SIGN_INTO = {"checkpoints": "INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
              "prunes": "INSERT INTO prunes VALUES (?, ?, ?, ?, ?)",
              "tail": "INSERT OR REPLACE INTO tail VALUES (1, ?, ?, ?, ?, ?)"}

Prune = Callable[[Span, str], tuple[tuple[int, str], list[dict]]]


class AuditLog(CipherStore):
    KEY_NAME = AUDIT_DB
    MIGRATIONS = audit_schema.MIGRATIONS

    def __init__(self, path: Path, key: SecretKey, signing_key: SecretKey, node_id: str,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY, *, head_max_age_s: float = DEFAULT_HEAD_MAX_AGE_S,
                 group_max_entries: int = GROUP_MAX_ENTRIES, group_linger_s: float = GROUP_LINGER_S,
                 group_max_queued: int = MAX_QUEUED, reserve_bytes: int = AUDIT_RESERVE_BYTES) -> None:
        self._created = False
        super().__init__(path, key)
        self._signer = Ed25519PrivateKey.from_private_bytes(signing_key.material)
        self.public_key = self._signer.public_key()
        self.node_id = node_id
        self.checkpoint_every = checkpoint_every
        self.head_max_age_s = head_max_age_s
        self.head_path = audit_head.head_path(self.path)
        self.head_problem = ""  # why the last group could not extend the signed head ("" = it did)
        self._lock = threading.RLock()  # one connection: one user at a time (writer thread, readers)
        self._signed_seq = 0  # the highest entry this process signed: a head below it was rolled back
        # the head file this process wrote last, as bytes and as the head they hold: the same bytes
        # found again need no parse and no signature check (issue 17: per group commit)
        self._own_head: tuple[bytes, AuditHead] | None = None
        if self._created:
            self._sign_genesis()
        # room for what a stop on a full disk would lose (made by the matcher: ``matcher.app.compose``)
        self.reserve = DiskReserve(reserve_path(self.path), reserve_bytes)
        self._writer: GroupCommit[dict, AuditEntry] = GroupCommit(
            f"audit-writer-{node_id}", self._commit, self._refresh, head_max_age_s / HEAD_REFRESHES_PER_MAX_AGE,
            max_batch=group_max_entries, linger_s=group_linger_s, max_queued=group_max_queued,
            last_resort=self.reserve.release).start()

    @classmethod
    def open_with(cls, path: Path, keys: KeyProvider, node_id: str,
                  checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY, **options: Any) -> "AuditLog":
        return cls.open(path, keys, signing_key=keys.get(NODE_SIGNING), node_id=node_id,
                        checkpoint_every=checkpoint_every, **options)

    def migrate(self) -> int:
        self._created = self._created or self.schema_version == 0  # this open made the file
        return super().migrate()

    def _sign_genesis(self) -> None:
        """A new log gets a signed empty head at once, so that from now on a missing head is
        always an anomaly. An existing head is kept: the database was deleted, and verify says so."""
        with audit_head.head_lock(self.path, exclusive=True):
            if not self.head_path.exists():
                self._wrote(self._head(Span.genesis()), durable_name=True)

    # -- writing ------------------------------------------------------------------------
    def append(self, principal: Principal, action: str, obj: str, result: str, detail: str = "", *,
               wait: bool = True, block: bool = True) -> AuditEntry | None:
        """Append one entry. Any principal's actions are logged; none may choose the content
        of someone else's entry. Scores and biometric data are refused outright.

        With ``wait`` (the default) it returns once the entry is committed and vouched for by
        the node's signature. ``wait=False`` is for hot paths (the matcher): it returns at once
        (None) and the entry is written with its group within ``group_linger_s``; without ``block``
        a full queue (a full disk) raises ``STORE_UNWRITABLE`` at once instead of waiting for room."""
        fields = entry_fields(principal, action, obj, result, detail)
        return self._writer.submit(lambda: stamped(fields), wait, block)

    def append_records(self, records: list[dict]) -> list[AuditEntry]:
        """Entries made and checked by the caller (``audit_devices.decision_record``: a door's
        decision with its original time and signed evidence), queued together and returned
        once committed; the writer groups them into as few transactions as its batch allows."""
        return self._writer.submit_many([lambda r=r: stamped(r) for r in records])

    def flush(self) -> None:
        """Every entry appended so far is committed when this returns."""
        self._writer.flush()

    @property
    def writer(self) -> GroupCommit[dict, AuditEntry]:
        """The group commit behind ``append``: its stats, queue, and a commit failure in progress."""
        return self._writer

    def _commit(self, records: list[dict], prune: Prune | None = None, force: bool = False) -> list[AuditEntry]:
        """One transaction for a group (entries, the signed tail checkpoint, a signed prune record),
        then one signed head. A head that does not match the database is never extended (that
        would launder tampering): the entries are still written, verify fails until re-anchored."""
        with audit_head.head_lock(self.path, exclusive=True), self._lock:
            with self.transaction():
                span = self._span()
                head, problem = self._head_status(span)
                problem = "" if force else problem
                self._note(problem)
                if head is not None and not problem and time.time() - head.time > self.head_max_age_s:
                    records = [self._stale_record(head, span), *records]
                base, extra = prune(span, problem) if prune else ((span.base_seq, span.base_hash), [])
                entries = self._insert(span, [*records, *extra])
                end = (entries[-1].seq, entries[-1].hash) if entries else (span.seq, span.hash)
                if entries:  # vouched for in the same commit: a head write lost to a crash heals
                    self._checkpoint(*end, table="tail")
            if not problem:
                try:
                    self._wrote(self._head(Span(*base, *end)))
                    self._signed_seq = max(self._signed_seq, end[0])
                except OSError as exc:  # the checkpoint still vouches for these entries
                    log.warning("audit log %s: head not written (%s); the next group writes it", self.path, exc)
        return entries

    def _wrote(self, head: AuditHead, durable_name: bool = False) -> None:
        self._own_head = None  # a failed write leaves a file we cannot vouch for by its bytes
        self._own_head = (audit_head.write_head(self.head_path, head, durable_name), head)

    def _refresh(self) -> None:
        """Keep a running site's head fresh (never over a log that does not match it)."""
        self._commit([])

    def _insert(self, span: Span, records: list[dict]) -> list[AuditEntry]:
        """Chain ``records`` after ``span`` and insert them with one statement (per-row
        ``execute`` was a fifth of the writer's time: issue 17), then their checkpoints."""
        seq, prev, entries, rows = span.seq, span.hash, [], []
        for record in records:
            seq += 1
            fields = {"seq": seq, **{f: record[f] for f in FIELDS[1:]}, **{f: record[f] for f in DEVICE_FIELDS
                                                                              if record.get(f)}}
            digest = entry_hash(fields, prev)
            rows.append([fields[f] for f in FIELDS] + [prev, digest, fields.get("origin_at", 0.0),
                                                       fields.get("evidence", "")])
            entries.append(AuditEntry(**fields, prev=prev, hash=digest))
            prev = digest
        self.conn.executemany(_INSERT, rows)
        for entry in entries:  # in the same transaction as their entries
            if entry.seq % self.checkpoint_every == 0:
                self._checkpoint(entry.seq, entry.hash)
        return entries

    def _span(self) -> Span:
        """What the database holds now (an empty log starts after its newest checkpoint)."""
        first = self.execute("SELECT seq, prev FROM entries ORDER BY seq LIMIT 1").fetchone()
        last = self.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
        if first is None:
            row = self.execute("SELECT seq, hash FROM checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
            return Span(row[0], row[1], row[0], row[1]) if row else Span.genesis()
        return Span(first[0] - 1, first[1], last[0], last[1])

    def _head_status(self, span: Span) -> tuple[AuditHead | None, str]:
        """The signed head, and why it may not be extended over ``span`` ("" when it may)."""
        try:
            raw = audit_head.read_head_bytes(self.head_path)
            own = self._own_head is not None and raw == self._own_head[0]  # what this process signed
            head = self._own_head[1] if own else None if raw is None else audit_head.parse_head(raw, self.head_path)
        except audit_head.HeadUnreadable:
            return None, "signed head unreadable"
        if head is None:
            return None, f"signed head missing ({self.head_path.name})"
        if not own and not head.valid(self.public_key):
            return None, "signed head's signature invalid"
        mismatch = None if span == head.log else audit_head.judge(span, head.log, self._evidence(span, head.log))
        if mismatch is not None:
            return head, mismatch[1]
        if span.seq < self._signed_seq:
            return head, f"log rolled back to entry {span.seq} after this process signed entry {self._signed_seq}"
        return head, ""

    def _evidence(self, found: Span, head: Span) -> Evidence:
        """What ``audit_head.judge`` asks of the database (signatures checked here)."""
        row = self.execute("SELECT hash FROM entries WHERE seq = ?", (head.seq,)).fetchone()
        return Evidence({head.seq: row[0]} if row else {},
                        {**self._signed("checkpoints", found.seq), **self._signed("tail", found.seq)},
                        self._signed("prunes", found.base_seq))

    def _signed(self, table: str, seq: int | None = None, key: Ed25519PublicKey | None = None) -> Any:
        """seq -> hash of validly signed rows (one seq: a bad signature is none; all: the verdict)."""
        where = (" WHERE seq = ?", (seq,)) if seq is not None else (" ORDER BY seq", ())
        rows = self.execute(_SIGNED_ROWS[table] + where[0], where[1]).fetchall()
        prune = table == "prunes"
        signed = signed_rows(rows, key or self.public_key, PRUNE_DOMAIN if prune else CHECKPOINT_DOMAIN,
                             "prune record" if prune else "checkpoint")
        return {} if seq is not None and isinstance(signed, AuditVerdict) else signed

    def _head(self, span: Span) -> AuditHead:
        return AuditHead(self.node_id, time.time(), span).signed(self._signer)

    def _note(self, problem: str) -> None:
        if problem and problem != self.head_problem:
            log.error("audit log %s: signed head not extended: %s; verify fails until an administrator runs "
                      "'appliance audit reanchor'", self.path, problem)
        self.head_problem = problem

    def _stale_record(self, head: AuditHead, span: Span) -> dict:
        """An unanchored gap (site stopped, or log rolled back to an old head) goes on record."""
        gap = f"no head signed for {int(time.time() - head.time)} s (allowed {int(self.head_max_age_s)} s)"
        return stamped(entry_fields(Principal(self.node_id, Role.SYSTEM_ADMIN), "audit.head", "audit-log",
                                    "stale", f"{gap} after entry {span.seq}"))

    def _checkpoint(self, seq: int, digest: str, table: str = "checkpoints") -> None:
        """A signed checkpoint, prune record, or ``tail``: the one-row checkpoint at the end of the
        last group, replaced by every group (an old one only vouches for a log shorter than its head)."""
        when = time.time()
        domain = PRUNE_DOMAIN if table == "prunes" else CHECKPOINT_DOMAIN
        signature = signing.sign(self._signer, domain, checkpoint_body(self.node_id, seq, digest, when)).hex()
        row = (seq, digest, when, self.node_id, signature)
        if table == "checkpoints":
            row = (*row[:4], self.public_key.public_bytes_raw().hex(), signature)
        self.execute(_SIGN_INTO[table], row)

    def checkpoint(self) -> int | None:
        """Sign a checkpoint at the current end and re-sign the head now (a timer calls this)."""
        with self._lock, self.transaction():
            last = self.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
            if last is not None:
                self._checkpoint(last[0], last[1])
        self._commit([])
        return None if last is None else int(last[0])

    def reanchor(self, principal: Principal) -> AuditEntry:
        """Sign a head over the log as it is, after the head was lost or stopped matching
        (tampering found and dealt with, or a database from before signed heads). Deliberate,
        and on record: the entry names what was wrong with the old head."""
        require(principal, Permission.MANAGE_STORES)
        with self._lock:
            problem = self._head_status(self._span())[1] or "the signed head matched"
        record = stamped(entry_fields(principal, "audit.reanchor", "audit-log", "ok", problem[:MAX_DETAIL_CHARS]))
        return self._commit([record], force=True)[-1]  # after a stale-head note, if any

    # -- reading ------------------------------------------------------------------------
    def oldest_time(self) -> float | None:
        """When the oldest entry still held was written (None for an empty log): the age
        the retention status shows, without reading the whole log."""
        row = self.execute("SELECT time FROM entries ORDER BY seq LIMIT 1").fetchone()
        return None if row is None else float(row[0])

    def entries(self, since: float | None = None) -> list[AuditEntry]:
        """Everything appended so far, ``wait=False`` included (queued entries are written first)."""
        self._writer.flush()
        return self._rows(since)

    def _rows(self, since: float | None = None) -> list[AuditEntry]:
        sql = f"SELECT {', '.join(FIELDS)}, prev, hash, {', '.join(DEVICE_FIELDS)} FROM entries"
        with self._lock:
            rows = self.execute(sql + " WHERE time >= ? ORDER BY seq", (since,)) if since is not None \
                else self.execute(sql + " ORDER BY seq")
            return [AuditEntry(*r) for r in rows]

    def export(self, principal: Principal, since: float | None = None) -> list[dict]:
        """Entries for auditors, masked; the export is itself logged."""
        require(principal, Permission.READ_AUDIT)
        out = [{k: (mask_text(v) if isinstance(v, str) and k != "evidence" else v)  # a device's signed event
                for k, v in e.as_dict().items()} | {"hash": e.hash}
               for e in self.entries(since)]
        self.append(principal, "audit.export", "audit-log", "ok", f"{len(out)} entries")
        return out

    def verify(self, principal: Principal, public_key: Ed25519PublicKey | None = None,
               max_head_age_s: float | None = None, now: float | None = None) -> AuditVerdict:
        """Check the chain, every signed checkpoint and prune record, and the signed head; name
        the first bad entry. ``max_head_age_s`` is for a running site, whose writer re-signs
        the head well within it: an older head means the log was rolled back to an earlier
        signed state, or nothing is anchoring it."""
        require(principal, Permission.VERIFY_AUDIT)
        key = public_key or self.public_key
        self._writer.flush()
        with audit_head.head_lock(self.path, exclusive=False), self._lock:  # a consistent pair
            checkpoints, prunes, tail = (self._signed(table, key=key) for table in ("checkpoints", "prunes", "tail"))
            entries, span = self._rows(), self._span()
            try:
                head, unreadable = audit_head.read_head(self.head_path), False
            except audit_head.HeadUnreadable:
                head, unreadable = None, True
        for signed in (checkpoints, prunes, tail):
            if isinstance(signed, AuditVerdict):
                return signed
        checkpoints, count = {**checkpoints, **tail}, len(entries)
        broken = walk_chain(entries, checkpoints)
        if broken is not None:
            return broken
        if head is None:
            why = "signed head unreadable" if unreadable else f"signed head missing ({self.head_path.name})"
            return AuditVerdict(False, count, None, why)
        if not head.valid(key):
            return AuditVerdict(False, count, None, "signed head's signature invalid")
        mismatch = audit_head.judge(span, head.log, Evidence({e.seq: e.hash for e in entries}, checkpoints, prunes))
        if mismatch is not None:
            return AuditVerdict(False, count, *mismatch, head.time)
        age = (time.time() if now is None else now) - head.time
        if max_head_age_s is not None and age > max_head_age_s:
            return AuditVerdict(False, count, None, f"signed head is {age:.0f} s old, allowed {max_head_age_s:.0f} s: "
                                "the log was rolled back to an older signed state, or nothing anchors it", head.time)
        return AuditVerdict(True, count, head_time=head.time)

    # -- retention ----------------------------------------------------------------------
    def prune(self, principal: Principal, retention_days: int, now: float | None = None) -> int:
        """Drop entries older than the retention period up to a signed checkpoint, leaving a signed
        prune record there and moving the head's start in the same step. Refuses a retention below
        the legal minimum; prunes nothing from a log that does not match its signed head."""
        require_any(principal, Permission.RUN_RETENTION)
        if retention_days < MIN_AUDIT_RETENTION_DAYS:
            raise ApplianceError(ErrorCode.CONFIG_INVALID,
                                 f"audit retention must be at least {MIN_AUDIT_RETENTION_DAYS} days")
        cutoff = (time.time() if now is None else now) - retention_days * SECONDS_PER_DAY
        removed = 0

        def cut(span: Span, problem: str) -> tuple[tuple[int, str], list[dict]]:
            nonlocal removed
            unchanged = ((span.base_seq, span.base_hash), [])
            if problem:
                log.warning("audit log %s: not pruned: %s", self.path, problem)
                return unchanged
            old = self.execute("SELECT max(seq) FROM entries WHERE time < ?", (cutoff,)).fetchone()[0]
            anchor = None if old is None else self.execute(
                "SELECT max(seq) FROM checkpoints WHERE seq <= ?", (old,)).fetchone()[0]
            row = None if anchor is None else \
                self.execute("SELECT hash FROM entries WHERE seq = ?", (anchor,)).fetchone()
            if row is None:
                return unchanged
            self._checkpoint(anchor, row[0], table="prunes")
            self.execute("UPDATE prune_gate SET open = 1 WHERE id = 1")
            removed = self.execute("DELETE FROM entries WHERE seq <= ?", (anchor,)).rowcount
            self.execute("DELETE FROM checkpoints WHERE seq < ?", (anchor,))
            self.execute("DELETE FROM prunes WHERE seq < ?", (anchor,))
            self.execute("UPDATE prune_gate SET open = 0 WHERE id = 1")
            note = entry_fields(principal, "audit.prune", "audit-log", "ok", f"{removed} entries up to {anchor}")
            return (anchor, row[0]), [stamped(note)]

        self._commit([], prune=cut)
        return removed

    # -- the store's own operations, kept clear of the writer ---------------------------
    def backup(self, destination: Path) -> Path:
        with self._lock:
            return super().backup(destination)

    def restore(self, source: Path) -> None:
        self._writer.flush()
        with self._lock:
            super().restore(source)

    def rekey(self, keys: KeyProvider) -> SecretKey:
        self._writer.flush()
        with self._lock:
            return super().rekey(keys)

    def close(self) -> None:
        """Write what is queued, stop the writer, close the database."""
        writer = getattr(self, "_writer", None)
        if writer is not None:
            writer.close()
        super().close()

"""Operation log: append-only, hash-chained, with checkpoints signed by the node's key.

Each entry's hash covers its sequence number, its fields and the previous entry's hash, so
changing, deleting, inserting or reordering an entry breaks the chain at a point that
:meth:`AuditLog.verify` names. Every ``checkpoint_every`` entries the node signs (seq, hash):
someone holding the database key but not the signing key cannot rewrite history before a
checkpoint, and retention pruning can drop old entries while the rest stays verifiable from
the signed checkpoint just before them. Entries never carry biometric data or scores.

It is a store like the others (``CipherStore``, its own key): it lives beside them so that
``appliance.security`` (keys, roles, masking, signing) never imports ``appliance.stores``.
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from appliance.config import MIN_AUDIT_RETENTION_DAYS
from appliance.errors import ApplianceError, ErrorCode
from appliance.security.keys import AUDIT_DB, NODE_SIGNING, KeyProvider, SecretKey
from appliance.security import signing
from appliance.security.masking import mask_text
from appliance.security.roles import Permission, Principal, require, require_any
from appliance.stores.base import CipherStore

GENESIS = "0" * 64
SECONDS_PER_DAY = 86400
DEFAULT_CHECKPOINT_EVERY = 100
_CHECKPOINT_DOMAIN = b"appliance/audit-checkpoint/v1|"
_FIELDS = ("seq", "time", "actor", "role", "action", "object", "result", "device", "detail")
# words and number shapes that would mean a score or biometric data is being logged
_FORBIDDEN = re.compile(r"score|similarit|distance|embedding|vector|threshold|image|\d\.\d{3,}", re.IGNORECASE)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    time: float
    actor: str
    role: str
    action: str
    object: str  # a subject pseudonym or an object name, never a person's name
    result: str
    device: str
    detail: str
    prev: str
    hash: str

    def as_dict(self) -> dict:
        return {f: getattr(self, f) for f in _FIELDS}


@dataclass(frozen=True)
class AuditVerdict:
    ok: bool
    entries: int
    first_bad: int | None = None
    reason: str = ""


def entry_hash(fields: dict, prev: str) -> str:
    canonical = json.dumps({**{f: fields[f] for f in _FIELDS}, "prev": prev}, sort_keys=True,
                           ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def checkpoint_body(node: str, seq: int, digest: str, when: float) -> bytes:
    """What a checkpoint signature covers after its domain (its own bytes, not JSON)."""
    return f"{node}|{seq}|{digest}|{when!r}".encode("utf-8")


class AuditLog(CipherStore):
    KEY_NAME = AUDIT_DB
    MIGRATIONS = (
        """
        CREATE TABLE entries (
            seq INTEGER PRIMARY KEY, time REAL NOT NULL, actor TEXT NOT NULL, role TEXT NOT NULL,
            action TEXT NOT NULL, object TEXT NOT NULL, result TEXT NOT NULL, device TEXT NOT NULL,
            detail TEXT NOT NULL, prev TEXT NOT NULL, hash TEXT NOT NULL);
        CREATE TABLE checkpoints (
            seq INTEGER PRIMARY KEY, hash TEXT NOT NULL, time REAL NOT NULL, node TEXT NOT NULL,
            public_key TEXT NOT NULL, signature TEXT NOT NULL);
        CREATE TABLE prune_gate (id INTEGER PRIMARY KEY CHECK (id = 1), open INTEGER NOT NULL);
        INSERT INTO prune_gate VALUES (1, 0);
        CREATE TRIGGER entries_append_only BEFORE UPDATE ON entries
            BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
        CREATE TRIGGER entries_no_delete BEFORE DELETE ON entries
            WHEN (SELECT open FROM prune_gate WHERE id = 1) = 0
            BEGIN SELECT RAISE(ABORT, 'audit entries are removed only by retention pruning'); END;
        CREATE TRIGGER checkpoints_append_only BEFORE UPDATE ON checkpoints
            BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
        CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints
            WHEN (SELECT open FROM prune_gate WHERE id = 1) = 0
            BEGIN SELECT RAISE(ABORT, 'checkpoints are removed only by retention pruning'); END;
        """,
    )

    def __init__(self, path: Path, key: SecretKey, signing_key: SecretKey, node_id: str,
                 checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY) -> None:
        super().__init__(path, key)
        self._signer = Ed25519PrivateKey.from_private_bytes(signing_key.material)
        self.public_key = self._signer.public_key()
        self.node_id = node_id
        self.checkpoint_every = checkpoint_every

    @classmethod
    def open_with(cls, path: Path, keys: KeyProvider, node_id: str,
                  checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY) -> "AuditLog":
        return cls.open(path, keys, signing_key=keys.get(NODE_SIGNING), node_id=node_id,
                        checkpoint_every=checkpoint_every)

    # -- writing ------------------------------------------------------------------------
    def append(self, principal: Principal, action: str, obj: str, result: str, detail: str = "") -> AuditEntry:
        """Append one entry. Any principal's actions are logged; none may choose the content
        of someone else's entry. Scores and biometric data are refused outright."""
        for text in (action, obj, result, detail):
            if not isinstance(text, str) or _FORBIDDEN.search(text):
                raise ApplianceError(ErrorCode.AUDIT_FORBIDDEN_DATA, f"refused audit field {action!r}")
        with self.transaction():
            last = self.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (last[0] + 1, last[1]) if last else (self._anchor_seq() + 1, self._anchor_hash())
            fields = {"seq": seq, "time": time.time(), "actor": principal.actor, "role": principal.role.value,
                      "action": action, "object": obj, "result": result, "device": principal.device,
                      "detail": mask_text(detail)}
            digest = entry_hash(fields, prev)
            self.execute("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [fields[f] for f in _FIELDS] + [prev, digest])
            if seq % self.checkpoint_every == 0:
                self._checkpoint(seq, digest)
        return AuditEntry(**fields, prev=prev, hash=digest)

    def _anchor_seq(self) -> int:
        row = self.execute("SELECT max(seq) FROM checkpoints").fetchone()
        return int(row[0] or 0)

    def _anchor_hash(self) -> str:
        row = self.execute("SELECT hash FROM checkpoints ORDER BY seq DESC LIMIT 1").fetchone()
        return row[0] if row else GENESIS

    def _checkpoint(self, seq: int, digest: str) -> None:
        when = time.time()
        signature = signing.sign(self._signer, _CHECKPOINT_DOMAIN, checkpoint_body(self.node_id, seq, digest, when))
        self.execute("INSERT OR IGNORE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
                     (seq, digest, when, self.node_id, self.public_key.public_bytes_raw().hex(), signature.hex()))

    def checkpoint(self) -> int | None:
        """Sign the current head now (the timer calls this; also done every N entries)."""
        with self.transaction():
            last = self.execute("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1").fetchone()
            if last is None:
                return None
            self._checkpoint(last[0], last[1])
            return int(last[0])

    # -- reading ------------------------------------------------------------------------
    def entries(self, since: float | None = None) -> list[AuditEntry]:
        sql = f"SELECT {', '.join(_FIELDS)}, prev, hash FROM entries"
        rows = self.execute(sql + " WHERE time >= ? ORDER BY seq", (since,)) if since is not None \
            else self.execute(sql + " ORDER BY seq")
        return [AuditEntry(*r) for r in rows]

    def export(self, principal: Principal, since: float | None = None) -> list[dict]:
        """Entries for auditors, masked; the export is itself logged."""
        require(principal, Permission.READ_AUDIT)
        out = [{k: (mask_text(v) if isinstance(v, str) else v) for k, v in e.as_dict().items()} | {"hash": e.hash}
               for e in self.entries(since)]
        self.append(principal, "audit.export", "audit-log", "ok", f"{len(out)} entries")
        return out

    def verify(self, principal: Principal, public_key: Ed25519PublicKey | None = None) -> AuditVerdict:
        """Check the whole chain and every signed checkpoint; name the first bad entry."""
        require(principal, Permission.VERIFY_AUDIT)
        public_key = public_key or self.public_key
        checkpoints = self.execute("SELECT seq, hash, time, node, signature FROM checkpoints ORDER BY seq").fetchall()
        signed: dict[int, str] = {}
        for seq, digest, when, node, signature in checkpoints:
            try:
                raw = bytes.fromhex(signature)
            except (TypeError, ValueError):
                raw = b""
            if not signing.verify(public_key, _CHECKPOINT_DOMAIN, checkpoint_body(node, seq, digest, when), raw):
                return AuditVerdict(False, 0, seq, f"checkpoint at entry {seq}: signature invalid")
            signed[seq] = digest
        entries = self.entries()
        if not entries:
            if signed:
                return AuditVerdict(False, 0, min(signed) + 1, "all entries removed after a signed checkpoint")
            return AuditVerdict(True, 0)
        first = entries[0].seq
        if first == 1:
            prev = GENESIS
        elif first - 1 in signed:
            prev = signed[first - 1]  # pruned up to here: the signed checkpoint anchors the rest
        else:
            return AuditVerdict(False, len(entries), 1 if not signed else min(signed),
                                f"entries before {first} missing and no signed checkpoint at {first - 1}")
        expected = first
        for entry in entries:
            if entry.seq != expected:
                return AuditVerdict(False, len(entries), expected, f"entry {expected} missing (deleted)")
            if entry.prev != prev:
                return AuditVerdict(False, len(entries), entry.seq,
                                    f"entry {entry.seq} does not follow entry {entry.seq - 1} (inserted or reordered)")
            if entry_hash(entry.as_dict(), entry.prev) != entry.hash:
                return AuditVerdict(False, len(entries), entry.seq, f"entry {entry.seq} modified")
            if entry.seq in signed and signed[entry.seq] != entry.hash:
                return AuditVerdict(False, len(entries), entry.seq,
                                    f"entry {entry.seq} differs from its signed checkpoint (chain rewritten)")
            prev, expected = entry.hash, entry.seq + 1
        last = entries[-1].seq
        if signed and max(signed) > last:
            return AuditVerdict(False, len(entries), last + 1,
                                f"entries after {last} removed (signed checkpoint at {max(signed)})")
        return AuditVerdict(True, len(entries))

    # -- retention ----------------------------------------------------------------------
    def prune(self, principal: Principal, retention_days: int, now: float | None = None) -> int:
        """Drop entries older than the retention period, only up to a signed checkpoint so that
        what remains still verifies. Refuses a retention below the legal minimum."""
        require_any(principal, Permission.RUN_RETENTION)
        if retention_days < MIN_AUDIT_RETENTION_DAYS:
            raise ApplianceError(ErrorCode.CONFIG_INVALID,
                                 f"audit retention must be at least {MIN_AUDIT_RETENTION_DAYS} days")
        cutoff = (time.time() if now is None else now) - retention_days * SECONDS_PER_DAY
        with self.transaction():
            old = self.execute("SELECT max(seq) FROM entries WHERE time < ?", (cutoff,)).fetchone()[0]
            anchor = None if old is None else self.execute(
                "SELECT max(seq) FROM checkpoints WHERE seq <= ?", (old,)).fetchone()[0]
            if anchor is None:
                return 0
            self.execute("UPDATE prune_gate SET open = 1 WHERE id = 1")
            removed = self.execute("DELETE FROM entries WHERE seq <= ?", (anchor,)).rowcount
            self.execute("DELETE FROM checkpoints WHERE seq < ?", (anchor,))
            self.execute("UPDATE prune_gate SET open = 0 WHERE id = 1")
        self.append(principal, "audit.prune", "audit-log", "ok", f"{removed} entries up to {anchor}")
        return removed

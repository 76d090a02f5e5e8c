"""The audit log's signed head: what the log holds, signed by the node, kept outside the database.

The hash chain and the checkpoints inside ``audit.db`` are rewritable by anyone holding the
database key: cut the tail, delete the last checkpoint, recompute every hash. The head is the
part that key cannot forge. After every group of writes the node signs (Ed25519, domain
``appliance/audit-head/v1|``) the statement "the log is exactly the entries after ``base_seq``
(whose hash was ``base_hash``) up to ``seq`` (hash ``hash``), as of ``time``" and writes it
atomically to a small file beside the database.

The database may be *ahead* of the head file by what the node itself signed, and by nothing
else (:func:`judge`): a group of writes commits its entries together with a signed checkpoint
at its last entry (and, when pruning, a signed prune record at the new start) in one
transaction, and writes the head after the commit. A crash between the two leaves a database
whose end (or start) is vouched for by a signature made in the same fsync'd commit - accepted;
entries added, cut or rewritten with the database key alone never are. So a group costs the
database's commit and one head write, and a lost head write heals at the next group.

Heads of concurrent writers (the matcher and a CLI command) are serialised by an advisory lock
on a file beside the head (``flock``, released by the kernel when a process dies).
"""
from __future__ import annotations

import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.security import signing

HEAD_DOMAIN = b"appliance/audit-head/v1|"
HEAD_SUFFIX = ".head"
LOCK_SUFFIX = ".head.lock"
TMP_SUFFIX = ".tmp"  # beside the head while it is written
HEAD_FILE_MODE = 0o600
GENESIS = "0" * 64


@dataclass(frozen=True)
class Span:
    """Entries ``base_seq + 1 .. seq``; entry ``base_seq`` (pruned, or 0 at genesis) had
    ``base_hash``, entry ``seq`` has ``hash``. An empty log is ``base_seq == seq``."""

    base_seq: int
    base_hash: str
    seq: int
    hash: str

    @classmethod
    def genesis(cls) -> "Span":
        return cls(0, GENESIS, 0, GENESIS)


@dataclass(frozen=True)
class AuditHead:
    node: str
    time: float
    log: Span
    signature: str = ""

    def body(self) -> dict:
        # by hand, not ``asdict`` (a recursive deep copy, twice per group commit): the same document
        log = self.log
        return {"node": self.node, "time": self.time, "log": {"base_seq": log.base_seq, "base_hash": log.base_hash,
                                                              "seq": log.seq, "hash": log.hash}}

    def document(self) -> dict:
        """What the head file holds: the body and its signature."""
        return {**self.body(), "signature": self.signature}

    def signed(self, signer: signing.Signs) -> "AuditHead":
        return replace(self, signature=signing.sign_document(signer, HEAD_DOMAIN, self.body()))

    def valid(self, public_key: Ed25519PublicKey) -> bool:
        return signing.verify_document(public_key, HEAD_DOMAIN, self.body(), self.signature)


@dataclass(frozen=True)
class Evidence:
    """What the database holds besides its span, as far as :func:`judge` asks: entry hashes,
    and the checkpoints and prune records whose signatures were checked (seq -> hash)."""

    hashes: dict[int, str] = field(default_factory=dict)
    checkpoints: dict[int, str] = field(default_factory=dict)
    prunes: dict[int, str] = field(default_factory=dict)


def judge(found: Span, head: Span, evidence: Evidence) -> tuple[int, str] | None:
    """None when the database's ``found`` is what ``head`` signs, or runs ahead of it only by
    what the node signed in the same commit (a checkpoint at its end, a prune record at its
    start); otherwise (first bad entry, why)."""
    if found.base_seq < head.base_seq:
        return (found.base_seq + 1, f"the log starts after entry {found.base_seq} but the signed head's after "
                                    f"entry {head.base_seq} (entries put back before the pruning point)")
    if found.base_seq > head.base_seq and evidence.prunes.get(found.base_seq) != found.base_hash:
        return (head.base_seq + 1, f"entries {head.base_seq + 1}-{found.base_seq} removed without a signed prune "
                                   f"record (the signed head's log starts after entry {head.base_seq})")
    if found.base_seq == head.base_seq and found.base_hash != head.base_hash:
        return found.base_seq + 1, f"entry {found.base_seq + 1} does not follow the signed start (chain rewritten)"
    if found.seq < head.seq:
        return found.seq + 1, f"entries after {found.seq} removed (the signed head ends at entry {head.seq})"
    if found.seq == head.seq:
        return None if found.hash == head.hash else (found.seq, f"entry {found.seq} differs from the signed head "
                                                                f"(chain rewritten)")
    kept = evidence.hashes.get(head.seq) if head.seq > found.base_seq else found.base_hash
    if head.seq >= found.base_seq and kept != head.hash:
        return head.seq, f"entry {head.seq} differs from the signed head (chain rewritten)"
    if evidence.checkpoints.get(found.seq) != found.hash:
        return (head.seq + 1, f"entries {head.seq + 1}-{found.seq} are not covered by the signed head "
                              f"(added without the signing key)")
    return None


class HeadUnreadable(ValueError):
    """The head file exists but is not a head document (as good as a forged one)."""


def head_path(db_path: Path) -> Path:
    return Path(db_path).with_name(Path(db_path).name + HEAD_SUFFIX)


def read_head(path: Path) -> AuditHead | None:
    """The head in ``path``; None when there is no file. Its signature is not checked here."""
    raw = read_head_bytes(path)
    return None if raw is None else parse_head(raw, path)


def read_head_bytes(path: Path) -> bytes | None:
    """The head file's bytes, None when there is none (a writer compares them with what it wrote)."""
    try:
        with open(path, "rb") as file:  # no new Path per group commit (see write_head)
            return file.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise HeadUnreadable(f"{path}: {exc}") from None


def parse_head(data: bytes, path: Path) -> AuditHead:
    """The head document in ``data`` (read from ``path``). Its signature is not checked here."""
    try:
        raw = json.loads(data)
    except ValueError as exc:
        raise HeadUnreadable(f"{path}: {exc}") from None
    try:
        return AuditHead(str(raw["node"]), float(raw["time"]), Span(**raw["log"]), str(raw["signature"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise HeadUnreadable(f"{path}: {exc!r}") from None


def write_head(path: Path, head: AuditHead, durable_name: bool = False) -> bytes:
    """Atomically: a temporary file, fsync, rename over the head - a reader or a crash sees
    the old head or the new one, never a mix. The folder is fsync'd only for ``durable_name``
    (the first head): losing a later rename to a power cut leaves an older head that the
    database's signed checkpoint still reconciles. Returns the bytes written. Names are plain
    strings: no ``Path`` objects made per group commit (~15 us of CPU each: issue 17)."""
    target = os.fspath(path)
    tmp = target + TMP_SUFFIX
    data = json.dumps(head.document(), sort_keys=True).encode("utf-8") + b"\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, HEAD_FILE_MODE)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, target)
    if durable_name:
        folder = os.open(os.path.dirname(target) or os.curdir, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    return data


@contextmanager
def head_lock(db_path: Path, exclusive: bool) -> Iterator[None]:
    """Writers of the head (exclusive) and readers that compare it with the database (shared)
    across processes and threads: each holder opens the lock file itself, so ``flock``
    serialises threads of one process too (never nest it). A folder that cannot hold the lock
    file (a read-only copy) has no writers to fear."""
    lock = os.fspath(db_path) + LOCK_SUFFIX
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, HEAD_FILE_MODE)
    except OSError:
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        yield
    finally:
        os.close(fd)  # closing releases the lock

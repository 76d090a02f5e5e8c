"""Backups of the stores: SQLCipher online backup, a signed manifest, a verify step, and a
restore that never rolls back accounts, keys or deletions.

Each store is copied with SQLite's online backup API into a file encrypted under the same
store key (``CipherStore.backup``), so a backup is as unreadable as the live store without
the keys, and readers and writers carry on while it runs. ``backup.json`` lists every file's
SHA-256 and every deletion standing at the backup's revision (format 2), and is signed with
the node's Ed25519 key: a changed, swapped or truncated file, or an edited manifest, is
refused before anything live is touched.

A restore goes back in time, but only for templates and identity records:

* **Backups are only read.** The files to restore are copied into a private staging folder
  and checked against the signed manifest there; SQLite opens only those copies, so a backup
  keeps its bytes (it restores again, from read-only media too) and a file swapped after
  verification is refused.
* **Deletions win.** Every deletion known anywhere is applied again after the restore, with
  fresh tombstones so the device caches drop it too: the tombstones standing in the live
  store (with the person record when the live identity store no longer holds it), the
  deletions listed by every newer backup of this node beside the one restored (the signed
  chain: it survives losing both the stores and ``receipts/``), and the signed receipts
  dated after the backup.
* **Accounts are never rolled back.** ``accounts.db`` is restored only into an account store
  that holds no account (its disk was lost); otherwise the live one is kept, so a disabled
  account stays disabled and an old password stays useless.
* **Keys are never in a backup.** The key vault and the key files stay as they are, so the
  templates of subjects deleted since stay unreadable (crypto-shredding).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.digests import sha256_file
from appliance.durable_file import SHARED, write_durably
from appliance.errors import ApplianceError, ErrorCode
from appliance.ops.accounts import ACCOUNTS_DB, ACCOUNTS_FILE, Accounts, AccountStore
from appliance.security import signing
from appliance.security.keys import AUDIT_DB, BIOMETRIC_DB, IDENTITY_DB, KeyProvider
from appliance.security.roles import Permission, Principal, Role, require
from appliance.stores.base import STORE_FILE_MODE, file_integrity_problems
from appliance.stores.deletion import signed_receipts
from appliance.stores.protected import (AUDIT_FILE, BIOMETRIC_FILE, IDENTITY_FILE, RECEIPTS_DIR, ProtectedData)

MANIFEST = "backup.json"
SIGNATURE = "backup.sig"
FIRST_FORMAT = 1  # no deletions in the manifest; its signed body has no such field
FORMAT = 2  # the manifest lists the deletions standing at its revision
_DOMAIN = b"appliance/backup-manifest/v1|"
KEY_OF = {BIOMETRIC_FILE: BIOMETRIC_DB, IDENTITY_FILE: IDENTITY_DB, AUDIT_FILE: AUDIT_DB, ACCOUNTS_FILE: ACCOUNTS_DB}
RESTORED = (BIOMETRIC_FILE, IDENTITY_FILE)  # the audit log is never overwritten, accounts only into an empty store
STAGING_PREFIX = ".restore-"


@dataclass(frozen=True)
class BackupFile:
    sha256: str
    bytes: int
    key: str
    key_fingerprint: str


@dataclass(frozen=True)
class DeletionMark:
    """A deletion standing when a backup was taken: the subject's tombstone, and whether its
    person record was gone too (``False``: templates expired by retention, the person kept)."""

    subject_id: str
    revision: int
    deleted_at: float
    receipt_id: str
    person: bool


@dataclass(frozen=True)
class BackupManifest:
    node: str
    taken_at: float
    biometric_revision: int
    files: dict[str, BackupFile] = field(default_factory=dict)
    format: int = FORMAT
    deletions: tuple[DeletionMark, ...] = ()

    def document(self) -> dict:
        """What ``backup.json`` holds and the signature covers (format 1: no deletions)."""
        body = asdict(self)
        if self.format <= FIRST_FORMAT:
            body.pop("deletions")
        return body

    def sign(self, signer: signing.Signs) -> str:
        """The hex signature of the manifest (``backup.sig``)."""
        return signing.sign_document(signer, _DOMAIN, self.document())

    def verify(self, public_key: Ed25519PublicKey, signature_hex: str) -> bool:
        return signing.verify_document(public_key, _DOMAIN, self.document(), signature_hex)


@dataclass(frozen=True)
class RestoreReport:
    restored: tuple[str, ...]
    redeleted: tuple[str, ...]  # subjects deleted after the backup, deleted again
    kept: tuple[str, ...] = ()  # files of the backup not restored over their live store (accounts.db)


def standing_deletions(data: ProtectedData, principal: Principal, upto: int) -> tuple[DeletionMark, ...]:
    """Every tombstone up to revision ``upto``, and whether the person record is gone too.
    Read before the stores are copied: the copies then hold each of them."""
    tombstones = data.biometric.tombstones(upto=upto)
    persons = set(data.identity.subject_ids(principal))
    return tuple(DeletionMark(t.subject_id, t.revision, t.deleted_at, t.receipt_id, t.subject_id not in persons)
                 for t in tombstones)


def create_backup(data: ProtectedData, principal: Principal, destination: Path, keys: KeyProvider,
                  accounts: AccountStore | None = None) -> BackupManifest:
    """Back up every store (biometric, identity, audit, accounts), verify the copies, list the
    standing deletions, sign."""
    require(principal, Permission.MANAGE_STORES)
    destination = Path(destination)
    if (destination / MANIFEST).exists():
        raise ApplianceError(ErrorCode.BACKUP_INVALID, f"{destination} holds a backup already")
    revision = data.biometric.revision
    deletions = standing_deletions(data, principal, revision)
    taken_at = time.time()
    written = data.backup(principal, destination)
    if accounts is not None:
        written.append(accounts.backup(destination / ACCOUNTS_FILE))
    files = {}
    for path in written:
        key = keys.get(KEY_OF[path.name])
        problems = file_integrity_problems(path, key)
        if problems:
            raise ApplianceError(ErrorCode.BACKUP_INVALID, f"{path}: {problems[0]}")
        files[path.name] = BackupFile(sha256_file(path), path.stat().st_size, key.name, key.fingerprint)
    manifest = BackupManifest(data.node.node_id, taken_at, revision, files, FORMAT, deletions)
    # the signature first, the manifest last and each whole (``durable_file``): a folder with a
    # manifest is a finished backup, and one cut by a full disk or a power loss can be taken again
    write_durably(destination / SIGNATURE, (manifest.sign(data.node.signing) + "\n").encode("ascii"), SHARED)
    write_durably(destination / MANIFEST,
                  (json.dumps(manifest.document(), indent=2, sort_keys=True) + "\n").encode("utf-8"), SHARED)
    data.audit.append(principal, "backup.create", str(destination.name), "ok",
                      f"{len(files)} stores, verified, revision {revision}, {len(deletions)} deletions listed")
    return manifest


def load_manifest(folder: Path) -> BackupManifest:
    try:
        raw = json.loads((Path(folder) / MANIFEST).read_text())
        raw["files"] = {name: BackupFile(**entry) for name, entry in raw["files"].items()}
        if raw.get("format", FIRST_FORMAT) <= FIRST_FORMAT and "deletions" in raw:
            raise ValueError("a format 1 manifest lists no deletions")  # they would not be signed
        raw["deletions"] = tuple(DeletionMark(**entry) for entry in raw.get("deletions", ()))
        return BackupManifest(**raw)
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ApplianceError(ErrorCode.BACKUP_INVALID, f"{folder}: manifest unreadable ({exc})") from None


def _signature(folder: Path) -> str:
    try:
        return (Path(folder) / SIGNATURE).read_text().strip()
    except (OSError, ValueError):  # missing or unreadable: as good as a wrong one
        return ""


def verify_backup(folder: Path, keys: KeyProvider, public_key: Ed25519PublicKey) -> BackupManifest:
    """Signature, then every file's size and hash, then every page under its key."""
    folder = Path(folder)
    manifest = load_manifest(folder)
    if not manifest.verify(public_key, _signature(folder)):  # missing, malformed or wrong: all mean "not ours"
        raise ApplianceError(ErrorCode.BACKUP_INVALID, f"{folder}: manifest signature invalid")
    for name, entry in manifest.files.items():
        path = folder / name
        if name not in KEY_OF or not path.is_file():
            raise ApplianceError(ErrorCode.BACKUP_INVALID, f"{folder}: {name} missing or unknown")
        if path.stat().st_size != entry.bytes or sha256_file(path) != entry.sha256:
            raise ApplianceError(ErrorCode.BACKUP_INVALID, f"{path}: contents differ from the signed manifest")
        problems = file_integrity_problems(path, keys.get(entry.key))
        if problems:
            raise ApplianceError(ErrorCode.BACKUP_INVALID, f"{path}: {problems[0]}")
    return manifest


def newer_manifests(folders: Iterable[Path], than: BackupManifest,
                    public_key: Ed25519PublicKey) -> list[BackupManifest]:
    """The manifests in ``folders`` signed by this node and taken after ``than``: their lists
    of deletions are the backup chain's memory. Anything unreadable or unsigned is ignored -
    it can neither delete nor spare anyone."""
    found = []
    for folder in folders:
        if not (Path(folder) / MANIFEST).is_file():
            continue
        try:
            manifest = load_manifest(folder)
        except ApplianceError:
            continue
        if manifest.taken_at > than.taken_at and manifest.verify(public_key, _signature(folder)):
            found.append(manifest)
    return found


def _siblings(folder: Path) -> list[Path]:
    """The other folders beside a backup (``appliance backup`` puts each in the backup folder)."""
    here = Path(folder).resolve()
    try:
        return [path for path in here.parent.iterdir() if path.is_dir() and path != here]
    except OSError:  # an unreadable parent hides the chain; the live stores and receipts remain
        return []


@dataclass
class _Deletions:
    subjects: dict[str, bool] = field(default_factory=dict)  # subject -> its person record goes too

    def add(self, subject_id: str, person: bool) -> None:
        self.subjects[subject_id] = self.subjects.get(subject_id, False) or person


def known_deletions(data: ProtectedData, principal: Principal, manifest: BackupManifest,
                    newer: Iterable[BackupManifest] = ()) -> _Deletions:
    """Every deletion the restore of ``manifest`` must keep, read before the live stores are
    overwritten: each tombstone standing now (a later enrollment would have removed it), with
    the person when the live identity store no longer holds them; each deletion a newer
    signed manifest lists; each signed receipt dated after the backup (a receipt dated before
    it may precede a new enrollment that the backup rightly holds)."""
    found = _Deletions()
    live_persons = set(data.identity.subject_ids(principal))
    for tomb in data.biometric.tombstones():
        found.add(tomb.subject_id, tomb.subject_id not in live_persons)
    for later in newer:
        for mark in later.deletions:
            found.add(mark.subject_id, mark.person)
    for receipt in signed_receipts(data.root / RECEIPTS_DIR, data.node.signing.public_key()):
        # receipts are dated to the second: within the backup's second, deletion wins
        if dt.datetime.fromisoformat(receipt.deleted_at).timestamp() < math.floor(manifest.taken_at):
            continue
        found.add(receipt.subject_id, any(item.store == "identity" and item.rows for item in receipt.items))
    return found


@contextmanager
def _staged(folder: Path, manifest: BackupManifest, names: Iterable[str], root: Path) -> Iterator[Path]:
    """Private copies (a 0700 folder beside the live stores) of the backup files ``names``,
    each checked against the signed manifest. SQLite opens the copies, never the backup: it
    would switch a file to WAL mode and change its bytes (and cannot on read-only media)."""
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=root))
    try:
        for name in names:
            copy = staging / name
            shutil.copyfile(folder / name, copy)
            os.chmod(copy, STORE_FILE_MODE)
            if sha256_file(copy) != manifest.files[name].sha256:
                raise ApplianceError(ErrorCode.BACKUP_INVALID, f"{folder / name}: changed since it was verified")
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _holds_accounts(store: AccountStore, data: ProtectedData, principal: Principal) -> bool:
    """Whether the live account store has any account. Listing accounts is the security
    administrator's; the restore asks under a named internal principal, as the replay does."""
    reader = Principal(f"{principal.actor}:restore", Role.SECURITY_ADMIN, principal.device)
    return bool(Accounts(store, data.audit).list(reader))


def restore_backup(data: ProtectedData, principal: Principal, folder: Path, keys: KeyProvider,
                   accounts: AccountStore | None = None, chain: Iterable[Path] | None = None) -> RestoreReport:
    """Verify, restore from private copies, then delete again whatever was deleted after the
    backup. ``chain``: the folders of the other backups (default: the restored one's siblings)."""
    require(principal, Permission.MANAGE_STORES)
    folder = Path(folder)
    public_key = data.node.signing.public_key()
    try:
        manifest = verify_backup(folder, keys, public_key)
    except ApplianceError as exc:
        data.audit.append(principal, "backup.restore", folder.name, "refused", exc.detail[-120:])
        raise
    newer = newer_manifests(_siblings(folder) if chain is None else chain, manifest, public_key)
    deletions = known_deletions(data, principal, manifest, newer)
    with_accounts = accounts is not None and ACCOUNTS_FILE in manifest.files
    restore_accounts = with_accounts and not _holds_accounts(accounts, data, principal)
    names = [name for name in RESTORED if name in manifest.files] + ([ACCOUNTS_FILE] if restore_accounts else [])
    live_revision = data.biometric.revision
    try:
        with _staged(folder, manifest, names, data.root) as staging:
            restored = data.restore(principal, staging)
            if restore_accounts:
                accounts.restore(staging / ACCOUNTS_FILE)
                restored.append(ACCOUNTS_FILE)
    except ApplianceError as exc:
        data.audit.append(principal, "backup.restore", folder.name, "refused", exc.detail[-120:])
        raise
    kept = (ACCOUNTS_FILE,) if with_accounts and not restore_accounts else ()
    # revisions only move forward: caches that saw the live store must see the re-deletions
    data.biometric.advance_revision(live_revision)
    redeleted = _replay(data, principal, deletions)
    data.identity.checkpoint()
    data.audit.append(principal, "backup.restore", folder.name, "ok",
                      f"{len(restored)} stores; {len(redeleted)} later deletions kept"
                      + ("; live accounts kept" if kept else ""))
    return RestoreReport(tuple(restored), redeleted, kept)


def _replay(data: ProtectedData, principal: Principal, deletions: _Deletions) -> tuple[str, ...]:
    """Apply each known deletion the restored stores do not already hold: templates or the
    person record back, or no tombstone to tell the device caches. The replay acts on
    deletions already decided and audited; it runs under a named internal principal so the
    log shows who restored and why the rows went."""
    replay = Principal(f"{principal.actor}:tombstone-replay", Role.SECURITY_ADMIN, principal.device)
    persons = set(data.identity.subject_ids(principal))
    done = []
    for subject_id, person in sorted(deletions.subjects.items()):
        erase_person = person and subject_id in persons
        if not (erase_person or data.biometric.rows(subject_id) or data.biometric.tombstone(subject_id) is None):
            continue  # the backup holds this deletion already
        data.biometric.delete_subject(replay, subject_id)
        if erase_person:
            data.identity.delete_person(replay, subject_id)
        data.vault.destroy(subject_id)
        data.audit.append(replay, "subject.delete", subject_id, "ok",
                          "deleted after the backup; restore keeps it deleted")
        done.append(subject_id)
    return tuple(done)

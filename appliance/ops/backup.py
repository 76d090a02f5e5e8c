"""Backups of the stores: SQLCipher online backup, a signed manifest, a verify step, and a
restore in which the tombstone log wins.

Each store is copied with SQLite's online backup API into a file encrypted under the same
store key (``CipherStore.backup``), so a backup is as unreadable as the live store without
the keys, and readers and writers carry on while it runs. ``backup.json`` lists every file's
SHA-256 and is signed with the node's Ed25519 key: a changed, swapped or truncated file, or
an edited manifest, is refused before anything live is touched.

Restoring goes back in time, but deletions must not: every subject deleted after the backup
was taken - known from the live tombstones (by revision, clock-independent) and from the
signed deletion receipts (which survive the loss of the stores) - is deleted again right
after the restore, with fresh tombstones so the device caches drop it too. The key vault is
never backed up (crypto-shredding), so deleted subjects' templates in old backups stay
unreadable in any case.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from appliance.digests import sha256_file
from appliance.errors import ApplianceError, ErrorCode
from appliance.ops.accounts import ACCOUNTS_DB, ACCOUNTS_FILE, AccountStore
from appliance.security import signing
from appliance.security.keys import AUDIT_DB, BIOMETRIC_DB, IDENTITY_DB, KeyProvider
from appliance.security.roles import Permission, Principal, Role, require
from appliance.stores.base import file_integrity_problems
from appliance.stores.deletion import load_receipt
from appliance.stores.protected import (AUDIT_FILE, BIOMETRIC_FILE, IDENTITY_FILE, RECEIPTS_DIR, ProtectedData)

MANIFEST = "backup.json"
SIGNATURE = "backup.sig"
FORMAT = 1
_DOMAIN = b"appliance/backup-manifest/v1|"
KEY_OF = {BIOMETRIC_FILE: BIOMETRIC_DB, IDENTITY_FILE: IDENTITY_DB, AUDIT_FILE: AUDIT_DB, ACCOUNTS_FILE: ACCOUNTS_DB}


@dataclass(frozen=True)
class BackupFile:
    sha256: str
    bytes: int
    key: str
    key_fingerprint: str


@dataclass(frozen=True)
class BackupManifest:
    node: str
    taken_at: float
    biometric_revision: int
    files: dict[str, BackupFile] = field(default_factory=dict)
    format: int = FORMAT

    def sign(self, signer: signing.Signs) -> str:
        """The hex signature of the manifest (``backup.sig``)."""
        return signing.sign_document(signer, _DOMAIN, asdict(self))

    def verify(self, public_key: Ed25519PublicKey, signature_hex: str) -> bool:
        return signing.verify_document(public_key, _DOMAIN, asdict(self), signature_hex)


@dataclass(frozen=True)
class RestoreReport:
    restored: tuple[str, ...]
    redeleted: tuple[str, ...]  # subjects deleted after the backup, deleted again


def create_backup(data: ProtectedData, principal: Principal, destination: Path, keys: KeyProvider,
                  accounts: AccountStore | None = None) -> BackupManifest:
    """Back up every store (biometric, identity, audit, accounts), verify the copies, sign."""
    destination = Path(destination)
    if (destination / MANIFEST).exists():
        raise ApplianceError(ErrorCode.BACKUP_INVALID, f"{destination} holds a backup already")
    revision = data.biometric.revision
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
    manifest = BackupManifest(data.node.node_id, taken_at, revision, files)
    (destination / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n")
    (destination / SIGNATURE).write_text(manifest.sign(data.node.signing) + "\n")
    data.audit.append(principal, "backup.create", str(destination.name), "ok",
                      f"{len(files)} stores, verified, revision {revision}")
    return manifest


def load_manifest(folder: Path) -> BackupManifest:
    try:
        raw = json.loads((Path(folder) / MANIFEST).read_text())
        raw["files"] = {name: BackupFile(**entry) for name, entry in raw["files"].items()}
        return BackupManifest(**raw)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ApplianceError(ErrorCode.BACKUP_INVALID, f"{folder}: manifest unreadable ({exc})") from None


def verify_backup(folder: Path, keys: KeyProvider, public_key: Ed25519PublicKey) -> BackupManifest:
    """Signature, then every file's size and hash, then every page under its key."""
    folder = Path(folder)
    manifest = load_manifest(folder)
    try:
        signature = (folder / SIGNATURE).read_text().strip()
    except (OSError, ValueError):  # missing or unreadable: as good as a wrong one
        signature = ""
    if not manifest.verify(public_key, signature):  # missing, malformed or wrong: all mean "not ours"
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


@dataclass
class _Deletions:
    subjects: set[str] = field(default_factory=set)
    persons: set[str] = field(default_factory=set)  # identity records to remove too


def deleted_since(data: ProtectedData, manifest: BackupManifest, principal: Principal) -> _Deletions:
    """Subjects deleted after the backup: live tombstones newer than its revision, and
    signed deletion receipts dated after it (these survive losing the stores)."""
    found = _Deletions()
    live_persons = set(data.identity.subject_ids(principal))
    for tomb in data.biometric.tombstones(after=manifest.biometric_revision):
        found.subjects.add(tomb.subject_id)
        if tomb.subject_id not in live_persons:
            found.persons.add(tomb.subject_id)
    public_key = data.node.signing.public_key()
    for path in sorted((data.root / RECEIPTS_DIR).glob("*.json")):
        receipt = load_receipt(path)
        if not receipt.verify(public_key):
            continue  # an unsigned or edited receipt decides nothing
        # receipts are dated to the second: within the backup's second, deletion wins
        if dt.datetime.fromisoformat(receipt.deleted_at).timestamp() < math.floor(manifest.taken_at):
            continue
        found.subjects.add(receipt.subject_id)
        if any(item.store == "identity" and item.rows for item in receipt.items):
            found.persons.add(receipt.subject_id)
    return found


def restore_backup(data: ProtectedData, principal: Principal, folder: Path, keys: KeyProvider,
                   accounts: AccountStore | None = None) -> RestoreReport:
    """Verify, restore, then delete again whatever was deleted after the backup."""
    require(principal, Permission.MANAGE_STORES)
    folder = Path(folder)
    try:
        manifest = verify_backup(folder, keys, data.node.signing.public_key())
    except ApplianceError as exc:
        data.audit.append(principal, "backup.restore", folder.name, "refused", exc.detail[-120:])
        raise
    deletions = deleted_since(data, manifest, principal)
    live_revision = data.biometric.revision
    restored = data.restore(principal, folder)
    if accounts is not None and ACCOUNTS_FILE in manifest.files:
        accounts.restore(folder / ACCOUNTS_FILE)
        restored.append(ACCOUNTS_FILE)
    # revisions only move forward: caches that saw the live store must see the re-deletions
    data.biometric.advance_revision(live_revision)
    # the replay acts on deletions already decided and audited; it runs under a named
    # internal principal so the log shows who restored and why the rows went
    replay = Principal(f"{principal.actor}:tombstone-replay", Role.SECURITY_ADMIN, principal.device)
    for subject_id in sorted(deletions.subjects):
        data.biometric.delete_subject(replay, subject_id)
        if subject_id in deletions.persons:
            data.identity.delete_person(replay, subject_id)
        data.vault.destroy(subject_id)
        data.audit.append(replay, "subject.delete", subject_id, "ok",
                          "deleted after the backup; restore keeps it deleted")
    data.identity.checkpoint()
    data.audit.append(principal, "backup.restore", folder.name, "ok",
                      f"{len(restored)} stores; {len(deletions.subjects)} later deletions kept")
    return RestoreReport(tuple(restored), tuple(sorted(deletions.subjects)))

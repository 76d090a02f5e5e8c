"""Backup -> delete -> restore keeps the deletion; tampered backups are refused untouched."""
from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from appliance.digests import sha256_file
from appliance.errors import ApplianceError, ErrorCode
from appliance.ops import totp
from appliance.ops.accounts import ACCOUNTS_FILE, Accounts, AccountStore
from appliance.ops.backup import MANIFEST, SIGNATURE, create_backup, restore_backup, verify_backup
from appliance.security import signing
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person
from appliance.security.roles import Principal, Role
from appliance.stores.audit import SECONDS_PER_DAY
from appliance.stores.protected import BIOMETRIC_FILE, IDENTITY_FILE, RECEIPTS_DIR, ProtectedData
from appliance.vision.templates import Template
from diskkit import fill, small_disk

OPERATOR = Principal("op-1", Role.OPERATOR)
SYSADMIN = Principal("sys-1", Role.SYSTEM_ADMIN)
SECADMIN = Principal("sec-1", Role.SECURITY_ADMIN)
AUDITOR = Principal("aud-1", Role.AUDITOR)
PACK = ("w600k-mbf", "1.0.0")


def _enroll(data: ProtectedData, subject_id: str, name: str, seed: int) -> None:
    data.register_person(OPERATOR, Person(subject_id, name, AgeBand.ADULT, Alternative.CARD))
    data.record_consent(OPERATOR, ConsentRecord(subject_id, ENROLL_SCOPE, "v1", 1.0, name))
    vector = np.random.default_rng(seed).normal(size=512).astype(np.float32)
    data.enroll(OPERATOR, subject_id, Template(vector / np.linalg.norm(vector), *PACK), np.ones(4, np.float32))


def _persons(data):
    return {r[0] for r in data.identity.execute("SELECT subject_id FROM persons")}


def _templated(data):
    return {row.subject_id for row in data.biometric.rows()}


@pytest.fixture
def filled(data):
    _enroll(data, "s-alice", "Alice Example", 1)
    _enroll(data, "s-bob", "Bob Example", 2)
    return data


def test_backup_delete_restore_keeps_the_subject_deleted(filled, keys, tmp_path):
    data = filled
    manifest = create_backup(data, SYSADMIN, tmp_path / "bk", keys)
    assert set(manifest.files) == {"biometric.db", "identity.db", "audit.db"}
    assert verify_backup(tmp_path / "bk", keys, data.node.signing.public_key()) == manifest
    data.delete_subject(SECADMIN, "s-alice")
    _enroll(data, "s-carol", "Carol Example", 3)  # after the backup: gone after restore
    revision_before = data.biometric.revision

    report = restore_backup(data, SYSADMIN, tmp_path / "bk", keys)

    assert report.redeleted == ("s-alice",)
    assert _persons(data) == {"s-bob"} and _templated(data) == {"s-bob"}
    assert data.biometric.template(Principal("m", Role.OPERATOR), "s-bob", *PACK, data.vault).vector.shape == (512,)
    rows, tombs = data.biometric.changes_since(revision_before)
    assert "s-alice" in {t.subject_id for t in tombs}  # device caches are told again
    assert data.audit.verify(AUDITOR).ok
    actions = [(e.action, e.object, e.result) for e in data.audit.entries()]
    assert ("backup.restore", "bk", "ok") in actions and ("subject.delete", "s-alice", "ok") in actions


def test_a_backup_onto_a_full_disk_is_e213_and_can_be_taken_again_there(filled, keys, tmp_path):
    """A backup medium that fills up: refused with E213 (no bare OSError), nothing in the folder
    claims to be a backup, and once there is room the same folder takes the backup."""
    with small_disk(tmp_path / "medium", 1024 * 1024) as medium:
        filler = fill(medium)
        with pytest.raises(ApplianceError) as refused:
            create_backup(filled, SYSADMIN, medium / "bk", keys)
        assert refused.value.code is ErrorCode.STORE_UNWRITABLE, refused.value
        assert not (medium / "bk" / MANIFEST).exists()
        filler.unlink()
        manifest = create_backup(filled, SYSADMIN, medium / "bk", keys)
        assert verify_backup(medium / "bk", keys, filled.node.signing.public_key()) == manifest


def test_receipts_keep_the_deletion_when_the_live_stores_are_lost(filled, keys, tmp_path):
    data = filled
    create_backup(data, SYSADMIN, tmp_path / "bk", keys)
    data.delete_subject(SECADMIN, "s-alice")
    data.close()
    for name in (BIOMETRIC_FILE, IDENTITY_FILE):  # the disk with the stores died
        for path in (tmp_path / "data").glob(name + "*"):
            path.unlink()
    with ProtectedData(tmp_path / "data", keys) as fresh:
        assert _persons(fresh) == set()
        report = restore_backup(fresh, SYSADMIN, tmp_path / "bk", keys)
        assert report.redeleted == ("s-alice",)
        assert _persons(fresh) == {"s-bob"} and _templated(fresh) == {"s-bob"}


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "swap files", "edit manifest"])
def test_a_tampered_backup_is_refused_and_nothing_changes(filled, keys, tmp_path, damage):
    data = filled
    folder = tmp_path / "bk"
    create_backup(data, SYSADMIN, folder, keys)
    data.delete_subject(SECADMIN, "s-bob")
    target = folder / IDENTITY_FILE
    if damage == "flip a byte":
        raw = bytearray(target.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        target.write_bytes(bytes(raw))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:-4096])
    elif damage == "swap files":
        shutil.copy(folder / BIOMETRIC_FILE, target)
    else:  # make the manifest match a changed file: the signature no longer does
        raw = bytearray(target.read_bytes())
        raw[-100] ^= 0x01
        target.write_bytes(bytes(raw))
        import hashlib
        manifest = json.loads((folder / MANIFEST).read_text())
        manifest["files"][IDENTITY_FILE]["sha256"] = hashlib.sha256(bytes(raw)).hexdigest()
        (folder / MANIFEST).write_text(json.dumps(manifest))
    before = (_persons(data), _templated(data))
    with pytest.raises(ApplianceError) as refused:
        restore_backup(data, SYSADMIN, folder, keys)
    assert refused.value.code is ErrorCode.BACKUP_INVALID
    assert (_persons(data), _templated(data)) == before
    assert data.audit.entries()[-1].result == "refused"


def test_backups_are_encrypted_and_only_admins_restore(filled, keys, tmp_path):
    data = filled
    create_backup(data, SYSADMIN, tmp_path / "bk", keys)
    for path in (tmp_path / "bk").glob("*.db"):
        head = path.read_bytes()
        assert not head.startswith(b"SQLite format 3") and b"Alice" not in head
    with pytest.raises(ApplianceError) as denied:
        restore_backup(data, OPERATOR, tmp_path / "bk", keys)
    assert denied.value.code is ErrorCode.PERMISSION_DENIED


# -- issue 12, finding 6: restore never rolls back accounts or deletions; backups stay unchanged --

PASSWORD = "Vq7#Lantern-Ferry-Quartz-93!"


def _sha256s(folder):
    return {path.name: sha256_file(path) for path in sorted(folder.iterdir())}


def test_restore_never_brings_back_a_disabled_account(filled, accounts, clock, keys, tmp_path):
    """An administrator leaves: her account is disabled after the last backup. A restore must
    not enable it again (nor forget an account created since): accounts.db is never rolled back."""
    accounts.bootstrap("sec-admin", PASSWORD)
    admin = Principal("sec-admin", Role.SECURITY_ADMIN)
    ann = accounts.create(admin, "op-ann", "operator", PASSWORD)
    create_backup(filled, SYSADMIN, tmp_path / "bk", keys, accounts.store)
    accounts.set_disabled(admin, "op-ann", True)
    accounts.create(admin, "op-ben", "operator", PASSWORD)

    report = restore_backup(filled, SYSADMIN, tmp_path / "bk", keys, accounts.store)

    assert accounts.get("op-ann").disabled and accounts.get("op-ben") is not None
    assert ACCOUNTS_FILE not in report.restored and ACCOUNTS_FILE in report.kept
    with pytest.raises(ApplianceError) as refused:  # her old password and second factor stay useless
        accounts.login("op-ann", PASSWORD, totp.totp(ann.totp_secret, clock.now))
    assert refused.value.code is ErrorCode.LOGIN_FAILED


def test_accounts_come_back_only_into_an_empty_account_store(filled, accounts, keys, tmp_path):
    """The disk with accounts.db died: a fresh, empty account store takes the backup's accounts."""
    accounts.bootstrap("sec-admin", PASSWORD)
    create_backup(filled, SYSADMIN, tmp_path / "bk", keys, accounts.store)
    with AccountStore.open(tmp_path / "new-disk" / ACCOUNTS_FILE, keys) as fresh:
        report = restore_backup(filled, SYSADMIN, tmp_path / "bk", keys, fresh)
        assert ACCOUNTS_FILE in report.restored
        assert Accounts(fresh, filled.audit).get("sec-admin").role is Role.SECURITY_ADMIN


def test_a_backup_is_never_changed_by_a_restore_and_restores_again(filled, accounts, keys, tmp_path):
    """Restoring must read the backup, not open it for writing (no WAL conversion, no -wal or
    -shm beside it): the same backup restores twice and its files keep their hashes."""
    folder = tmp_path / "bk"
    create_backup(filled, SYSADMIN, folder, keys, accounts.store)
    before = _sha256s(folder)
    for _ in range(2):
        restore_backup(filled, SYSADMIN, folder, keys, accounts.store)
        assert _sha256s(folder) == before
    assert not list(filled.root.glob(".restore-*"))  # the private staging copies are gone


def test_losing_receipts_does_not_bring_back_a_deleted_person(filled, keys, tmp_path):
    """Retention expired the templates (the person record stays, the tombstone is written);
    the backup is taken; then the person is deleted - no new tombstone, the proof only in
    receipts/. With receipts/ lost, the restore must still not bring the person back."""
    data = filled
    later = time.time() + (data.security.template_retention_days + 1) * SECONDS_PER_DAY
    data.run_retention(SYSADMIN, now=later)
    assert _templated(data) == set() and _persons(data) == {"s-alice", "s-bob"}
    create_backup(data, SYSADMIN, tmp_path / "bk", keys)
    data.delete_subject(SECADMIN, "s-alice")
    shutil.rmtree(data.root / RECEIPTS_DIR)

    report = restore_backup(data, SYSADMIN, tmp_path / "bk", keys)

    assert _persons(data) == {"s-bob"} and report.redeleted == ("s-alice",)


def test_a_newer_backup_keeps_a_deletion_when_stores_and_receipts_are_lost(filled, keys, tmp_path):
    """Deletions travel in the signed backup chain: restoring an older backup after losing the
    live stores and receipts/ still keeps deleted whoever a newer backup's manifest lists."""
    data = filled
    backups = tmp_path / "backups"
    create_backup(data, SYSADMIN, backups / "20260101T000000Z", keys)
    data.delete_subject(SECADMIN, "s-alice")
    newer = create_backup(data, SYSADMIN, backups / "20260102T000000Z", keys)
    assert [(d.subject_id, d.person) for d in newer.deletions] == [("s-alice", True)]
    data.close()
    for name in (BIOMETRIC_FILE, IDENTITY_FILE):  # the disk with the stores and receipts died
        for path in (tmp_path / "data").glob(name + "*"):
            path.unlink()
    shutil.rmtree(tmp_path / "data" / RECEIPTS_DIR)
    with ProtectedData(tmp_path / "data", keys) as fresh:
        report = restore_backup(fresh, SYSADMIN, backups / "20260101T000000Z", keys)
        assert report.redeleted == ("s-alice",)
        assert _persons(fresh) == {"s-bob"} and _templated(fresh) == {"s-bob"}
        assert fresh.biometric.tombstone("s-alice") is not None  # device caches are told


def test_an_unsigned_newer_manifest_deletes_nobody(filled, keys, tmp_path):
    """Only a manifest signed by this node counts: an edited one naming someone is ignored."""
    data = filled
    backups = tmp_path / "backups"
    create_backup(data, SYSADMIN, backups / "1", keys)
    create_backup(data, SYSADMIN, backups / "2", keys)
    forged = json.loads((backups / "2" / MANIFEST).read_text())
    forged["deletions"] = [{"subject_id": "s-bob", "revision": 99, "deleted_at": 1.0, "receipt_id": "",
                            "person": True}]
    (backups / "2" / MANIFEST).write_text(json.dumps(forged))
    report = restore_backup(data, SYSADMIN, backups / "1", keys)
    assert report.redeleted == () and _persons(data) == {"s-alice", "s-bob"}


def test_a_backup_with_a_format_1_manifest_still_verifies_and_restores(filled, keys, tmp_path):
    """Backups written before the manifest carried deletions keep their signatures."""
    data = filled
    folder = tmp_path / "bk"
    create_backup(data, SYSADMIN, folder, keys)
    raw = json.loads((folder / MANIFEST).read_text())
    del raw["deletions"]
    raw["format"] = 1
    (folder / MANIFEST).write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    (folder / SIGNATURE).write_text(signing.sign_document(data.node.signing, b"appliance/backup-manifest/v1|", raw))
    assert verify_backup(folder, keys, data.node.signing.public_key()).format == 1
    data.delete_subject(SECADMIN, "s-alice")
    assert restore_backup(data, SYSADMIN, folder, keys).redeleted == ("s-alice",)


def test_junk_in_receipts_neither_stops_a_restore_nor_deletes_anyone(filled, keys, tmp_path):
    """Whoever can write receipts/ can neither block a restore nor forge a deletion."""
    data = filled
    create_backup(data, SYSADMIN, tmp_path / "bk", keys)
    data.delete_subject(SECADMIN, "s-alice")
    receipts = data.root / RECEIPTS_DIR
    (receipts / "junk.json").write_text("not json")
    (receipts / "list.json").write_text("[1, 2]")
    (real,) = [p for p in receipts.glob("*.json") if p.name not in ("junk.json", "list.json")]
    forged = json.loads(real.read_text()) | {"subject_id": "s-bob", "receipt_id": "f" * 16}  # signature kept
    (receipts / "forged.json").write_text(json.dumps(forged))
    report = restore_backup(data, SYSADMIN, tmp_path / "bk", keys)
    assert report.redeleted == ("s-alice",) and _persons(data) == {"s-bob"}

"""Backup -> delete -> restore keeps the deletion; tampered backups are refused untouched."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from appliance.errors import ApplianceError, ErrorCode
from appliance.ops.backup import MANIFEST, create_backup, restore_backup, verify_backup
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person
from appliance.security.roles import Principal, Role
from appliance.stores.protected import BIOMETRIC_FILE, IDENTITY_FILE, ProtectedData
from appliance.vision.templates import Template

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

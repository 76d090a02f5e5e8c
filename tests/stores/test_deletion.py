"""Deletion that really deletes, crypto-shredding against old backups, consent withdrawal,
retention, role checks, and the device cache following tombstones."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from appliance.config import SecurityConfig
from appliance.errors import ApplianceError, ErrorCode
from appliance.stores.audit import SECONDS_PER_DAY
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.keys import CACHE_DB
from appliance.security.roles import Role
from appliance.stores.deletion import SubjectAlreadyDeleted, load_receipt
from appliance.stores.device import DeviceCache, Outbox
from appliance.stores.protected import RECEIPTS_DIR, ProtectedData
from appliance.vision.templates import Template, normalise

PACK = ("w600k-mbf", "1.0")
DIM = 512


def template(seed: int) -> Template:
    return Template(normalise(np.random.default_rng(seed).normal(size=DIM)), *PACK)


@pytest.fixture
def data(tmp_path, keys):
    protected = ProtectedData(tmp_path / "node", keys, SecurityConfig(audit_checkpoint_every=10))
    yield protected
    protected.close()


def enroll(data: ProtectedData, principals, name: str = "张三", seed: int = 1) -> str:
    operator = principals[Role.OPERATOR]
    subject = new_subject_id()
    data.register_person(operator, Person(subject, name, AgeBand.ADULT, Alternative.CARD, phone="13812345678"))
    data.record_consent(operator, ConsentRecord(subject, ENROLL_SCOPE, "v3", time.time(), name))
    data.enroll(operator, subject, template(seed), np.array([0.9, 0.8], np.float32))
    return subject


def test_deleting_a_subject_removes_identity_template_and_data_key(data, principals, tmp_path):
    subject = enroll(data, principals)
    keep = enroll(data, principals, "李四", seed=2)
    before = data.backup(principals[Role.SYSTEM_ADMIN], tmp_path / "backup")
    receipt = data.delete_subject(principals[Role.SECURITY_ADMIN], subject)

    with pytest.raises(ApplianceError) as info:
        data.identity.person(principals[Role.SECURITY_ADMIN], subject)
    assert info.value.code is ErrorCode.SUBJECT_NOT_FOUND
    assert data.biometric.rows(subject) == [] and not data.vault.has_key(subject)
    assert data.identity.consents(principals[Role.OPERATOR], subject) == []

    # the receipt: signed, says what went where, carries no personal data beyond the pseudonym
    saved = load_receipt(tmp_path / "node" / RECEIPTS_DIR / f"{receipt.receipt_id}.json")
    assert saved == receipt and saved.verify(data.node.signing.public_key())
    assert {(i.store, i.rows > 0) for i in saved.items} == {("identity", True), ("biometric", True), ("keyvault", True)}
    text = saved.to_json()
    assert "张三" not in text and "13812345678" not in text and subject in text
    assert any(e.action == "subject.delete" and e.object == subject for e in data.audit.entries())
    assert data.audit.verify(principals[Role.AUDITOR]).ok
    _, tombstones = data.biometric.changes_since(0)
    assert [t.subject_id for t in tombstones] == [subject] and tombstones[0].revision == receipt.tombstone_revision

    # a backup from before the deletion still holds the row, but nothing can decrypt it
    data.restore(principals[Role.SYSTEM_ADMIN], before[0].parent)
    assert len(data.biometric.rows(subject)) == 1
    with pytest.raises(ApplianceError) as info:
        data.biometric.template(principals[Role.OPERATOR], subject, *PACK, data.vault)
    assert info.value.code is ErrorCode.TEMPLATE_SHREDDED
    assert data.verify(principals[Role.OPERATOR], keep, template(2), threshold=0.5)


def test_withdrawing_consent_deletes(data, principals):
    subject = enroll(data, principals)
    receipt = data.withdraw_consent(principals[Role.OPERATOR], subject)
    assert receipt.reason == "consent withdrawn" and data.biometric.rows(subject) == []
    assert not data.vault.has_key(subject)
    assert [e.action for e in data.audit.entries()][-2:] == ["consent.withdraw", "subject.delete"]


def test_enrollment_without_consent_is_refused_and_logged(data, principals):
    operator = principals[Role.OPERATOR]
    subject = new_subject_id()
    data.register_person(operator, Person(subject, "王五", AgeBand.ADULT, Alternative.PIN))
    with pytest.raises(ApplianceError) as info:
        data.enroll(operator, subject, template(3), np.ones(2, np.float32))
    assert info.value.code is ErrorCode.CONSENT_MISSING
    assert data.biometric.rows(subject) == [] and data.audit.entries()[-1].result == "refused"


def test_roles_are_checked_on_every_personal_data_call(data, principals):
    subject = enroll(data, principals)
    denied = [
        lambda: data.delete_subject(principals[Role.OPERATOR], subject),
        lambda: data.delete_subject(principals[Role.AUDITOR], subject),
        lambda: data.people(principals[Role.AUDITOR]),
        lambda: data.people(principals[Role.SYSTEM_ADMIN]),
        lambda: data.enroll(principals[Role.SECURITY_ADMIN], subject, template(1), np.ones(2, np.float32)),
        lambda: data.verify(principals[Role.AUDITOR], subject, template(1), 0.5),
        lambda: data.reveal(principals[Role.OPERATOR], subject),
        lambda: data.identity.person(principals[Role.SYSTEM_ADMIN], subject),
        lambda: data.biometric.template(principals[Role.AUDITOR], subject, *PACK, data.vault),
        lambda: data.run_retention(principals[Role.AUDITOR]),
    ]
    for call in denied:
        with pytest.raises(ApplianceError) as info:
            call()
        assert info.value.code is ErrorCode.PERMISSION_DENIED
    assert data.people(principals[Role.OPERATOR])[0]["name"] == "张*"
    assert data.reveal(principals[Role.SECURITY_ADMIN], subject)["name"] == "张三"


def test_retention_expires_old_templates_and_prunes_the_audit_log(data, principals, tmp_path, keys):
    subject = enroll(data, principals)
    outbox = Outbox.open(tmp_path / "outbox.db", keys)
    outbox.enqueue("access", b"sealed")
    for _ in range(25):
        data.verify(principals[Role.OPERATOR], subject, template(1), 0.5)
    later = time.time() + (data.security.template_retention_days + 1) * SECONDS_PER_DAY
    report = data.run_retention(principals[Role.SYSTEM_ADMIN], now=later, outbox=outbox)
    assert report.events_pruned == 1 and outbox.pending() == []
    assert report.templates_expired == 1 and report.receipts[0].reason == "retention"
    assert data.biometric.rows(subject) == [] and not data.vault.has_key(subject)
    assert report.audit_entries_pruned > 0 and data.audit.verify(principals[Role.AUDITOR]).ok


def test_device_cache_follows_upserts_and_tombstones(data, principals, tmp_path, keys):
    a, b = enroll(data, principals), enroll(data, principals, "李四", seed=2)
    cache = DeviceCache.open(tmp_path / "door" / "cache.db", keys)
    sync = principals[Role.SYSTEM_ADMIN]

    def catch_up() -> None:
        upserts, tombstones = data.biometric.changes_since(cache.revision)
        cache.apply([(r.subject_id, data.biometric.template(sync, r.subject_id, r.pack_id, r.pack_version, data.vault),
                      r.revision) for r in upserts],
                    [(t.subject_id, t.revision) for t in tombstones], data.biometric.revision)

    catch_up()
    assert cache.subject_ids() == sorted([a, b]) and cache.revision == data.biometric.revision
    data.delete_subject(principals[Role.SECURITY_ADMIN], a)
    catch_up()
    ids, vectors = cache.gallery(*PACK)
    assert ids == [b] and np.allclose(vectors[0], template(2).vector)
    assert CACHE_DB == cache.KEY_NAME
    cache.close()


def test_people_listing_is_masked_json(data, principals):
    enroll(data, principals, "Zhang San")
    listing = json.dumps(data.people(principals[Role.OPERATOR]), ensure_ascii=False)
    assert "Zhang San" not in listing and "Z**** S**" in listing and "13812345678" not in listing


def test_wrap_key_rotation_interrupted_before_the_key_switch_recovers(data, principals, keys, tmp_path):
    from appliance.security.keys import TEMPLATE_WRAP, generate_key
    from appliance.stores.keyvault import KeyVault
    from appliance.stores.protected import KEYVAULT_FILE

    subject = enroll(data, principals)
    new = generate_key(TEMPLATE_WRAP)
    keys.stage(new)
    data.vault.rewrap(new)  # "crash" now: rows re-wrapped, key file not yet switched
    data.vault.close()
    data.vault = KeyVault.open_with(tmp_path / "node" / KEYVAULT_FILE, keys)
    assert keys.get(TEMPLATE_WRAP) == new and keys.staged(TEMPLATE_WRAP) is None
    assert data.verify(principals[Role.OPERATOR], subject, template(1), threshold=0.5)


# -- deleting what is not there ------------------------------------------------------------
def receipt_files(tmp_path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "node" / RECEIPTS_DIR).glob("*.json"))


def test_deleting_an_unknown_subject_is_an_error_and_writes_nothing(data, principals, tmp_path):
    enroll(data, principals)
    revision, receipts = data.biometric.revision, receipt_files(tmp_path)
    unknown = new_subject_id()
    for call in (lambda: data.delete_subject(principals[Role.SECURITY_ADMIN], unknown),
                 lambda: data.withdraw_consent(principals[Role.OPERATOR], unknown)):
        with pytest.raises(ApplianceError) as info:
            call()
        assert info.value.code is ErrorCode.SUBJECT_NOT_FOUND and unknown in str(info.value)
    assert data.biometric.revision == revision and data.biometric.tombstone(unknown) is None
    assert data.biometric.changes_since(0)[1] == [] and receipt_files(tmp_path) == receipts
    refused = [e for e in data.audit.entries() if e.object == unknown]
    assert [(e.action, e.result) for e in refused] == [("subject.delete", "refused"), ("consent.withdraw", "refused")]


def test_deleting_twice_names_the_first_receipt_and_changes_nothing(data, principals, tmp_path):
    subject = enroll(data, principals)
    first = data.delete_subject(principals[Role.SECURITY_ADMIN], subject)
    revision, receipts = data.biometric.revision, receipt_files(tmp_path)
    assert receipts == [f"{first.receipt_id}.json"]
    assert data.biometric.tombstone(subject).receipt_id == first.receipt_id
    for call in (lambda: data.delete_subject(principals[Role.SECURITY_ADMIN], subject),
                 lambda: data.withdraw_consent(principals[Role.OPERATOR], subject)):
        with pytest.raises(SubjectAlreadyDeleted) as info:
            call()
        assert info.value.code is ErrorCode.SUBJECT_ALREADY_DELETED and info.value.receipt_id == first.receipt_id
        assert "already deleted" in str(info.value) and first.receipt_id in str(info.value)
    assert data.biometric.revision == revision and receipt_files(tmp_path) == receipts
    assert data.audit.entries()[-1].result == "refused" and data.audit.verify(principals[Role.AUDITOR]).ok


def test_deleting_a_person_whose_templates_expired_keeps_the_tombstone(data, principals, tmp_path):
    """Retention erased the template (tombstone, receipt) and kept the person; deleting the
    person is a real deletion with its own receipt, and no new revision for the caches."""
    subject = enroll(data, principals)
    later = time.time() + (data.security.template_retention_days + 1) * SECONDS_PER_DAY
    (expired,) = data.run_retention(principals[Role.SYSTEM_ADMIN], now=later).receipts
    revision = data.biometric.revision
    deleted = data.delete_subject(principals[Role.SECURITY_ADMIN], subject)
    assert {i.store: i.rows for i in deleted.items} == {"identity": 2, "biometric": 0, "keyvault": 0}
    assert deleted.tombstone_revision == expired.tombstone_revision and data.biometric.revision == revision
    with pytest.raises(SubjectAlreadyDeleted) as info:
        data.delete_subject(principals[Role.SECURITY_ADMIN], subject)
    assert info.value.receipt_id == deleted.receipt_id


def test_a_tombstone_replayed_by_a_restore_still_finds_the_first_receipt(data, principals, tmp_path, keys):
    from appliance.ops.backup import create_backup, restore_backup

    subject = enroll(data, principals)
    create_backup(data, principals[Role.SYSTEM_ADMIN], tmp_path / "backup", keys)
    first = data.delete_subject(principals[Role.SECURITY_ADMIN], subject)
    assert restore_backup(data, principals[Role.SYSTEM_ADMIN], tmp_path / "backup", keys).redeleted == (subject,)
    assert data.biometric.tombstone(subject).receipt_id == ""  # the replay issues no receipt of its own
    with pytest.raises(SubjectAlreadyDeleted) as info:
        data.delete_subject(principals[Role.SECURITY_ADMIN], subject)
    assert info.value.receipt_id == first.receipt_id and receipt_files(tmp_path) == [f"{first.receipt_id}.json"]


def test_receipt_retention_removes_only_this_nodes_signed_receipts_past_their_limit(data, principals, tmp_path):
    from appliance.stores.deletion import oldest_receipt_time, prune_receipts, receipt_time

    receipt = data.delete_subject(principals[Role.SECURITY_ADMIN], enroll(data, principals))
    folder = tmp_path / "node" / RECEIPTS_DIR
    (folder / "notes.json").write_text('{"not": "a receipt"}')
    key = data.node.signing.public_key()
    assert oldest_receipt_time(folder, key) == receipt_time(receipt)
    assert prune_receipts(folder, key, receipt_time(receipt)) == 0  # not before its own time
    assert prune_receipts(folder, key, receipt_time(receipt) + 1) == 1
    assert not (folder / f"{receipt.receipt_id}.json").exists() and (folder / "notes.json").exists()
    assert oldest_receipt_time(folder, key) is None

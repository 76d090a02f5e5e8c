"""One signing helper for every signed document, and the formats it must keep.

For each document the test signs the bytes the way the code did before the helper (domain
literal + the old body, written out here rather than taken from the code under test) and
checks that the new code accepts that signature; Ed25519 is deterministic, so the new code
must also produce the very same signature over the same document.
"""
from __future__ import annotations

import io
import json
import math
import tarfile
from dataclasses import asdict, replace

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.errors import ApplianceError, ErrorCode
from appliance.security import signing

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC = KEY.public_key()
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33))).public_key()


def _old_json(document) -> bytes:
    """The canonical JSON every document used before the helper (ASCII-escaped)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode("utf-8")


# -- the helper --------------------------------------------------------------------------

def test_a_signature_of_one_domain_is_not_accepted_for_another():
    body = signing.canonical_json({"a": 1})
    signature = signing.sign(KEY, b"appliance/one/v1|", body)
    assert signing.verify(PUBLIC, b"appliance/one/v1|", body, signature)
    assert not signing.verify(PUBLIC, b"appliance/two/v1|", body, signature)
    assert not signing.verify(OTHER, b"appliance/one/v1|", body, signature)
    assert not signing.verify(PUBLIC, signing.NO_DOMAIN, body, signature)


def test_domains_end_with_a_bar_and_only_json_objects_go_without_one():
    with pytest.raises(ValueError):
        signing.signed_bytes(b"appliance/one/v1", b"{}")
    with pytest.raises(ValueError):
        signing.signed_bytes(signing.NO_DOMAIN, b"appliance/one/v1|{}")  # a prefixed message, unprefixed
    assert signing.signed_bytes(signing.NO_DOMAIN, b'{"a":1}') == b'{"a":1}'
    assert not signing.verify(PUBLIC, signing.NO_DOMAIN, b"FAEV", KEY.sign(b"FAEV"))


def test_verify_document_never_raises():
    signature = signing.sign_document(KEY, b"appliance/one/v1|", {"x": 1.5})
    assert signing.verify_document(PUBLIC, b"appliance/one/v1|", {"x": 1.5}, signature)
    assert not signing.verify_document(PUBLIC, b"appliance/one/v1|", {"x": math.nan}, signature)
    assert not signing.verify_document(PUBLIC, b"appliance/one/v1|", {"x": object()}, signature)
    assert not signing.verify_document(PUBLIC, b"appliance/one/v1|", {"x": 1.5}, "not hex")
    assert not signing.verify_document(PUBLIC, b"appliance/one/v1|", {"x": 1.5}, None)
    assert not signing.verify_document(PUBLIC, b"appliance/one/v1|", {"x": 1.5}, "")


# -- deletion receipts (stores/deletion.py) ----------------------------------------------

def _receipt():
    from appliance.stores.deletion import DeletedItem, DeletionReceipt

    return DeletionReceipt(
        receipt_id="0123456789abcdef", subject_id="s-" + "ab" * 16, reason="consent withdrawn",
        deleted_at="2026-01-02T03:04:05+00:00", node="matcher-1", actor="管理员-zhang",
        items=(DeletedItem("identity", "person record and consent records", 1),
               DeletedItem("biometric", "templates", 2), DeletedItem("keyvault", "per-subject data key", 1)),
        tombstone_revision=42)


def test_deletion_receipt_format_is_kept(tmp_path):
    from appliance.stores.deletion import load_receipt

    receipt = _receipt()
    body = asdict(receipt)
    body.pop("signature")
    old = KEY.sign(b"appliance/deletion-receipt/v1|" + _old_json(body)).hex()
    signed = receipt.signed(KEY)
    assert signed.signature == old
    assert signed.verify(PUBLIC) and not signed.verify(OTHER)
    path = tmp_path / "receipt.json"  # a receipt file written by the old code reads back and verifies
    path.write_text(json.dumps({**asdict(receipt), "signature": old}, indent=2, ensure_ascii=False) + "\n")
    loaded = load_receipt(path)
    assert loaded == signed and loaded.verify(PUBLIC)
    assert not replace(loaded, tombstone_revision=43).verify(PUBLIC)


def test_an_edited_receipt_is_invalid_not_an_error(tmp_path):
    from appliance.stores.deletion import load_receipt

    signed = _receipt().signed(KEY)
    data = json.loads(signed.to_json())
    data["tombstone_revision"] = math.inf  # json writes Infinity; the old code would have said "invalid"
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(data))
    assert load_receipt(path).verify(PUBLIC) is False


# -- release packages (ops/updates.py) ---------------------------------------------------

def _old_package(path, release_document: bytes, signature_hex: str, payload: dict[str, bytes]) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        members = [("RELEASE.json", release_document), ("RELEASE.sig", signature_hex.encode())]
        members += [(f"payload/{name}", data) for name, data in payload.items()]
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_release_format_is_kept(tmp_path):
    import hashlib

    from appliance.ops.publishing import build_package
    from appliance.ops.updates import Release, verify_package

    payload = {"model.bin": b"\x00weights\xff" * 10}
    release = Release("app", "appliance", "2.1.0", {n: hashlib.sha256(d).hexdigest() for n, d in payload.items()},
                      1767225600.123456)
    document = _old_json(asdict(release))
    assert release.document() == document
    old = KEY.sign(b"appliance/release/v1|" + document).hex()
    package = tmp_path / "old.tar"
    _old_package(package, document, old, payload)
    verified, files = verify_package(package, [OTHER, PUBLIC])
    assert verified == release and files == payload
    with pytest.raises(ApplianceError) as rejected:  # signed, but by nobody trusted
        verify_package(package, [OTHER])
    assert rejected.value.code is ErrorCode.UPDATE_REJECTED

    source = tmp_path / "src"
    source.mkdir()
    (source / "model.bin").write_bytes(payload["model.bin"])
    built = build_package(source, tmp_path / "new.tar", KEY, "app", "appliance", "2.1.0")
    with tarfile.open(tmp_path / "new.tar") as tar:
        new_document = tar.extractfile("RELEASE.json").read()
        new_signature = bytes.fromhex(tar.extractfile("RELEASE.sig").read().decode())
    assert new_document == _old_json(asdict(built))
    PUBLIC.verify(new_signature, b"appliance/release/v1|" + new_document)  # what the old code checked


# -- audit checkpoints (stores/audit.py) -------------------------------------------------

def test_audit_checkpoint_format_is_kept(tmp_path, keys, principals):
    from appliance.security.keys import NODE_SIGNING
    from appliance.security.roles import Role
    from appliance.stores.audit import AuditLog

    audit = AuditLog.open_with(tmp_path / "audit.db", keys, "node-1", checkpoint_every=3)
    node_key = Ed25519PrivateKey.from_private_bytes(keys.get(NODE_SIGNING).material)
    try:
        admin = principals[Role.SYSTEM_ADMIN]
        for index in range(4):
            audit.append(admin, "test.action", f"object-{index}", "ok")
        rows = audit.execute("SELECT seq, hash, time, node, signature FROM checkpoints").fetchall()
        assert [r[0] for r in rows] == [3]
        for seq, digest, when, node, signature in rows:  # the new code signs what the old code checked
            old_message = b"appliance/audit-checkpoint/v1|" + f"{node}|{seq}|{digest}|{when!r}".encode("utf-8")
            node_key.public_key().verify(bytes.fromhex(signature), old_message)
        # a checkpoint signed by the old code verifies with the new code
        head = audit.entries()[-1]
        when = 1767225600.987654
        old = node_key.sign(b"appliance/audit-checkpoint/v1|"
                            + f"node-1|{head.seq}|{head.hash}|{when!r}".encode("utf-8")).hex()
        with audit.transaction():
            audit.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
                          (head.seq, head.hash, when, "node-1", audit.public_key.public_bytes_raw().hex(), old))
        assert audit.verify(admin).ok
        # and a wrong one does not (same row shape, signature over another time)
        bad = node_key.sign(b"appliance/audit-checkpoint/v1|"
                            + f"node-1|{head.seq}|{head.hash}|{when + 1!r}".encode("utf-8")).hex()
        audit.append(admin, "test.action", "object-5", "ok")
        audit.append(admin, "test.action", "object-6", "ok")  # seq 6: a checkpoint by the new code
        last = audit.entries()[-1]
        with audit.transaction():
            audit.execute("INSERT INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
                          (last.seq + 100, last.hash, when, "node-1", "", bad))
        verdict = audit.verify(admin)
        assert not verdict.ok and "signature invalid" in verdict.reason
    finally:
        audit.close()


# -- liveness evidence (liveness/evidence.py) --------------------------------------------

def test_liveness_evidence_format_is_kept():
    from appliance.liveness.evidence import Ed25519Signer, SignedEvidence, sign_summary, verify

    summary = {"live": True, "score": 0.912345678, "door": "门-1", "cues": {"glare": math.nan, "periodicity": 0.5}}
    # evidence v1: canonical JSON, UTF-8 not escaped, scores rounded to 4 digits, NaN as null, no domain
    payload = ('{"cues":{"glare":null,"periodicity":0.5},"door":"门-1","live":true,"score":0.9123,'
               '"version":1}').encode("utf-8")
    old = KEY.sign(payload)
    assert verify(SignedEvidence(payload, old, "door-1"), PUBLIC.public_bytes_raw())["score"] == 0.9123
    new = sign_summary(summary, Ed25519Signer(KEY.private_bytes_raw(), "door-1"))
    assert new.payload == payload and new.signature == old
    with pytest.raises(ApplianceError):
        verify(SignedEvidence(payload, old, "door-1"), OTHER.public_bytes_raw())
    with pytest.raises(ApplianceError):
        verify(SignedEvidence(payload, old, "door-1"), b"short")


# -- backup manifests (ops/backup.py) ----------------------------------------------------

def test_backup_manifest_format_is_kept(tmp_path):
    from appliance.ops.backup import BackupFile, BackupManifest, load_manifest

    manifest = BackupManifest("matcher-1", 1767225600.123456, 17, {
        "biometric.db": BackupFile("ab" * 32, 40960, "biometric-db", "0123456789ab"),
        "audit.db": BackupFile("cd" * 32, 8192, "audit-db", "ba9876543210")})
    old = KEY.sign(b"appliance/backup-manifest/v1|" + _old_json(asdict(manifest))).hex()
    assert manifest.sign(KEY) == old
    assert manifest.verify(PUBLIC, old) and not manifest.verify(OTHER, old)
    # as the old code wrote it to disk, read back: the float survives the round trip
    (tmp_path / "backup.json").write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n")
    loaded = load_manifest(tmp_path)
    assert loaded.verify(PUBLIC, old)
    edited = BackupManifest(loaded.node, math.nan, loaded.biometric_revision, loaded.files)
    assert edited.verify(PUBLIC, old) is False

"""Deletion confirmations without a broker: which device confirmed which tombstone, what is
still unconfirmed, and the signed report - in exactly the bytes signed before the split."""
from __future__ import annotations

import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.matcher.deletions import REPORT_DOMAIN, DeletionConfirmations, verify_report
from matcherkit import ADMIN

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
# A report as the matcher signed it before this module existed (appliance/matcher/sync.py,
# SyncEngine.deletion_report): domain + json.dumps(sort_keys, compact, ASCII-escaped).
SIGNED_BEFORE = {
    "receipt": {"receipt_id": "0f" * 16, "subject_id": "s-1", "reason": "请求 request", "tombstone_revision": 7},
    "devices": {"door-a": 1700000000.25, "door-b": None}, "complete": False, "reported_at": 1700000001.5,
    "signature": "58a8daa35d7545e1c47a8f040540f7a15796b13a57a693db7449eeadd54f481805e289486445233b88d1c18c6754940d"
                 "6d537adc24b1beb29ed686565c6c0703",
}


def signed_the_old_way(report: dict, key) -> str:
    body = {k: v for k, v in report.items() if k != "signature"}
    return key.sign(b"appliance/deletion-confirmations/v1|"
                    + json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")).hex()


def test_a_report_signed_before_the_split_still_verifies():
    assert REPORT_DOMAIN == b"appliance/deletion-confirmations/v1|"
    assert signed_the_old_way(SIGNED_BEFORE, KEY) == SIGNED_BEFORE["signature"]
    assert verify_report(dict(SIGNED_BEFORE), KEY.public_key())
    edited = json.loads(json.dumps(SIGNED_BEFORE))
    edited["devices"]["door-b"] = 1700000002.0
    assert not verify_report(edited, KEY.public_key())
    assert not verify_report({k: v for k, v in SIGNED_BEFORE.items() if k != "signature"}, KEY.public_key())
    assert not verify_report({**SIGNED_BEFORE, "signature": "not hex"}, KEY.public_key())
    assert not verify_report({**SIGNED_BEFORE, "reported_at": float("nan")}, KEY.public_key())


def test_an_acknowledged_revision_confirms_the_tombstones_at_or_below_it(node):
    kept, _ = node.enroll("Kept Person")
    gone, _ = node.enroll("Gone Person")
    receipt = node.data.delete_subject(ADMIN, gone)
    later, _ = node.enroll("Later Person")
    node.data.delete_subject(ADMIN, later)
    clock = iter([100.0, 200.0, 300.0, 400.0, 500.0])
    confirmations = DeletionConfirmations(node.data, node.store, clock=lambda: next(clock))
    confirmations.acknowledge("door-a", receipt.tombstone_revision - 1)  # 100: not yet
    assert node.store.confirmations(receipt.tombstone_revision) == {}
    confirmations.acknowledge("door-a", receipt.tombstone_revision)  # 200
    assert node.store.confirmations(receipt.tombstone_revision) == {"door-a": 200.0}
    missing = confirmations.unconfirmed(["door-a", "door-b"])  # at 300
    assert [(u["subject_id"], u["missing"]) for u in missing] == [(gone, ["door-b"]), (later, ["door-a", "door-b"])]
    assert missing[0]["revision"] == receipt.tombstone_revision
    assert missing[0]["age_s"] == round(300.0 - missing[0]["deleted_at"], 1)  # by the clock given
    assert kept not in {u["subject_id"] for u in missing}
    confirmations.acknowledge("door-a", node.data.biometric.revision)  # 400: acknowledging again adds the rest
    assert node.store.confirmations(receipt.tombstone_revision) == {"door-a": 200.0}  # the first time stays
    assert [u["missing"] for u in confirmations.unconfirmed(["door-a", "door-b"])] == [["door-b"], ["door-b"]]


def test_the_report_lists_every_device_and_is_signed_by_the_node(node):
    gone, _ = node.enroll("Gone Person")
    receipt = node.data.delete_subject(ADMIN, gone)
    confirmations = DeletionConfirmations(node.data, node.store, clock=lambda: 1700000000.5)
    confirmations.acknowledge("door-a", receipt.tombstone_revision)
    report = confirmations.report(receipt.receipt_id, ["door-b", "door-a"])
    assert report["complete"] is False and report["devices"] == {"door-a": 1700000000.5, "door-b": None}
    assert report["receipt"]["receipt_id"] == receipt.receipt_id and list(report["devices"]) == ["door-a", "door-b"]
    public = node.data.node.signing.public_key()
    assert verify_report(report, public)
    assert report["signature"] == signed_the_old_way(report, node.data.node.signing)  # the same bytes as before
    report["complete"] = True
    assert not verify_report(report, public)
    confirmations.acknowledge("door-b", node.data.biometric.revision)
    done = confirmations.report(receipt.receipt_id, ["door-a", "door-b"])
    assert done["complete"] is True and verify_report(done, public)

"""Door decisions as audit entries: their original time and the device's signed event are
part of the chain (tampering with either is caught), entries written before keep their
hashes, and nothing that looks like a score is written."""
from __future__ import annotations

import hashlib
import json
import time

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.protocol import messages
from appliance.security import device_reports
from appliance.security.roles import Role
from appliance.stores import audit_devices
from appliance.stores.audit import AuditLog, entry_hash
from auditkit import tamper

DEVICE = "door-a"
SUBJECT = "s-00112233445566778899aabbccddeeff"


@pytest.fixture
def log(tmp_path, keys, principals):
    audit = AuditLog.open_with(tmp_path / "audit.db", keys, "node-1", checkpoint_every=100)
    audit.append(principals[Role.OPERATOR], "verify", "s-01", "pass")
    yield audit
    audit.close()


@pytest.fixture
def device_key():
    return Ed25519PrivateKey.generate()


def decision(key, accepted: bool = True, at: float | None = None, **extra) -> tuple[dict, str]:
    event = messages.Event(messages.new_id(), DEVICE, "local_decision", time.time() - 7200 if at is None else at,
                           {"accepted": accepted, "reason": "match" if accepted else "no_match",
                            "subject": SUBJECT if accepted else "", "mode": "local", **extra})
    document = event.document()
    return document, device_reports.sign(key, document)


def test_a_door_decision_keeps_its_time_and_signature_in_the_chain(log, principals, device_key):
    document, signature = decision(device_key)
    (entry,) = log.append_records([audit_devices.decision_record("matcher-1", document, signature, True)])
    assert (entry.seq, entry.device, entry.object, entry.result) == (2, DEVICE, SUBJECT, "accepted")
    assert entry.origin_at == document["at"] and entry.time - entry.origin_at > 7000
    assert json.loads(entry.evidence) == {"event": document, "signature": signature}
    assert log.entries()[-1] == entry  # read back as written
    assert audit_devices.evidence_problem(entry, lambda device: device_key.public_key()) == ""
    assert audit_devices.device_decisions(log.entries()) == [entry]
    assert audit_devices.summary(log.entries()).as_dict() == {"count": 1, "signed": 1, "devices": [DEVICE],
                                                              "newest_origin_at": document["at"]}
    assert log.verify(principals[Role.AUDITOR]).ok
    exported = log.export(principals[Role.AUDITOR])[1]
    assert exported["origin_at"] == document["at"] and json.loads(exported["evidence"])["signature"] == signature


@pytest.mark.parametrize("column, value", [("origin_at", 1.0), ("evidence", "{}"), ("object", "s-other")])
def test_changing_a_door_decisions_time_evidence_or_subject_is_caught(log, principals, device_key, column, value):
    document, signature = decision(device_key)
    log.append_records([audit_devices.decision_record("matcher-1", document, signature, True)])
    log.append(principals[Role.OPERATOR], "verify", "s-02", "pass")
    tamper(log, (f"UPDATE entries SET {column} = ? WHERE seq = 2", (value,)))
    verdict = log.verify(principals[Role.AUDITOR])
    assert (verdict.ok, verdict.first_bad) == (False, 2) and "modified" in verdict.reason


def test_entries_without_device_fields_hash_as_before(log):
    """The chain format is unchanged for every other entry: no re-hashing, no migration of hashes."""
    entry = log.entries()[0]
    before = json.dumps({**{f: getattr(entry, f) for f in ("seq", "time", "actor", "role", "action", "object",
                                                          "result", "device", "detail")}, "prev": entry.prev},
                        sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    assert entry.hash == hashlib.sha256(before.encode("utf-8")).hexdigest() == entry_hash(entry.as_dict(), entry.prev)
    assert (entry.origin_at, entry.evidence) == (0.0, "") and "evidence" not in entry.as_dict()


def test_a_forged_or_foreign_signature_does_not_prove_the_decision(log, device_key):
    document, signature = decision(device_key)
    forged = dict(document, details=dict(document["details"], accepted=False))
    (entry,) = log.append_records([audit_devices.decision_record("matcher-1", forged, signature, True)])
    assert audit_devices.evidence_problem(entry, lambda device: device_key.public_key()) == "device signature invalid"
    other = Ed25519PrivateKey.generate().public_key()
    document, signature = decision(device_key)
    (entry,) = log.append_records([audit_devices.decision_record("matcher-1", document, signature, True)])
    assert audit_devices.evidence_problem(entry, lambda device: other) == "device signature invalid"
    assert audit_devices.evidence_problem(entry, lambda device: None) == f"device {DEVICE} unknown"


def test_unsigned_decisions_are_entered_and_say_so(log, device_key):
    document, _ = decision(device_key, accepted=False)
    (entry,) = log.append_records([audit_devices.decision_record("matcher-1", document, "", False)])
    assert entry.object == "-" and entry.result == "rejected" and "device signature missing" in entry.detail
    assert json.loads(entry.evidence)["signature"] == ""
    assert (audit_devices.summary(log.entries()).count, audit_devices.summary(log.entries()).signed) == (1, 0)


@pytest.mark.parametrize("extra", [{"score": 0.93}, {"similarity_hint": "high"}, {"latency_ms": 0.123456}])
def test_details_that_look_like_a_score_are_left_out(log, principals, device_key, extra):
    document, signature = decision(device_key, **extra)
    (entry,) = log.append_records([audit_devices.decision_record("matcher-1", document, signature, True)])
    assert entry.evidence == "" and "evidence refused" in entry.detail and entry.origin_at == document["at"]
    assert log.verify(principals[Role.AUDITOR]).ok


def test_only_the_doors_own_decisions_are_door_decisions():
    assert audit_devices.is_door_decision("local_decision", {"accepted": True})
    assert audit_devices.is_door_decision("credential_decision", {"accepted": True, "credential": "card"})
    assert audit_devices.is_door_decision("pass", {"outcome": "unavailable", "decided_by": "door"})
    assert not audit_devices.is_door_decision("pass", {"outcome": "accepted", "decided_by": "matcher"})
    assert not audit_devices.is_door_decision("pass", {"outcome": "accepted", "decided_by": "cache"})
    assert not audit_devices.is_door_decision("pass", {"outcome": "accepted", "decided_by": "local"})  # a card's
    assert not audit_devices.is_door_decision("tailgating", {"faces_in_view": 2})


def test_a_door_pass_is_a_grant_its_cache_decided_for_a_named_person():
    granted = {"accepted": True, "subject": "s-0123abcd", "request_id": "r-1"}
    assert audit_devices.door_pass("local_decision", granted) == ("s-0123abcd", "r-1")
    assert audit_devices.door_pass("credential_decision", granted) == ("s-0123abcd", "r-1")
    assert audit_devices.door_pass("local_decision", {**granted, "accepted": False}) is None
    assert audit_devices.door_pass("local_decision", {**granted, "accepted": "yes"}) is None  # not a bool
    assert audit_devices.door_pass("local_decision", {**granted, "subject": ""}) is None
    assert audit_devices.door_pass("local_decision", {**granted, "subject": "x" * 65}) is None
    assert audit_devices.door_pass("local_decision", {**granted, "request_id": 7}) is None
    assert audit_devices.door_pass("pass", {**granted, "decided_by": "door"}) is None  # not the cache's grant


def test_signature_problems_name_a_decision_the_door_did_not_sign_and_count_the_rest(log, device_key):
    document, signature = decision(device_key)
    good = audit_devices.decision_record("matcher-1", document, signature, True)
    forged_doc = dict(document, details=dict(document["details"], subject="s-someone-else"))
    forged = audit_devices.decision_record("matcher-1", forged_doc, signature, True)  # as a key holder could write
    unsigned = audit_devices.decision_record("matcher-1", decision(device_key)[0], "", False)
    entries = log.append_records([good, forged, unsigned])
    problems, proven = audit_devices.signature_problems(log.entries(), lambda device: device_key.public_key())
    assert problems == [(entries[1].seq, "device signature invalid")] and proven == 1
    assert audit_devices.signature_problems(log.entries(), lambda device: None) == ([], 0)  # door no longer known

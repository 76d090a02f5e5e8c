"""A person's access request: the export lists exactly what the site holds about them -
record, consents, enrollment, groups, doors holding the template, door events within
retention, deletion receipts - masked for the requester, nothing about anyone else, with a
node-signed receipt that holds a digest of the export and never the data."""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, replace

import pytest

from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.subject_access import (
    ACCESS_RECEIPTS_DIR, DELETING, HOLDS, PENDING, access_receipts, export_digest, export_subject,
    load_access_receipt,
)
from appliance.matcher.sync_store import EventRecord
from appliance.protocol import messages, topics
from appliance.security.consent import ConsentRecord
from appliance.security.roles import Principal, Role
from appliance.stores.audit import SECONDS_PER_DAY
from matcherkit import ADMIN, OPERATOR

DOORS = {"door-a": "default", "door-b": "lab"}
NAME_A, CARD_A = "Wang Xiaoming", "C-0001"
NAME_B, CARD_B = "Zhao Lili", "C-0002"


def door_event(device: str, subject: str, at: float, outcome: str = "accepted", kind: str = "pass") -> EventRecord:
    details = {"outcome": outcome, "reason": "match", "decided_by": "matcher", "latency_ms": 80.0, "subject": subject}
    return EventRecord(messages.new_id(), device, topics.EVENT, kind, at, details)


@pytest.fixture
def people(node):
    """A (local matching, every door group), B (central only), both with events; C deleted."""
    a, _ = node.enroll(NAME_A, card=CARD_A)
    node.data.record_consent(OPERATOR, ConsentRecord(a, "face-local-matching", "v2", time.time(), NAME_A,
                                                     reference="form 2024-0017"))
    b, _ = node.enroll(NAME_B, card=CARD_B, local=False)
    node.store.assign_groups(b, ("lab",))
    c, _ = node.enroll("Sun Qiang", card="C-0003")
    node.store.record_ack("door-a", node.data.biometric.revision, [], time.time())  # door-a holds A and C
    receipt_c = node.data.delete_subject(ADMIN, c)
    now = time.time()
    old = now - (node.data.security.event_retention_days + 1) * SECONDS_PER_DAY
    events = {"a": [door_event("door-a", a, now - 60), door_event("door-b", a, now - 30, "rejected"),
                    door_event("door-a", a, now - 10, kind="local_decision")],
              "a_old": [door_event("door-a", a, old)],
              "b": [door_event("door-b", b, now - 20), door_event("door-a", b, now - 5)]}
    node.store.record_events([e for batch in events.values() for e in batch], now)
    return {"a": a, "b": b, "c": c, "receipt_c": receipt_c, "events": events}


def test_an_export_lists_exactly_what_is_held_about_the_person_and_nothing_about_others(node, people):
    a, b = people["a"], people["b"]
    result = export_subject(OPERATOR, a, node.data, node.store, DOORS)
    export = result.export
    assert export["subject_id"] == a and export["masked"] is True and export["node"] == node.data.node.node_id
    person = export["person"]
    assert person["subject_id"] == a and person["name"] == "W*** X*******" and person["card_no"] == "*-**01"
    assert person["age_band"] == "adult" and person["alternative"] == "card"
    assert [(c["scope"], c["text_version"]) for c in export["consents"]] == [
        ("face-enrollment", "v1"), ("face-local-matching", "v1"), ("face-local-matching", "v2")]
    assert export["consents"][2]["reference"] == "form ****-**17" and export["consents"][0]["consented_by"] == \
        "W*** X*******"
    (template,) = export["templates"]
    assert set(template) == {"pack_id", "pack_version", "enrolled_at", "updated_at", "revision"}  # no template
    assert (template["pack_id"], template["pack_version"]) == node.pack
    assert export["door_groups"] == []  # every group
    assert [(d["device"], d["state"]) for d in export["devices"]] == [("door-a", HOLDS), ("door-b", PENDING)]
    items = export["events"]["items"]
    assert [e["event_id"] for e in items] == [e.event_id for e in people["events"]["a"]]  # not the expired one
    assert [e["outcome"] for e in items] == ["accepted", "rejected", "accepted"] and items[0]["device"] == "door-a"
    assert export["deletion_receipts"] == [] and export["events"]["truncated"] is False
    text = json.dumps(result.as_dict(), ensure_ascii=False)
    for trace in (b, NAME_B, "Z**** L***", CARD_B, "*-**02", people["c"], "Sun Qiang", NAME_A, CARD_A,
                  *(e.event_id for e in people["events"]["b"]), people["events"]["a_old"][0].event_id):
        assert trace not in text, trace


def test_the_receipt_is_signed_holds_a_digest_and_the_export_is_on_record(node, people):
    result = export_subject(OPERATOR, people["a"], node.data, node.store, DOORS)
    receipt, public = result.receipt, node.data.node.signing.public_key()
    assert receipt.verify(public) and receipt.digest == export_digest(result.export)
    assert (receipt.requested_by, receipt.role, receipt.subject_id) == (OPERATOR.actor, "operator", people["a"])
    assert receipt.counts == {"person": 1, "consents": 3, "templates": 1, "devices": 2, "door_access": 2,
                              "events": 3, "deletion_receipts": 0}
    assert NAME_A not in json.dumps(asdict(receipt)) and "W***" not in json.dumps(asdict(receipt))
    assert not replace(receipt, digest="0" * 64).verify(public) and not replace(receipt, counts={}).verify(public)
    path = node.data.root / ACCESS_RECEIPTS_DIR / f"{receipt.receipt_id}.json"
    assert load_access_receipt(path) == receipt and os.stat(path).st_mode & 0o777 == 0o600
    assert [r.receipt_id for r in access_receipts(node.data.root, public)] == [receipt.receipt_id]
    (entry,) = [e for e in node.data.audit.entries() if e.action == "subject.export"]
    assert (entry.actor, entry.object, entry.result) == (OPERATOR.actor, people["a"], "ok")
    assert entry.detail.startswith("masked; access receipt")


def test_unmasked_only_for_the_security_administrator_and_audited(node, people):
    a = people["a"]
    with pytest.raises(ApplianceError) as refused:
        export_subject(OPERATOR, a, node.data, node.store, DOORS, unmasked=True)
    assert refused.value.code is ErrorCode.PERMISSION_DENIED
    result = export_subject(ADMIN, a, node.data, node.store, DOORS, unmasked=True)
    assert result.export["person"]["name"] == NAME_A and result.export["person"]["card_no"] == CARD_A
    assert result.export["consents"][2]["reference"] == "form 2024-0017" and result.receipt.masked is False
    reveals = [(e.actor, e.result) for e in node.data.audit.entries() if e.action == "identity.reveal"]
    assert reveals == [(OPERATOR.actor, "denied"), (ADMIN.actor, "ok")]
    with pytest.raises(ApplianceError) as auditor:
        export_subject(Principal("aud", Role.AUDITOR), a, node.data, node.store, DOORS)
    assert auditor.value.code is ErrorCode.PERMISSION_DENIED


def test_a_person_held_only_centrally_and_in_one_group_is_on_no_door(node, people):
    export = export_subject(OPERATOR, people["b"], node.data, node.store, DOORS).export
    assert export["devices"] == [] and export["door_groups"] == ["lab"]
    assert [e["event_id"] for e in export["events"]["items"]] == [e.event_id for e in people["events"]["b"]]
    assert people["a"] not in json.dumps(export) and NAME_A not in json.dumps(export)


def test_after_a_deletion_the_export_shows_the_receipt_and_the_doors_yet_to_confirm(node, people):
    export = export_subject(ADMIN, people["c"], node.data, node.store, DOORS).export
    assert export["person"] is None and export["templates"] == [] and export["consents"] == []
    (receipt,) = export["deletion_receipts"]
    assert receipt["receipt_id"] == people["receipt_c"].receipt_id and receipt["signature"]
    assert [(d["device"], d["state"]) for d in export["devices"]] == [("door-a", DELETING)]


def test_a_pseudonym_never_held_is_not_found_and_the_refusal_is_on_record(node, people):
    with pytest.raises(ApplianceError) as missing:
        export_subject(OPERATOR, "s-nobody", node.data, node.store, DOORS)
    assert missing.value.code is ErrorCode.SUBJECT_NOT_FOUND
    assert not (node.data.root / ACCESS_RECEIPTS_DIR).exists() or not list(
        (node.data.root / ACCESS_RECEIPTS_DIR).iterdir())
    assert [(e.object, e.result) for e in node.data.audit.entries() if e.action == "subject.export"] == [
        ("s-nobody", "refused")]


def test_with_access_groups_the_export_says_which_doors_open_and_when(node, people):
    from appliance.access.rules import Validity
    from appliance.access.schedule import WeeklySchedule

    a = people["a"]
    always = export_subject(OPERATOR, a, node.data, node.store, DOORS).export
    assert [(d["door"], d["always"]) for d in always["door_access"]] == [("door-a", True), ("door-b", True)]
    office = {"mon": ["08:00-18:00"], "tue": ["08:00-18:00"]}
    node.store.put_group("office", WeeklySchedule.from_mapping(office))
    node.store.set_group_doors("office", ["door-a"], True)
    node.store.set_member("office", a, True)
    node.store.set_validity(a, Validity(None, 2_000_000_000.0))
    export = export_subject(OPERATOR, a, node.data, node.store, DOORS, tz="Asia/Shanghai").export
    (door,) = export["door_access"]  # door-b: no group of theirs grants it
    assert (door["door"], door["always"], door["time_zone"]) == ("door-a", False, "Asia/Shanghai")
    assert door["schedules"] == {"office": WeeklySchedule.from_mapping(office).to_mapping()}
    assert door["valid_from"] is None and door["valid_until"].startswith("2033-05-18")
    assert [d["device"] for d in export["devices"]] == ["door-a"]  # the caches follow the access rules too
    node.store.set_member("office", a, False)
    assert export_subject(OPERATOR, a, node.data, node.store, DOORS).export["door_access"] == []

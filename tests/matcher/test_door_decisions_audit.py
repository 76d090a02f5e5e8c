"""Door decisions enter the audit chain when they reach the centre: once per event whichever
replica receives it and however often it is delivered, with the decision's own time and the
device's signature, which an auditor can check against the device's key."""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import replace

import pytest

from appliance.errors import ApplianceError
from appliance.matcher.events import AUDIT_LEASE_S, EventRecorder
from appliance.matcher.replica_io import Auditor
from appliance.matcher.sync_store import EventRecord
from appliance.protocol import messages, topics
from appliance.security import device_reports
from appliance.security.envelope import MessageType
from appliance.security.roles import Principal, Role
from appliance.stores import audit_devices
from polling import wait_for

AUDITOR = Principal("acct-auditor", Role.AUDITOR)
SUBJECT = "s-0123456789abcdef0123456789abcdef"


def signed(node, message: messages.Event) -> messages.Event:
    """As the door's outbox pump does before sealing (``OutboxPump.submit``)."""
    return replace(message, signature=device_reports.sign(node.devices[message.device_id].signing,
                                                          message.document()))


def local_decision(device: str, accepted: bool, at: float) -> messages.Event:
    details = {"accepted": accepted, "reason": "match" if accepted else "no_match",
               "subject": SUBJECT if accepted else "", "mode": "local-first", "revision": 3, "current": False,
               "request_id": messages.new_id()}
    return messages.Event(messages.new_id(), device, "local_decision", at, details)


def door_entries(node) -> list:
    return audit_devices.device_decisions(node.data.audit.entries())


def key_of(node):
    return lambda device: node.devices[device].signing.public_key() if device in node.devices else None


def test_two_replicas_and_redelivery_enter_each_door_decision_once_with_its_signature(node):
    stats = Counter()
    replicas = [EventRecorder(name, node.keys, node.directory, node.store, node.courier(name),
                              Auditor(name, node.data.audit), stats, audit_log=node.data.audit)
                for name in ("matcher-1", "matcher-2")]
    offline_since = time.time() - 3600  # decided an hour ago, while the door was cut off
    decisions = [signed(node, local_decision("door-a", i % 2 == 0, offline_since + i)) for i in range(6)]
    refused = signed(node, messages.Event(messages.new_id(), "door-b", "pass", offline_since + 10,
                                          {"outcome": "unavailable", "reason": "unavailable", "decided_by": "door"}))
    central = signed(node, messages.Event(messages.new_id(), "door-a", "pass", offline_since + 11,
                                          {"outcome": "accepted", "reason": "match", "decided_by": "matcher",
                                           "subject": SUBJECT}))
    unsigned = local_decision("door-b", False, offline_since + 12)
    everything = [*decisions, refused, central, unsigned]
    for replica in replicas:
        replica.route.start()
    try:
        for _delivery in range(2):  # every envelope to both replicas, twice (lost acks)
            for message in everything:
                for replica in replicas:
                    replica.worker.put(node.sealed_by(message.device_id, message, MessageType.EVENT,
                                                      kind=topics.EVENT))
        audited = {m.event_id for m in [*decisions, refused, unsigned]}
        assert wait_for(lambda: stats["events_duplicate"] == 3 * len(everything)
                        and stats["events_recorded"] == len(everything))
        assert wait_for(lambda: stats["decisions_audited"] == len(audited))
    finally:
        for replica in replicas:
            replica.route.stop()
    entries = door_entries(node)
    by_event = {json.loads(e.evidence)["event"]["event_id"]: e for e in entries}
    assert len(entries) == len(audited) and set(by_event) == audited  # once each; the matcher's pass is not
    for message in decisions:
        entry = by_event[message.event_id]
        assert (entry.device, entry.action, entry.origin_at) == ("door-a", "door.local_decision", message.at)
        assert entry.object == (SUBJECT if message.details["accepted"] else "-")
        assert entry.result == ("accepted" if message.details["accepted"] else "rejected")
        assert entry.time > entry.origin_at + 3000  # written on arrival, kept apart from when the door decided
        assert audit_devices.evidence_problem(entry, key_of(node)) == ""
    assert by_event[refused.event_id].action == "door.pass" and by_event[refused.event_id].result == "unavailable"
    assert "device signature missing" in by_event[unsigned.event_id].detail
    assert audit_devices.evidence_problem(by_event[unsigned.event_id], key_of(node)) == "device signature missing"
    assert stats["decisions_unsigned"] == 1
    assert node.data.audit.verify(AUDITOR).ok
    # another device's key does not vouch for door-a's decision
    other = lambda device: node.devices["door-b"].signing.public_key()  # noqa: E731
    assert audit_devices.evidence_problem(by_event[decisions[0].event_id], other) == "device signature invalid"


def test_a_decision_recorded_by_a_replica_that_died_before_auditing_it_is_taken_over(node):
    stats = Counter()
    recorder = EventRecorder("matcher-2", node.keys, node.directory, node.store, node.courier("matcher-2"),
                             Auditor("matcher-2", node.data.audit), stats, audit_log=node.data.audit)
    message = signed(node, local_decision("door-a", True, time.time() - 600))
    record = EventRecord(message.event_id, "door-a", topics.EVENT, message.kind, message.at, message.details,
                         message.signature)
    # matcher-1 recorded and claimed it, then died before writing the entry
    claimed_at = time.time() - AUDIT_LEASE_S - 1
    assert node.store.record_new_events([record], claimed_at, lambda e: True) == [record]
    assert door_entries(node) == []
    recorder.flush([EventRecord(messages.new_id(), "door-b", topics.EVENT, "tailgating", time.time(), {})])
    (entry,) = door_entries(node)
    assert entry.origin_at == message.at and audit_devices.evidence_problem(entry, key_of(node)) == ""
    recorder.flush([])  # nothing owed any more: no second entry
    recorder.flush([record])  # redelivered: a duplicate, no entry
    assert len(door_entries(node)) == 1 and node.data.audit.verify(AUDITOR).ok


def test_a_claim_within_its_lease_is_left_to_the_replica_that_holds_it(node):
    message = signed(node, local_decision("door-a", False, time.time()))
    record = EventRecord(message.event_id, "door-a", topics.EVENT, message.kind, message.at, message.details,
                         message.signature)
    node.store.record_new_events([record], time.time(), lambda e: True)
    assert node.store.claim_owed_audits(time.time(), AUDIT_LEASE_S, 10) == []
    later = time.time() + AUDIT_LEASE_S + 1
    assert [e.event_id for e in node.store.claim_owed_audits(later, AUDIT_LEASE_S, 10)] == [message.event_id]
    assert node.store.claim_owed_audits(later, AUDIT_LEASE_S, 10) == []  # one taker


def test_the_signature_travels_with_the_event_and_a_malformed_one_is_refused(node):
    message = signed(node, local_decision("door-a", True, time.time()))
    decoded = messages.decode(message.encode(), messages.Event)
    assert decoded == message and device_reports.verify(node.devices["door-a"].signing.public_key(),
                                                        decoded.document(), decoded.signature)
    assert b'"signature"' not in replace(message, signature="").encode()  # unsigned: the wire as before
    with pytest.raises(ApplianceError):
        messages.decode(replace(message, signature="zz" * 64).encode(), messages.Event)

"""A full replica's other handlers, running on their own workers without a broker: outbox
events recorded exactly once and acknowledged, sync requests answered, and the revision poll
that keeps the gallery current and announces each change once across replicas."""
from __future__ import annotations

import json
import time
from collections import Counter


from appliance.matcher.deletions import DeletionConfirmations
from appliance.matcher.eligibility import Profiles
from appliance.matcher.events import EventRecorder
from appliance.matcher.loaded import LoadedGallery
from appliance.matcher.replica import ReplicaFollower
from appliance.matcher.replica_io import Auditor
from appliance.matcher.revisions import SyncEngine
from appliance.matcher.sync_requests import SyncHandler
from appliance.matching import Gallery
from appliance.protocol import messages, topics
from appliance.security import signing
from appliance.security.envelope import MessageType
from appliance.security.roles import Principal, Role
from matcherkit import ADMIN, DEVICES, FakeLog
from polling import wait_for


def event(device: str, kind: str = "pass", event_id: str = "") -> messages.Event:
    return messages.Event(event_id or messages.new_id(), device, kind, time.time(), {"outcome": "accepted"})


def acked(node, device: str) -> list[str]:
    return [i for p in node.broker.on(topics.device_topic(device, topics.SYNC))
            for i in node.opened_by(device, p, MessageType.SYNC).ids]


def test_outbox_events_are_recorded_once_in_order_and_acknowledged(node):
    log, stats = FakeLog(), Counter()
    recorder = EventRecorder("matcher-1", node.keys, node.directory, node.store, node.courier(),
                             Auditor("matcher-1", log), stats)
    recorder.route.start()
    try:
        sent = [event("door-a") for _ in range(20)]
        old = event("door-a")  # sealed two days ago in an offline outbox
        envelopes = [node.sealed_by("door-a", message, MessageType.EVENT, kind=topics.EVENT) for message in sent]
        for envelope in envelopes:
            recorder.worker.put(envelope)
        recorder.worker.put(node.sealed_by("door-a", old, MessageType.EVENT, kind=topics.EVENT,
                                           now=time.time() - 2 * 86400))
        alarm = messages.Alarm(messages.new_id(), "door-b", "presentation_attack", time.time(), {})
        recorder.worker.put(node.sealed_by("door-b", alarm, MessageType.ALARM, kind=topics.ALARM))
        expected = [m.event_id for m in sent] + [old.event_id]
        assert wait_for(lambda: node.store.event_ids("door-a") == expected and len(acked(node, "door-a")) == 21)
        assert acked(node, "door-a") == expected
        # resent after a lost ack (same envelope: no counter check) - recognised, acknowledged again
        recorder.worker.put(envelopes[0])
        assert wait_for(lambda: stats["events_duplicate"] == 1 and len(acked(node, "door-a")) == 22)
        assert node.store.event_ids("door-a") == expected and node.store.counter("duplicate_events") == 1
        assert wait_for(lambda: node.store.event_ids("door-b") == [alarm.alarm_id])
        assert ("door-b", "alarm.presentation_attack") in log.actions
        assert stats["events_recorded"] == 22 and stats["event"] == 22 and acked(node, "door-b") == [alarm.alarm_id]
        # another device's id inside door-b's envelope, or door-b's envelope on door-a's topic: refused
        recorder.worker.put(node.sealed_by("door-b", event("door-a"), MessageType.EVENT, kind=topics.EVENT))
        recorder.worker.put(node.sealed_by("door-b", event("door-b"), MessageType.EVENT, topic_of="door-a",
                                           kind=topics.EVENT))
        assert wait_for(lambda: stats["rejected:malformed"] == 1 and stats["rejected:sender_topic_mismatch"] == 1)
        assert [e.kind for e in node.store.events("door-a")] == ["pass"] * 21
    finally:
        recorder.route.stop()


def full_replica(node, name: str, stats: Counter, allowed=lambda device, mode: True):
    principal = Principal(name, Role.OPERATOR, device=name)
    gallery = Gallery(*node.pack, node.dimension)
    loaded = LoadedGallery(gallery, {}, {})
    profiles = Profiles(node.data.identity, node.store.groups, principal)
    courier = node.courier(name)
    follower = ReplicaFollower(name, node.data, node.store, profiles, loaded, courier, node.keys,
                               lambda: list(DEVICES), stats, principal)
    engine = SyncEngine(node.data, profiles, node.pack, node.dimension, 5000, principal)
    handler = SyncHandler(name, node.keys, node.directory, engine, DeletionConfirmations(node.data, node.store),
                          follower, courier, stats, device_allowed=allowed, poll_s=0.05)
    return handler, loaded, follower


def enrollment_events(node) -> list[dict]:
    return [json.loads(p.payload) for p in node.broker.on(topics.ENROLLMENT_EVENTS)]


def test_replicas_follow_the_store_and_one_announces_each_change(node):
    first_stats, second_stats = Counter(), Counter()
    first, first_view, follower = full_replica(node, "matcher-1", first_stats)
    second, second_view, _ = full_replica(node, "matcher-2", second_stats)
    first.route.start()
    try:
        subject, vector = node.enroll("Maria Gomez", card="C-9")
        assert wait_for(lambda: subject in first_view.gallery and len(enrollment_events(node)) == 1)
        assert first_view.claims == {"C-9": subject} and first_view.display_names[subject] == "M**** G****"
        second.route.start()  # a replica that starts later catches up, but the change is announced already
        assert wait_for(lambda: subject in second_view.gallery)
        (envelope,) = enrollment_events(node)
        body = json.dumps(envelope["event"], separators=(",", ":"), ensure_ascii=False).encode()
        assert signing.verify(node.keys.signing.public_key(), signing.NO_DOMAIN, body,
                              bytes.fromhex(envelope["signature"]))
        assert envelope["signer"] == "matcher-1" and envelope["event"]["action"] == "enrolled"
        assert envelope["event"]["subject_ref"] == follower.subject_ref(subject) != subject
        assert b"Maria" not in json.dumps(envelope).encode() and "C-9" not in json.dumps(envelope)
        notices = [node.opened_by(d, p, MessageType.SYNC) for d in DEVICES
                   for p in node.broker.on(topics.device_topic(d, topics.SYNC))]
        assert {n.kind for n in notices} == {"notice"} and len(notices) == len(DEVICES)
        node.data.delete_subject(ADMIN, subject)
        assert wait_for(lambda: subject not in first_view.gallery and subject not in second_view.gallery)
        assert wait_for(lambda: len(enrollment_events(node)) == 2)
        assert enrollment_events(node)[1]["event"]["action"] == "deleted" and first_view.claims == {}
        assert first_stats["revisions_followed"] == 2 and second_stats["revisions_followed"] >= 1
    finally:
        first.route.stop()
        second.route.stop()


def test_sync_requests_are_answered_to_the_device_and_refused_when_its_policy_is_gone(node):
    subject, _ = node.enroll("Ana Lima")
    stats = Counter()
    allowed = {"door-a"}
    handler, _, _ = full_replica(node, "matcher-1", stats, lambda device, mode: device in allowed)
    handler.route.start()
    try:
        asked = messages.SyncRequest(messages.new_id(), "door-a", 0)
        handler.route.worker.put(node.sealed_by("door-a", asked, MessageType.SYNC_ACK, kind=topics.SYNC_ACK))
        assert wait_for(lambda: stats["sync:changes"] == 1)
        deltas = [node.opened_by("door-a", p, MessageType.SYNC)
                  for p in node.broker.on(topics.device_topic("door-a", topics.SYNC))]
        deltas = [d for d in deltas if d.kind == "changes"]
        assert [e["s"] for d in deltas for e in d.upserts] == [subject] and deltas[0].request_id == asked.request_id
        head = node.data.biometric.revision
        ack = messages.SyncAck("door-a", head, time.time())
        handler.route.worker.put(node.sealed_by("door-a", ack, MessageType.SYNC_ACK, kind=topics.SYNC_ACK))
        assert wait_for(lambda: stats["sync_acks"] == 1) and node.store.device_revision("door-a") == head
        refused = messages.SyncRequest(messages.new_id(), "door-b", 0)
        handler.route.worker.put(node.sealed_by("door-b", refused, MessageType.SYNC_ACK, kind=topics.SYNC_ACK))
        assert wait_for(lambda: stats["rejected:not_allowed"] == 1)  # revoked or without a policy: not opened
        assert node.broker.on(topics.device_topic("door-b", topics.SYNC)) == [] or all(
            node.opened_by("door-b", p, MessageType.SYNC).kind == "notice"
            for p in node.broker.on(topics.device_topic("door-b", topics.SYNC)))
        handler.route.worker.put(node.sealed_by("door-a", event("door-a"), MessageType.SYNC_ACK, kind=topics.SYNC_ACK))
        assert wait_for(lambda: stats["rejected:malformed"] == 1)  # not a sync message
    finally:
        handler.route.stop()

"""Enrollment sync on a real broker with real SQLCipher stores: catch-up, deletion while a
device is offline, confirmations, digest resync, snapshots, scoping, replicas, third parties."""
from __future__ import annotations

import json
import queue
import time

import numpy as np
import pytest

from appliance.edge.offline import device_folder, open_door
from appliance.matcher.deletions import verify_report
from appliance.protocol import messages, topics
from appliance.transport.mqtt import MqttEndpoint
from offkit import (ADMIN, PACK, enroll_person, make_site, offline_config, probe_of, request, start_matcher,
                    wait_for)


@pytest.fixture(scope="module")
def site(tmp_path_factory, config):
    made = make_site(tmp_path_factory.mktemp("offline-site"), config, people=8)
    yield made
    made.broker.stop()
    made.data.close()


@pytest.fixture
def matcher(site):
    service = start_matcher(site)
    yield service
    service.stop()
    service.store.close()


def test_offline_device_refuses_a_subject_deleted_while_away_and_every_device_confirms(site, matcher):
    door_a = open_door(site, "door-a", offline_config(mode="local"), threshold=0.4)
    door_b = open_door(site, "door-b", offline_config(mode="local"), threshold=0.4)
    try:
        assert door_a.sync.wait_current(10) and door_b.sync.wait_current(10)
        subject, vector = next(iter(site.people.items()))
        assert door_b.decider.request(request("door-b", probe_of(vector, site.rng)), PACK).accepted
        door_b.close()  # door-b goes offline
        receipt = site.data.delete_subject(ADMIN, subject)
        site.people.pop(subject)
        assert wait_for(lambda: subject not in door_a.cache.subject_ids())
        devices = ["door-a", "door-b"]
        assert wait_for(lambda: [u["missing"] for u in matcher.confirmations.unconfirmed(devices)
                                 if u["revision"] == receipt.tombstone_revision] == [["door-b"]])
        report = matcher.confirmations.report(receipt.receipt_id, devices)
        assert report["complete"] is False and report["devices"]["door-b"] is None
        # door-b comes back and is asked to decide at once: the tombstone goes first
        door_b = open_door(site, "door-b", offline_config(mode="local"), threshold=0.4)
        decision = door_b.decider.request(request("door-b", probe_of(vector, site.rng)), PACK)
        assert not decision.accepted and decision.reason == messages.Reason.NO_MATCH
        assert subject not in door_b.cache.subject_ids() and door_b.cache.revision >= receipt.tombstone_revision
        assert wait_for(lambda: matcher.confirmations.report(receipt.receipt_id, devices)["complete"])
        report = matcher.confirmations.report(receipt.receipt_id, devices)
        assert all(isinstance(report["devices"][d], float) for d in devices)
        assert verify_report(report, site.data.node.signing.public_key())
        report["devices"]["door-b"] = None
        assert not verify_report(report, site.data.node.signing.public_key())
        assert not [u for u in matcher.confirmations.unconfirmed(devices)
                    if u["revision"] == receipt.tombstone_revision]
        # a person still enrolled is still admitted by the cache
        other, other_vector = next(iter(site.people.items()))
        assert door_b.decider.request(request("door-b", probe_of(other_vector, site.rng)), PACK).accepted
    finally:
        door_a.close()
        door_b.close()


def test_digest_mismatch_forces_a_resync(site, matcher):
    door = open_door(site, "door-c", offline_config(mode="local"), threshold=0.4)
    try:
        assert door.sync.wait_current(10)
        before, count = door.cache.digest(), door.cache.count()
        with door.cache.lock, door.cache.transaction():  # divergence: a row lost behind the sync's back
            door.cache.execute("DELETE FROM cached WHERE subject_id = (SELECT min(subject_id) FROM cached)")
        assert door.cache.digest() != before
        door.sync.request(digest=True)
        assert wait_for(lambda: matcher.stats["sync:digest_mismatch"] == 1), (dict(matcher.stats),
                                                                              dict(door.sync.stats))
        assert wait_for(lambda: door.cache.count() == count and door.cache.digest() == before)
        door.sync.request(digest=True)  # now it matches: no second resync
        assert wait_for(lambda: matcher.stats["sync:current"] >= 1)
        assert matcher.stats["sync:digest_mismatch"] == 1
    finally:
        door.close()


def test_scoping_by_local_consent_and_door_group(site, matcher):
    door = open_door(site, "door-a", offline_config(mode="local"), threshold=0.4)
    try:
        assert door.sync.wait_current(10)
        no_local, _ = enroll_person(site.data, site.rng, "Central Only", local=False)
        lobby, _ = enroll_person(site.data, site.rng, "Lobby Only", card="C-LOBBY")
        matcher.store.assign_groups(lobby, ("lobby",))
        site.data.enroll(messages_operator(), lobby, site.data.biometric.template(
            messages_operator(), lobby, *PACK, site.data.vault), np.zeros(1, np.float32))  # a new revision
        head = site.data.biometric.revision
        assert wait_for(lambda: door.cache.revision == head)
        cached = set(door.cache.subject_ids())
        assert no_local not in cached and lobby not in cached
        # central still matches both (the matcher's gallery follows the store on its own poll)
        assert wait_for(lambda: no_local in matcher.loaded.gallery and lobby in matcher.loaded.gallery)
        assert door.cache.digest() == matcher.revisions.expected_digest("default")
    finally:
        door.close()


def messages_operator():
    from offkit import OPERATOR

    return OPERATOR


def test_new_device_far_behind_gets_a_snapshot_and_replicas_follow(site):
    first = start_matcher(site, name="matcher-1", snapshot_after=2)
    second = start_matcher(site, name="matcher-2", snapshot_after=2)
    door = None
    try:
        subject, vector = enroll_person(site.data, site.rng, "Late Comer", card="C-LATE")
        assert wait_for(lambda: subject in first.loaded.gallery and subject in second.loaded.gallery)
        for name in ("cache.db", "outbox.db"):  # door-c provisioned anew: an empty cache
            for suffix in ("", "-wal", "-shm"):
                (device_folder(site, "door-c") / (name + suffix)).unlink(missing_ok=True)
        door = open_door(site, "door-c", offline_config(mode="central"), threshold=0.4)
        assert door.sync.wait_current(10)
        assert first.stats["sync:snapshot"] + second.stats["sync:snapshot"] >= 1
        assert door.cache.revision == site.data.biometric.revision
        assert door.cache.digest() == first.revisions.expected_digest("default")
        assert subject in door.cache.subject_ids()
        # central decisions from whichever replica: both know the new subject
        for _ in range(4):
            decision = door.decider.request(request("door-c", probe_of(vector, site.rng)), PACK)
            assert decision.accepted and door.decider.last_source == "central"
        site.data.delete_subject(ADMIN, subject)
        assert wait_for(lambda: subject not in first.loaded.gallery and subject not in second.loaded.gallery)
        assert not door.decider.request(request("door-c", probe_of(vector, site.rng)), PACK).accepted
    finally:
        if door:
            door.close()
        for service in (first, second):
            service.stop()
            service.store.close()


def test_third_parties_get_pseudonymous_masked_signed_events(site, matcher):
    received: queue.Queue = queue.Queue()
    erp = MqttEndpoint(site.mqtt("erp"), on_message=received.put, subscriptions=(topics.ENROLLMENT_EVENTS,))
    erp.connect()
    try:
        time.sleep(0.3)
        subject, vector = enroll_person(site.data, site.rng, "Maria Gomez", card="C-ERP")
        incoming = received.get(timeout=10)
        body = json.loads(incoming.payload)
        event = messages.decode(json.dumps(body["event"]).encode(), messages.EnrollmentEvent)
        assert event.action == "enrolled" and event.display_name == "M**** G****"
        assert event.subject_ref != subject and subject not in incoming.payload.decode()
        assert b"Maria" not in incoming.payload and b"Gomez" not in incoming.payload
        assert messages.MatchRequest.pack_vector(vector)[:40].encode() not in incoming.payload
        site.data.node.signing.public_key().verify(bytes.fromhex(body["signature"]),
                                                   json.dumps(body["event"], separators=(",", ":"),
                                                              ensure_ascii=False).encode())
        site.data.delete_subject(ADMIN, subject)
        deleted = json.loads(received.get(timeout=10).payload)["event"]
        assert deleted["action"] == "deleted" and deleted["subject_ref"] == event.subject_ref
    finally:
        erp.close()


def test_central_mode_falls_back_to_the_cache_within_the_timeout(site):
    service = start_matcher(site)
    door = open_door(site, "door-a", offline_config(mode="central", answer_timeout_ms=300), threshold=0.4)
    try:
        assert door.sync.wait_current(10)
        subject, vector = next(iter(site.people.items()))
        assert door.decider.request(request("door-a", probe_of(vector, site.rng)), PACK).accepted
        assert door.decider.last_source == "central"
        service.stop()
        waits = []
        for _ in range(3):
            start = time.monotonic()
            decision = door.decider.request(request("door-a", probe_of(vector, site.rng)), PACK)
            waits.append(time.monotonic() - start)
            assert decision.accepted and door.decider.last_source == "local"
        # the first person waits the answer timeout; the matcher is then known silent, and the
        # next are decided from the cache at once
        assert 0.3 <= waits[0] < 0.3 + 0.25 and max(waits[1:]) < 0.15, waits
        assert door.link.matcher_silent and door.decider.stats["matcher_silent"] == 2
        stranger = np.random.default_rng(99).normal(size=512).astype(np.float32)
        assert not door.decider.request(request("door-a", stranger / np.linalg.norm(stranger)), PACK).accepted
        door.sync.current.clear()  # as after a reconnection: nothing to wait for from a silent matcher
        start = time.monotonic()
        assert door.decider.request(request("door-a", probe_of(vector, site.rng)), PACK).accepted
        assert time.monotonic() - start < 0.15 and door.decider.last_source == "local"
        # the sync client keeps asking: the matcher's first answer makes it the decider again
        service.store.close()
        service = start_matcher(site)
        assert wait_for(lambda: not door.link.matcher_silent, 20)
        assert door.decider.request(request("door-a", probe_of(vector, site.rng)), PACK).accepted
        assert door.decider.last_source == "central"
    finally:
        door.close()
        service.stop()
        service.store.close()


def test_local_decisions_refused_from_a_cache_too_old(site, tmp_path):
    door = open_door(site, "door-b", offline_config(mode="local", max_cache_age_s=60, sync_wait_ms=100),
                     threshold=0.4, connect=False)
    try:
        door.cache.confirm_current(now=time.time() - 3600)
        subject, vector = next(iter(site.people.items()))
        # not an error, and not "no match": the door says it cannot decide (docs/offline.md)
        decision = door.decider.request(request("door-b", probe_of(vector, site.rng)), PACK)
        assert not decision.accepted and decision.reason == messages.Reason.UNAVAILABLE
        assert door.decider.stats["stale_refused"] == 1 and door.decider.last_alarm.details["cache"] == "stale"
    finally:
        door.close()

"""Forged, replayed, altered and fuzzed traffic; two matcher replicas; a broker restart."""
from __future__ import annotations

import dataclasses
import os
import random
import threading
import time

import numpy as np
import pytest

from appliance.edge.link import MatcherLink
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.device_limits import Limits
from appliance.protocol import messages, topics
from appliance.security.envelope import MessageType
from appliance.transport.mqtt import MqttEndpoint

from appliance.capture.images import read_image
from sitekit import passing_image, start_matcher
from polling import wait_for

PACK = ("w600k-mbf", "1.0.0")
FUZZED = 300  # random, truncated, bit-flipped and half-JSON payloads from one device


def probe(pipeline, device: str, seed: int) -> messages.MatchRequest:
    rng = np.random.default_rng(seed)
    vector = rng.normal(size=pipeline.embedder_pack.embedding_size).astype(np.float32)
    vector /= np.linalg.norm(vector)
    packed = messages.MatchRequest.pack_vector(vector)
    return messages.MatchRequest(messages.new_id(), device, "identify", packed, time.time())



@pytest.fixture
def link(site):
    device = MatcherLink("door-a", site.mqtt("door-a"), site.device_keys("door-a"), site.directory)
    device.connect()
    yield device
    device.close()


def test_replayed_altered_and_fuzzed_requests_are_rejected_and_counted(site, pipeline, link):
    # every refusal is to be counted here: at the default 100 a window the gate mutes door-b and
    # the replica drops its topics, so whatever the broker had not yet routed is never seen
    # (that is the flood test's subject, tests/transport/test_flood_on_broker.py)
    matcher = start_matcher(site, pipeline, limits=Limits(rejects_per_window=FUZZED * 2))
    raw = MqttEndpoint(site.mqtt("door-b"))  # a provisioned device sending garbage on its own topic
    raw.connect()
    try:
        request = probe(pipeline, "door-b", 1)
        keys = site.device_keys("door-b")
        from appliance.security.envelope import Sealer

        sealed = Sealer(keys).seal(site.directory.get("matcher"), MessageType.PROBE, request.encode(), *PACK)
        topic = topics.device_topic("door-b", topics.REQUEST)
        raw.publish(topic, sealed)
        assert wait_for(lambda: matcher.stats["rejected"] == 1)
        raw.publish(topic, sealed)  # replay
        assert wait_for(lambda: matcher.stats["rejected:replayed_counter"] == 1)
        resealed = Sealer(keys).seal(site.directory.get("matcher"), MessageType.PROBE, request.encode(), *PACK)
        altered = bytearray(resealed)
        altered[len(altered) // 2] ^= 0x01
        raw.publish(topic, bytes(altered))  # the ciphertext of a session envelope: its AEAD tag refuses it
        assert wait_for(lambda: matcher.stats["rejected:decrypt_failed"] == 1)
        # a device signing a request that names another device
        other = messages.MatchRequest(messages.new_id(), "door-a", "identify", request.template_b64, time.time())
        raw.publish(topic, Sealer(keys).seal(site.directory.get("matcher"), MessageType.PROBE, other.encode(), *PACK))
        assert wait_for(lambda: matcher.stats["rejected:malformed"] == 1)
        rng = random.Random(5)
        for _ in range(FUZZED):
            kind = rng.choice(["random", "truncated", "flipped", "json"])
            if kind == "random":
                payload = os.urandom(rng.randint(0, 4000))
            elif kind == "truncated":
                payload = sealed[: rng.randint(0, len(sealed) - 1)]
            elif kind == "flipped":
                flipped = bytearray(sealed)
                flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
                payload = bytes(flipped)
            else:
                payload = b'{"v":1,"type":"match_request"' + os.urandom(20)
            raw.publish(topic, payload, qos=0)
        rejected = lambda: sum(v for k, v in matcher.stats.items() if k.startswith("rejected:"))  # noqa: E731
        assert wait_for(lambda: rejected() >= FUZZED + 3, timeout=20)
        assert matcher.stats["internal_error"] == 0
        # the service still answers a good request afterwards
        decision = link.request(probe(pipeline, "door-a", 2), PACK)
        assert decision.reason == messages.Reason.NO_MATCH
    finally:
        raw.close()
        matcher.stop()


def test_forged_decision_cannot_open_the_door(site, pipeline, link):
    """No matcher runs; door-b (a provisioned device) answers door-a's request itself."""
    from appliance.security.envelope import Sealer

    forger = MqttEndpoint(site.mqtt("door-b"))
    forger.connect()
    try:
        request = probe(pipeline, "door-a", 3)
        forged = messages.Decision(request.request_id, True, messages.Reason.MATCH, "Z**** S**")
        door_b_sealer = Sealer(site.device_keys("door-b"))
        sealed = door_b_sealer.seal(site.directory.get("door-a"), MessageType.DECISION, forged.encode())
        with pytest.raises(ApplianceError) as refused:  # the ACL refuses door-b on door-a's topic
            forger.publish(topics.device_topic("door-a", topics.DECISION), sealed)
        assert refused.value.code is ErrorCode.MESSAGE_REJECTED
        with pytest.raises(ApplianceError) as timeout:
            link.request(request, PACK, timeout=0.5, attempts=1)
        assert timeout.value.code is ErrorCode.REQUEST_TIMEOUT
    finally:
        forger.close()


def genuine(pipeline, faces) -> messages.MatchRequest:
    """A probe of an enrolled person (accepted, so no failure lock-out builds up)."""
    image = passing_image(pipeline, faces / "celeba-dev" / "id07229", skip=5)
    vector = pipeline.template(read_image(image))[1].vector
    packed = messages.MatchRequest.pack_vector(vector)
    return messages.MatchRequest(messages.new_id(), "door-a", "identify", packed, time.time())


def test_two_replicas_share_requests_and_one_can_stop(site, pipeline, faces, link):
    first, second = start_matcher(site, pipeline, "matcher-1"), start_matcher(site, pipeline, "matcher-2")
    template = genuine(pipeline, faces)
    fresh = lambda: dataclasses.replace(template, request_id=messages.new_id())  # noqa: E731
    try:
        answered = [link.request(fresh(), PACK) for _ in range(20)]
        assert all(d.accepted and d.display_name == "A** L***" for d in answered)
        assert first.stats["accepted"] > 0 and second.stats["accepted"] > 0
        assert first.stats["accepted"] + second.stats["accepted"] == 20
        stopper = threading.Timer(0.3, first.stop)
        stopper.start()
        results = [link.request(fresh(), PACK, timeout=1.0, attempts=4) for _ in range(20)]
        stopper.join()
        assert all(d.accepted for d in results)  # every request answered; the device retried where needed
    finally:
        first.stop()
        second.stop()


def test_clients_reconnect_after_a_broker_restart(site, pipeline, link):
    matcher = start_matcher(site, pipeline)
    try:
        assert link.request(probe(pipeline, "door-a", 7), PACK).reason == messages.Reason.NO_MATCH
        site.broker.restart()
        assert wait_for(lambda: link.online and matcher.endpoint.connected.is_set(), timeout=30)
        assert link.request(probe(pipeline, "door-a", 8), PACK, timeout=2.0).reason == messages.Reason.NO_MATCH
    finally:
        matcher.stop()


def test_a_door_provisioned_while_the_replica_runs_is_answered_after_the_broker_restart(site, pipeline):
    """Provisioning a door needs the broker's restart (its rights are read at start), not the
    replica's: the replica takes the new door up from the node directory (matcher.device_follow)."""
    matcher = start_matcher(site, pipeline)
    door = None
    try:
        site.provision(("door-n",), matchers=("matcher-1", "matcher-2"), auditors=("auditor-1",))
        site.broker.restart()
        assert wait_for(lambda: matcher.endpoint.connected.is_set() and matcher.stats["devices_followed"] == 1,
                        timeout=30)
        door = MatcherLink("door-n", site.mqtt("door-n"), site.device_keys("door-n"), site.directory)
        door.connect()
        assert door.request(probe(pipeline, "door-n", 21), PACK, timeout=3.0).reason == messages.Reason.NO_MATCH
    finally:
        if door is not None:
            door.close()
        matcher.stop()


def test_a_device_is_answered_only_for_the_modes_its_policy_allows(site, pipeline, link):
    from appliance.ops import provisioning

    matcher = start_matcher(site, pipeline)
    try:
        assert link.request(probe(pipeline, "door-a", 11), PACK).reason == messages.Reason.NO_MATCH
        provisioning.enroll_device(site.broker.pki, "door-a", modes=("verify",))  # 1:1 only from now on
        assert link.request(probe(pipeline, "door-a", 12), PACK).reason == messages.Reason.BAD_REQUEST
    finally:
        provisioning.enroll_device(site.broker.pki, "door-a", modes=provisioning.MATCHING_MODES)
        matcher.stop()

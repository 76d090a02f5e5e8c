"""The matcher as a router of topic handlers, without a broker: routing and subscriptions,
the courier, and the request handler end to end on real envelopes (the device's keys seal,
the device's keys open the answer)."""
from __future__ import annotations

import dataclasses
from collections import Counter
import numpy as np
import pytest

from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.device_limits import Limits
from appliance.matcher.gate import Gate
from appliance.matcher.loaded import LoadedGallery
from appliance.matcher.replica_io import Auditor, Courier
from appliance.matcher.requests import RequestHandler
from appliance.matcher.service import MatcherService, Route
from appliance.matching import Gallery
from appliance.protocol import messages, topics
from appliance.security.envelope import EnvelopeRejected, MessageType
from appliance.transport.mqtt import Incoming, MqttSettings
from appliance.vision.templates import Template
from appliance.workers import QueueWorker
from matcherkit import FakeLog, make_node


def route(*kinds: str) -> tuple[Route, list[Incoming]]:
    """A route whose worker is never started: what the router queues stays in its queue."""
    taken: list[Incoming] = []
    return Route(kinds, QueueWorker("-".join(kinds), taken.append, 10)), taken


def incoming(topic: str) -> Incoming:
    return Incoming(topic, b"payload", 1, False)


def test_a_replica_on_a_clean_session_is_delivered_at_qos_0_one_keeping_its_session_at_qos_1(tmp_path, keys):
    node = make_node(tmp_path, keys)
    try:
        clean = MqttSettings("127.0.0.1", 8883, "matcher-1", tmp_path / "ca", tmp_path / "cert", tmp_path / "key")
        assert MatcherService("matcher-1", clean, [], node.courier()).subscribe_qos == 0
        kept = dataclasses.replace(clean, session_expiry_s=60)  # the broker holds QoS 1 messages meanwhile
        assert MatcherService("matcher-1", kept, [], node.courier()).subscribe_qos == 1
    finally:
        node.store.close()
        node.data.close()


def test_a_replica_that_knows_its_devices_subscribes_to_each_ones_topics(tmp_path, keys):
    """One filter per device and kind (not a wildcard), so that a muted device can be shed at the
    broker (tests/transport/test_flood_on_broker.py does it on the real broker)."""
    node = make_node(tmp_path, keys)
    try:
        (requests, _), (events, _) = route(topics.REQUEST), route(topics.EVENT)
        gate = Gate("matcher-1", Limits(), Auditor("matcher-1"), Counter(), devices=frozenset({"door-b", "door-a"}))
        service = MatcherService("matcher-1", None, [requests, events], node.courier(), gate=gate)
        assert service.subscriptions == tuple(topics.shared(topics.device_topic(door, kind)) for door in
                                              ("door-a", "door-b") for kind in (topics.REQUEST, topics.EVENT))
        assert service.shed == frozenset()  # nothing to unsubscribe before it is connected
    finally:
        node.store.close()
        node.data.close()


def test_each_topic_kind_goes_to_its_handler_and_anything_else_is_counted(tmp_path, keys):
    node = make_node(tmp_path, keys)
    try:
        (requests, _), (events, _) = route(topics.REQUEST), route(topics.EVENT, topics.ALARM)
        service = MatcherService("matcher-1", None, [requests, events], node.courier())
        assert service.subscriptions == tuple(topics.shared(topics.all_devices(kind))
                                              for kind in (topics.REQUEST, topics.EVENT, topics.ALARM))
        service.route(incoming(topics.device_topic("door-a", topics.REQUEST)))
        service.route(incoming(topics.device_topic("door-b", topics.ALARM)))
        service.route(incoming(topics.device_topic("door-a", topics.TELEMETRY)))  # nobody reads it
        service.route(incoming(topics.ENROLLMENT_EVENTS))  # not a device topic
        assert requests.worker.depth == 1 and events.worker.depth == 1
        assert service.stats["rejected:topic"] == 2 and service.queue_depth == 2
        assert service.endpoint is None and not service.connected  # nothing touches the network before start
        with pytest.raises(ValueError):
            MatcherService("matcher-1", None, [requests, route(topics.REQUEST)[0]], node.courier())
    finally:
        node.store.close()
        node.data.close()


def test_the_courier_sends_only_once_attached_and_only_on_the_devices_own_topic(tmp_path, keys):
    node = make_node(tmp_path, keys)
    try:
        courier = Courier("matcher-1", node.keys, node.directory)
        with pytest.raises(ApplianceError) as refused:
            courier.sync("door-a", messages.OutboxAck([messages.new_id()]))
        assert refused.value.code is ErrorCode.BROKER_UNAVAILABLE
        courier.attach(node.broker.publish)
        ack = messages.OutboxAck([messages.new_id()])
        courier.sync("door-a", ack)
        (sent,) = node.broker.sent
        assert sent.topic == topics.device_topic("door-a", topics.SYNC)
        assert node.opened_by("door-a", sent, MessageType.SYNC) == ack
        with pytest.raises(EnvelopeRejected):
            node.opened_by("door-b", sent, MessageType.SYNC)  # sealed to door-a only
    finally:
        node.store.close()
        node.data.close()


@pytest.fixture
def setup(tmp_path, keys):
    node = make_node(tmp_path, keys)
    gallery = Gallery(*node.pack, node.dimension)
    ana = node.vector()
    gallery.upsert("s-ana", Template(ana, *node.pack))
    loaded = LoadedGallery(gallery, {"C-ANA": "s-ana"}, {"s-ana": "A** L***"})
    log, stats = FakeLog(), Counter()
    allowed = {"door-a": ("verify", "identify"), "door-b": ("verify",)}
    handler = RequestHandler("matcher-1", node.keys, node.directory, loaded, 0.5, node.courier(),
                             Auditor("matcher-1", log), stats,
                             device_allowed=lambda device, mode: mode in allowed.get(device, ()))
    yield node, handler, ana, log, stats
    node.store.close()
    node.data.close()


def request(device: str, vector: np.ndarray, claim: str = "", request_id: str = "") -> messages.MatchRequest:
    return messages.MatchRequest(request_id or messages.new_id(), device, "verify" if claim else "identify",
                                 messages.MatchRequest.pack_vector(vector), 0.0, claim=claim)


def decisions(node, device: str) -> list[messages.Decision]:
    return [node.opened_by(device, p, MessageType.DECISION)
            for p in node.broker.on(topics.device_topic(device, topics.DECISION))]


def test_a_request_is_decided_and_answered_on_the_devices_decision_topic(setup):
    node, handler, ana, log, stats = setup
    asked = request("door-a", ana)
    handler.handle(node.sealed_by("door-a", asked, MessageType.PROBE, node.pack))
    (answer,) = decisions(node, "door-a")
    assert answer == messages.Decision(asked.request_id, True, messages.Reason.MATCH, "A** L***", 0.0, "s-ana")
    (published,) = node.broker.sent
    assert published.options == {"correlation": b"corr", "qos": 0}  # a retry is answered from the cache
    assert stats["accepted"] == 1
    assert log.entries == [("matcher-1", "door-a", "decision.identify", "s-ana", "pass",
                            f"match; request {asked.request_id}")]  # the door's id: the entry links to its log
    # a retry (same request id, a new envelope) gets the very same sealed answer, counted once
    handler.handle(node.sealed_by("door-a", asked, MessageType.PROBE, node.pack))
    assert node.broker.sent[1].payload == published.payload and stats["retries"] == 1 and stats["accepted"] == 1


def test_forged_replayed_and_malformed_requests_are_counted_and_audited_once_per_window(setup):
    node, handler, ana, log, stats = setup
    handler.gate.clock = lambda: 1000.0  # a window's span is then exactly known
    forged = node.sealed_by("door-b", request("door-a", ana), MessageType.PROBE, node.pack, topic_of="door-a")
    handler.handle(forged)  # door-b's envelope on door-a's topic
    assert stats["rejected:sender_topic_mismatch"] == 1
    genuine = node.sealed_by("door-a", request("door-a", ana), MessageType.PROBE, node.pack)
    handler.handle(genuine)
    handler.handle(genuine)  # the same envelope again
    assert stats["rejected:replayed_counter"] == 1
    handler.handle(node.sealed_by("door-b", request("door-a", ana), MessageType.PROBE, node.pack))
    assert stats["rejected:malformed"] == 1  # door-b naming door-a inside its own envelope
    assert len(decisions(node, "door-a")) == 1 and decisions(node, "door-b") == []
    assert [entry[2] for entry in log.entries] == ["decision.identify"]  # no row per refusal ...
    handler.gate.flush(closing=True)  # ... one per device when its window ends
    records = {entry[1]: entry[2:] for entry in log.entries[1:]}
    assert records == {
        "door-a": ("message.rejected", "-", "rejected",
                   "2 messages rejected (replayed counter: 1, sender topic mismatch: 1) in 0.0 s on req"),
        "door-b": ("message.rejected", "-", "rejected", "1 message rejected (malformed: 1) in 0.0 s on req")}


def test_policy_pack_and_size_are_checked_before_the_gallery(setup):
    node, handler, ana, _, _ = setup
    handler.handle(node.sealed_by("door-b", request("door-b", ana), MessageType.PROBE, node.pack))  # 1:1 only
    handler.handle(node.sealed_by("door-a", request("door-a", ana), MessageType.PROBE, ("other", "1")))
    small = np.ones(8, np.float32) / np.sqrt(8)
    handler.handle(node.sealed_by("door-a", request("door-a", small), MessageType.PROBE, node.pack))
    reasons = [d.reason for d in decisions(node, "door-b") + decisions(node, "door-a")]
    assert reasons == [messages.Reason.BAD_REQUEST, messages.Reason.PACK_MISMATCH, messages.Reason.BAD_REQUEST]


def test_five_strangers_lock_the_device_out_and_the_answer_says_for_how_long(setup):
    node, handler, ana, _, _ = setup
    for _ in range(6):
        handler.handle(node.sealed_by("door-a", request("door-a", node.vector()), MessageType.PROBE, node.pack))
    handler.handle(node.sealed_by("door-a", request("door-a", ana), MessageType.PROBE, node.pack))
    answers = decisions(node, "door-a")
    assert [d.reason for d in answers] == [messages.Reason.NO_MATCH] * 5 + [messages.Reason.LOCKED_OUT] * 2
    assert 29.0 <= answers[-1].retry_after_s <= 30.0 and not answers[-1].accepted

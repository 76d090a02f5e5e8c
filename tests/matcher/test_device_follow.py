"""A door provisioned while a replica runs is served without restarting it: the replica
re-reads the node directory, and the new door's requests are routed, opened and answered;
a broken directory file changes nothing."""
from __future__ import annotations

from contextlib import contextmanager

from appliance.matcher.app import compose
from appliance.matcher.loaded import LoadedGallery
from appliance.matching import Gallery
from appliance.protocol import messages, topics
from appliance.protocol.directory import MATCHER_NODE, NodeDirectory
from appliance.security.envelope import MessageType, NodeKeys, Opener, ReplayGuard, Sealer
from appliance.transport.mqtt import Incoming
from appliance.vision.templates import Template
from matcherkit import make_node
from polling import wait_for

NEW_DOOR = "door-n"


def request_from(node, keys: NodeKeys, vector) -> tuple[messages.MatchRequest, Incoming]:
    request = messages.MatchRequest(messages.new_id(), keys.node_id, "identify",
                                    messages.MatchRequest.pack_vector(vector), 0.0)
    sealed = Sealer(keys).seal(node.directory.get(MATCHER_NODE), MessageType.PROBE, request.encode(), *node.pack)
    return request, Incoming(topics.device_topic(keys.node_id, topics.REQUEST), sealed, 0, False)


def answers_to(node, keys: NodeKeys) -> list[messages.Decision]:
    opener = Opener(keys, node.directory.matchers(), guard=ReplayGuard())
    return [messages.decode(opener.open(p.payload, expect=MessageType.DECISION).payload)
            for p in node.broker.on(topics.device_topic(keys.node_id, topics.DECISION))]


@contextmanager
def replica(tmp_path, keys):
    """A replica on the fake broker (no network) over a site whose directory is on disk."""
    node = make_node(tmp_path, keys)
    node.directory.save()  # as ``appliance provision`` leaves it
    gallery = Gallery(*node.pack, node.dimension)
    person = node.vector()
    gallery.upsert("s1", Template(person, *node.pack))
    matcher = compose("matcher-1", None, node.keys, node.directory, LoadedGallery(gallery, {}, {"s1": "A**"}), 0.5,
                      data=node.data)
    matcher.service.courier.attach(node.broker.publish)
    for route in matcher.service.routes:
        route.start()
    try:
        yield node, matcher, person
    finally:
        for route in matcher.service.routes:
            route.stop()
        matcher.stop()
        node.store.close()
        node.data.close()


def test_a_door_provisioned_while_the_replica_runs_is_answered(tmp_path, keys):
    with replica(tmp_path, keys) as (node, matcher, person):
        door = NodeKeys.generate(NEW_DOOR)
        before, incoming = request_from(node, door, person)
        matcher.service.route(incoming)  # not in the directory yet: not even queued
        assert matcher.devices.check() == []  # the first look: the doors it was built with
        NodeDirectory.load(node.directory.path).add(door)  # ``appliance provision device`` writes the file
        assert matcher.devices.check() == [NEW_DOOR]
        assert matcher.devices.check() == []  # taken up once
        assert any(NEW_DOOR in f for f in matcher.service.subscriptions)
        request, incoming = request_from(node, door, person)
        matcher.service.route(incoming)
        assert wait_for(lambda: len(answers_to(node, door)) == 1)
        answer = answers_to(node, door)[0]
        assert (answer.request_id, answer.accepted, answer.subject) == (request.request_id, True, "s1")
        assert matcher.stats["devices_followed"] == 1
        node.directory.path.write_text("{not json")  # a broken file: keep serving what is known
        assert matcher.devices.check() == []
        again, incoming = request_from(node, door, person)
        matcher.service.route(incoming)
        assert wait_for(lambda: len(answers_to(node, door)) == 2)
        assert before.request_id not in {a.request_id for a in answers_to(node, door)}


def test_a_re_keyed_door_is_opened_with_its_new_keys(tmp_path, keys):
    with replica(tmp_path, keys) as (node, matcher, person):
        rekeyed = NodeKeys.generate("door-a")
        NodeDirectory.load(node.directory.path).add(rekeyed)
        _, incoming = request_from(node, rekeyed, person)
        matcher.service.route(incoming)
        assert wait_for(lambda: matcher.stats["rejected:bad_signature"] == 1)  # the replica holds the old keys
        assert answers_to(node, rekeyed) == []
        assert matcher.devices.check() == ["door-a"]
        request, incoming = request_from(node, rekeyed, person)
        matcher.service.route(incoming)
        assert wait_for(lambda: [a.request_id for a in answers_to(node, rekeyed)] == [request.request_id])

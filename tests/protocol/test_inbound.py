"""One "open and check the sender" step for everything that arrives on a device topic: the
matcher's handlers, the device's matcher link and its sync client all use it."""
from __future__ import annotations

import pytest

from appliance.protocol import topics
from appliance.protocol.inbound import open_on_topic
from appliance.security.envelope import EnvelopeRejected, MessageType, NodeKeys, Opener, RejectReason, Sealer

MATCHER = NodeKeys.generate("matcher")
REPLICA = NodeKeys("matcher-1", MATCHER.signing, MATCHER.agreement)  # a replica signs under its own name
DOOR_A, DOOR_B = NodeKeys.generate("door-a"), NodeKeys.generate("door-b")


def matcher_opener() -> Opener:
    return Opener(MATCHER, [DOOR_A.public(), DOOR_B.public()])


def reason(call) -> RejectReason:
    with pytest.raises(EnvelopeRejected) as refused:
        call()
    return refused.value.reason


def test_on_a_topic_a_device_publishes_the_sender_must_be_that_device():
    opener = matcher_opener()
    sealed = Sealer(DOOR_A).seal(MATCHER.public(), MessageType.PROBE, b"{}")
    inbound = open_on_topic(opener, topics.device_topic("door-a", topics.REQUEST), sealed, MessageType.PROBE)
    assert (inbound.device, inbound.kind, inbound.header.sender, inbound.payload) == ("door-a", "req", "door-a", b"{}")
    forged = Sealer(DOOR_B).seal(MATCHER.public(), MessageType.EVENT, b"{}")
    assert reason(lambda: open_on_topic(opener, topics.device_topic("door-a", topics.EVENT), forged)) \
        is RejectReason.SENDER_TOPIC_MISMATCH
    assert opener.rejections[RejectReason.SENDER_TOPIC_MISMATCH] == 1


def test_what_is_not_a_device_topic_or_does_not_open_is_refused_and_counted():
    opener = matcher_opener()
    sealed = Sealer(DOOR_A).seal(MATCHER.public(), MessageType.PROBE, b"{}")
    assert reason(lambda: open_on_topic(opener, topics.ENROLLMENT_EVENTS, sealed)) is RejectReason.TOPIC
    assert reason(lambda: open_on_topic(opener, topics.device_topic("door-a", topics.REQUEST), sealed,
                                        MessageType.EVENT)) is RejectReason.UNEXPECTED_TYPE
    assert reason(lambda: open_on_topic(opener, topics.device_topic("door-a", topics.REQUEST), b"junk")) \
        is RejectReason.TRUNCATED
    assert opener.rejections[RejectReason.TOPIC] == 1 and sum(opener.rejections.values()) == 3


def test_on_a_topic_a_device_reads_the_writers_are_the_matcher_replicas():
    device = Opener(DOOR_A, [REPLICA.public()])  # what MatcherLink and SyncClient build
    answer = Sealer(REPLICA).seal(DOOR_A.public(), MessageType.DECISION, b"{}")
    inbound = open_on_topic(device, topics.device_topic("door-a", topics.DECISION), answer, MessageType.DECISION)
    assert inbound.device == "door-a" and inbound.header.sender == "matcher-1"
    # another device answering door-a (were the broker to let it through) is unknown to it
    forged = Sealer(DOOR_B).seal(DOOR_A.public(), MessageType.SYNC, b"{}")
    assert reason(lambda: open_on_topic(device, topics.device_topic("door-a", topics.SYNC), forged)) \
        is RejectReason.UNKNOWN_SENDER

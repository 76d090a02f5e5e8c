"""The MQTT wrapper on a real broker: a burst arrives complete and in order, at the QoS the
subscriber asked for, with its request/response properties; other properties pass through."""
from __future__ import annotations

import threading
import time

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.protocol import topics
from appliance.transport.mqtt import FILTERS_PER_PACKET, MqttEndpoint, settings_for
from polling import wait_for

MESSAGES = 300  # enough that many arrive while the subscriber is busy with the first ones


def test_a_burst_arrives_in_order_at_the_qos_subscribed_with_its_properties(broker):
    got, done = [], threading.Event()

    def on_message(incoming):
        got.append(incoming)
        if len(got) == MESSAGES:
            done.set()

    subscriber = MqttEndpoint(settings_for(broker.pki, "matcher-1", broker.host, broker.port), on_message,
                              subscriptions=(topics.shared(topics.all_devices(topics.REQUEST)),), subscribe_qos=0)
    subscriber.connect()
    door = MqttEndpoint(settings_for(broker.pki, "door-a", broker.host, broker.port))
    door.connect()
    try:
        topic = topics.device_topic("door-a", topics.REQUEST)
        for index in range(MESSAGES):
            door.publish(topic, index.to_bytes(4, "big"), wait=False,  # QoS 1 up, as a door sends
                         response_topic=topics.device_topic("door-a", topics.DECISION), correlation=b"%d" % index)
        assert done.wait(20)
    finally:
        door.close()
        subscriber.close()
    assert [int.from_bytes(m.payload, "big") for m in got] == list(range(MESSAGES))
    assert [m.correlation for m in got] == [b"%d" % index for index in range(MESSAGES)]
    assert {m.response_topic for m in got} == {topics.device_topic("door-a", topics.DECISION)}
    assert {m.qos for m in got} == {0}  # delivered at the subscription's QoS: no PUBACK to send


def test_a_publish_with_other_properties_arrives_with_its_correlation(broker):
    got, done = [], threading.Event()

    def on_message(incoming):
        got.append(incoming)
        done.set()

    subscriber = MqttEndpoint(settings_for(broker.pki, "matcher-1", broker.host, broker.port), on_message,
                              subscriptions=(topics.shared(topics.all_devices(topics.EVENT)),))
    subscriber.connect()
    door = MqttEndpoint(settings_for(broker.pki, "door-a", broker.host, broker.port))
    door.connect()
    try:
        unusual = Properties(PacketTypes.PUBLISH)  # a user property beside the correlation data
        unusual.UserProperty = ("k", "v")
        unusual.CorrelationData = b"c-1"
        door._client.publish(topics.device_topic("door-a", topics.EVENT), b"event", qos=1, properties=unusual)
        assert done.wait(10)
    finally:
        door.close()
        subscriber.close()
    (incoming,) = got
    assert (incoming.topic, incoming.payload, incoming.qos, incoming.correlation) == (
        topics.device_topic("door-a", topics.EVENT), b"event", 1, b"c-1")


def test_filters_added_and_dropped_at_run_time_are_held_across_a_reconnect(broker):
    """``subscribe``/``unsubscribe`` while connected take effect at once; a reconnect renews
    exactly the filters held (how a matcher sheds a muted device's topics)."""
    got: list[str] = []
    a, b = (topics.device_topic(door, topics.REQUEST) for door in ("door-a", "door-b"))
    subscriber = MqttEndpoint(settings_for(broker.pki, "matcher-1", broker.host, broker.port),
                              lambda incoming: got.append(incoming.topic), subscriptions=(topics.shared(a),))
    subscriber.connect()
    doors = [MqttEndpoint(settings_for(broker.pki, door, broker.host, broker.port)) for door in ("door-a", "door-b")]
    for door in doors:
        door.connect()

    def arriving(expected: list[str]) -> bool:
        """Each door publishes on its request topic (QoS 1: routed once acknowledged); did
        exactly ``expected`` arrive?"""
        got.clear()
        for door, topic in zip(doors, (a, b)):
            door.publish(topic, b"x")
        time.sleep(0.3)
        return sorted(set(got)) == expected

    try:
        assert wait_for(lambda: arriving([a]), timeout=10)
        subscriber.subscribe([topics.shared(b)])
        assert wait_for(lambda: arriving([a, b]), timeout=10)
        subscriber.unsubscribe([topics.shared(a)])
        assert wait_for(lambda: arriving([b]), timeout=10)
        assert subscriber.subscriptions == (topics.shared(b),)
        broker.restart()  # a clean session: the broker forgets every subscription; the endpoint renews its own
        assert wait_for(lambda: subscriber.connections == 2 and subscriber.connected.is_set(), timeout=30)
        assert all(wait_for(door.connected.is_set, timeout=30) for door in doors)
        assert wait_for(lambda: arriving([b]), timeout=10)
    finally:
        for door in doors:
            door.close()
        subscriber.close()


def test_more_filters_than_one_packet_holds_are_all_subscribed(broker):
    """A site's worth of per-device filters goes out in packets of ``FILTERS_PER_PACKET`` (one
    packet of them all would pass the broker's 64 KiB limit and cost the connection)."""
    got: list[str] = []
    names = [f"door-{index:05d}-{'x' * 40}" for index in range(2 * FILTERS_PER_PACKET + 100)]  # long names
    filters = [topics.shared(topics.device_topic(name, topics.REQUEST)) for name in names]
    first, last = (topics.device_topic(door, topics.REQUEST) for door in ("door-a", "door-b"))
    subscriber = MqttEndpoint(settings_for(broker.pki, "matcher-1", broker.host, broker.port),
                              lambda incoming: got.append(incoming.topic),
                              subscriptions=(topics.shared(first), *filters, topics.shared(last)))
    subscriber.connect()
    doors = [MqttEndpoint(settings_for(broker.pki, door, broker.host, broker.port)) for door in ("door-a", "door-b")]
    try:
        for door in doors:
            door.connect()
        assert wait_for(lambda: [door.publish(topic, b"x") for door, topic in zip(doors, (first, last))]
                        and {first, last} <= set(got), timeout=10)
        assert subscriber.connections == 1  # never cut off for an oversized packet
    finally:
        for door in doors:
            door.close()
        subscriber.close()

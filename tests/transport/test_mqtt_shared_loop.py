"""Many endpoints served from one thread (``transport.mqtt_shared_loop``) on a real broker: doors
ask and hear answers with no thread of their own, also on descriptors ``select()`` cannot watch,
keep their subscriptions over a broker restart, and close with a clean DISCONNECT (no will)."""
from __future__ import annotations

import queue
import threading
import time

import pytest

from appliance.protocol import topics
from appliance.transport.mqtt import Incoming, MqttEndpoint, settings_for
from appliance.transport.mqtt_shared_loop import SharedLoop

DOORS = ("door-a", "door-b")
PER_DOOR = 100
WAIT_S = 20.0
QUIET_S = 0.5


class _Answerer:
    """A matcher on its own thread: answers every request on the asker's decision topic."""

    def __init__(self, broker):
        settings = settings_for(broker.pki, "matcher-1", broker.host, broker.port)
        self.endpoint = MqttEndpoint(settings, on_message=self._answer,
                                     subscriptions=(topics.shared(topics.all_devices(topics.REQUEST)),))
        self.endpoint.connect()

    def _answer(self, incoming: Incoming) -> None:
        self.endpoint.publish(incoming.response_topic, incoming.payload, qos=0, correlation=incoming.correlation)


def _doors(broker, loop: SharedLoop, heard: dict[str, list[Incoming]], **options) -> list[MqttEndpoint]:
    doors = []
    for name in DOORS:
        settings = settings_for(broker.pki, name, broker.host, broker.port, **options)
        door = MqttEndpoint(settings, on_message=heard.setdefault(name, []).append,
                            subscriptions=(topics.device_topic(name, topics.DECISION),), network=loop.attach)
        door.connect(wait=False)
        doors.append(door)
    assert loop.run_until(lambda: all(door.connected.is_set() for door in doors), WAIT_S)
    return doors


def _ask(loop: SharedLoop, doors: list[MqttEndpoint], heard: dict[str, list[Incoming]], count: int) -> None:
    """Every door publishes ``count`` requests without waiting, then the loop hears the answers."""
    before = {name: len(heard[name]) for name in heard}
    for index in range(count):
        for door in doors:
            name = door.settings.client_id
            tag = b"%s-%d" % (name.encode(), index)
            door.publish(topics.device_topic(name, topics.REQUEST), tag, wait=False,
                         response_topic=topics.device_topic(name, topics.DECISION), correlation=tag)
    assert loop.run_until(lambda: all(len(heard[name]) - before[name] >= count for name in heard), WAIT_S)


def test_doors_on_one_thread_ask_and_hear_every_answer_in_order(broker):
    matcher = _Answerer(broker)
    threads_before = threading.active_count()
    loop, heard = SharedLoop(), {}
    doors = _doors(broker, loop, heard)
    try:
        assert loop.run_until(lambda: False, QUIET_S) is False  # the SUBACKs are in
        _ask(loop, doors, heard, PER_DOOR)
        assert threading.active_count() == threads_before  # no network thread per door
    finally:
        for door in doors:
            door.close(announce_offline=False)
        matcher.endpoint.close()
    for name in DOORS:
        assert [m.payload for m in heard[name]] == [b"%s-%d" % (name.encode(), i) for i in range(PER_DOOR)]
        assert all(m.correlation == m.payload for m in heard[name])


def test_connections_on_descriptors_above_the_select_limit_are_served(broker, high_descriptors):
    matcher = _Answerer(broker)  # its own network thread, on a descriptor above the limit too
    loop, heard = SharedLoop(), {}
    try:
        doors = _doors(broker, loop, heard)
        try:
            assert all(door._client.socket().fileno() >= high_descriptors for door in doors)
            loop.run_until(lambda: False, QUIET_S)
            _ask(loop, doors, heard, 10)
        finally:
            for door in doors:
                door.close(announce_offline=False)
    finally:
        matcher.endpoint.close()
    assert all(len(heard[name]) == 10 for name in DOORS)


def test_a_broker_restart_is_survived_with_the_subscriptions_renewed(broker):
    loop, heard = SharedLoop(), {}
    doors = _doors(broker, loop, heard, reconnect_min_s=1, reconnect_max_s=2)
    try:
        broker.restart()
        assert loop.run_until(lambda: all(door.connections >= 2 for door in doors), WAIT_S)
        matcher = _Answerer(broker)
        try:
            loop.run_until(lambda: False, QUIET_S)
            _ask(loop, doors, heard, 5)
        finally:
            matcher.endpoint.close()
    finally:
        for door in doors:
            door.close(announce_offline=False)
    assert all(len(heard[name]) == 5 for name in DOORS)


def _watched_door(broker) -> tuple[queue.Queue, MqttEndpoint, SharedLoop, MqttEndpoint]:
    """door-b on a shared loop, connected, with a will on its availability topic, and an auditor
    whose inbox hears that topic."""
    inbox: queue.Queue = queue.Queue()
    topic = topics.device_topic("door-b", topics.AVAILABILITY)
    watcher = MqttEndpoint(settings_for(broker.pki, "auditor-1", broker.host, broker.port), on_message=inbox.put,
                           subscriptions=(topic,))
    watcher.connect()
    loop = SharedLoop()
    door = MqttEndpoint(settings_for(broker.pki, "door-b", broker.host, broker.port, will_topic=topic),
                        network=loop.attach)
    door.connect(wait=False)
    assert loop.run_until(door.connected.is_set, WAIT_S)
    return inbox, watcher, loop, door


def test_close_is_a_clean_disconnect_so_the_will_does_not_fire(broker):
    inbox, watcher, loop, door = _watched_door(broker)
    try:
        loop.run_until(lambda: False, QUIET_S)  # "online" goes out, written by the loop
        assert inbox.get(timeout=WAIT_S).payload == b"online"
        door.close(announce_offline=False)
        assert not door.connected.is_set()
        time.sleep(QUIET_S)
        assert inbox.empty()  # a dropped connection would have published the will ("offline")
    finally:
        watcher.close()


def test_serve_reads_what_arrives_for_its_seconds_and_not_longer(broker):
    matcher = _Answerer(broker)
    loop, heard = SharedLoop(), {}
    doors = _doors(broker, loop, heard)
    try:
        loop.serve(QUIET_S)  # the SUBACKs are in
        door = doors[0]
        name = door.settings.client_id
        door.publish(topics.device_topic(name, topics.REQUEST), b"one", wait=False,
                     response_topic=topics.device_topic(name, topics.DECISION), correlation=b"one")
        begin = time.monotonic()
        loop.serve(QUIET_S)
        assert time.monotonic() - begin >= QUIET_S and [m.payload for m in heard[name]] == [b"one"]
        begin = time.monotonic()
        loop.serve(-QUIET_S)  # a start time already past: no waiting
        assert time.monotonic() - begin < QUIET_S
    finally:
        for door in doors:
            door.close(announce_offline=False)
        matcher.endpoint.close()


def test_a_publish_that_would_wait_on_the_reading_thread_is_refused_and_close_still_says_offline(broker):
    """Only ``poll`` reads a shared loop's PUBACKs, on the publisher's own thread: waiting for one
    there would only time out, so it is refused at once; ``close`` announces "offline" without waiting."""
    inbox, watcher, loop, door = _watched_door(broker)
    try:
        with pytest.raises(RuntimeError, match="use wait=False"):
            door.publish(door.settings.will_topic, b"waits", qos=1)
        loop.run_until(lambda: False, QUIET_S)
        begin = time.monotonic()
        door.close()
        assert time.monotonic() - begin < 1.0  # no wait for a PUBACK nobody reads
        heard = []  # a retained "online" of an earlier test's door-b may come first
        while b"offline" not in heard:
            heard.append(inbox.get(timeout=WAIT_S).payload)
        assert heard[-2:] == [b"online", b"offline"]
    finally:
        watcher.close()

"""The endpoint's own network thread (``transport.mqtt_loop``) on a real broker: answers from
several threads go out with their own properties, a PUBACK still carries its reason after QoS 0
traffic, a socket above ``select()``'s descriptor limit still works, a close is a clean
DISCONNECT (no will), and a close cuts a reconnect back-off short."""
from __future__ import annotations

import queue
import threading
import time

import pytest

from appliance.broker.process import free_port
from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import topics
from appliance.transport.mqtt import Incoming, MqttEndpoint, settings_for
from appliance.transport.mqtt_loop import MISC_EVERY_S
from appliance.transport.mqtt_shared_loop import SharedLoop
from appliance.workers import QueueWorker

PER_THREAD = 200
THREADS = 3
QUIET_S = 0.5
CLOSE_WITHIN_S = 2.0


def _endpoint(broker, name, subscriptions=(), inbox=None, **options) -> MqttEndpoint:
    client = MqttEndpoint(settings_for(broker.pki, name, broker.host, broker.port, **options),
                          on_message=(inbox.put if inbox is not None else None), subscriptions=subscriptions)
    client.connect()
    return client


def _drain(inbox: queue.Queue, expected: int, timeout: float = 20.0) -> list:
    items, deadline = [], time.monotonic() + timeout
    while len(items) < expected and time.monotonic() < deadline:
        try:
            items.append(inbox.get(timeout=0.1))
        except queue.Empty:
            continue
    return items


def test_qos0_answers_from_several_threads_keep_their_own_properties(broker):
    inbox: queue.Queue = queue.Queue()
    decisions = topics.device_topic("door-a", topics.DECISION)
    door = _endpoint(broker, "door-a", (decisions,), inbox)
    matcher = _endpoint(broker, "matcher-1")

    def answer(thread: int) -> None:
        for index in range(PER_THREAD):
            tag = b"%d-%d" % (thread, index)
            reply_to = decisions if index % 2 else None  # two shapes of properties, one object each
            matcher.publish(decisions, tag, qos=0, correlation=tag, response_topic=reply_to)

    try:
        workers = [threading.Thread(target=answer, args=(n,)) for n in range(THREADS)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        got = _drain(inbox, THREADS * PER_THREAD)
    finally:
        matcher.close()
        door.close()
    assert len(got) == THREADS * PER_THREAD
    assert all(m.correlation == m.payload for m in got)
    assert all(m.response_topic == (decisions if int(m.payload.split(b"-")[1]) % 2 else None) for m in got)
    for thread in range(THREADS):  # one publisher's messages stay in its order
        mine = [m.payload for m in got if m.payload.startswith(b"%d-" % thread)]
        assert mine == [b"%d-%d" % (thread, index) for index in range(PER_THREAD)]


def test_a_puback_after_qos0_traffic_still_carries_its_reason(broker):
    matcher = _endpoint(broker, "matcher-1")
    door = _endpoint(broker, "door-a")
    try:
        for index in range(50):  # QoS 0: nobody waits, no report asked of paho
            door.publish(topics.device_topic("door-a", topics.EVENT), b"%d" % index, qos=0)
        with pytest.raises(ApplianceError) as refused:
            door.publish(topics.device_topic("door-b", topics.EVENT), b"not mine")
        assert refused.value.code is ErrorCode.MESSAGE_REJECTED
        door.publish(topics.device_topic("door-a", topics.EVENT), b"mine")  # accepted: no error
        matcher.publish(topics.device_topic("door-a", topics.DECISION), b"waited for", qos=1)
    finally:
        door.close()
        matcher.close()


def test_an_endpoint_on_a_descriptor_above_the_select_limit_connects_and_hears(broker, high_descriptors):
    inbox: queue.Queue = queue.Queue()
    decisions = topics.device_topic("door-a", topics.DECISION)
    door = _endpoint(broker, "door-a", (decisions,), inbox)  # before the fix: no CONNACK ever read
    try:
        assert door._client.socket().fileno() >= high_descriptors
        door.publish(topics.device_topic("door-a", topics.EVENT), b"waited for its PUBACK")
        matcher = _endpoint(broker, "matcher-1")
        try:
            matcher.publish(decisions, b"heard", qos=1)
        finally:
            matcher.close()
        assert [m.payload for m in _drain(inbox, 1)] == [b"heard"]
    finally:
        door.close()


def test_close_is_a_clean_disconnect_so_the_will_does_not_fire(broker):
    inbox: queue.Queue = queue.Queue()
    topic = topics.device_topic("door-b", topics.AVAILABILITY)
    watcher = _endpoint(broker, "auditor-1", (topic,), inbox)
    try:
        door = _endpoint(broker, "door-b", will_topic=topic)
        assert [m.payload for m in _drain(inbox, 1)] == [b"online"]
        started = time.monotonic()
        door.close(announce_offline=False)
        assert time.monotonic() - started < CLOSE_WITHIN_S
        assert not door.connected.is_set()
        time.sleep(QUIET_S)
        assert inbox.empty()  # a dropped connection would have published the will ("offline")
    finally:
        watcher.close()


def test_close_cuts_a_reconnect_back_off_short(broker):
    settings = settings_for(broker.pki, "door-a", broker.host, free_port(), reconnect_min_s=30, reconnect_max_s=60)
    door = MqttEndpoint(settings)
    door.connect(wait=False)  # nobody listens there: refused, then waiting out the back-off
    time.sleep(QUIET_S)
    started = time.monotonic()
    door.close()
    assert time.monotonic() - started < CLOSE_WITHIN_S
    assert not door.connected.is_set()


def test_inline_work_runs_on_the_network_thread_and_its_answers_go_out(broker):
    """A request handled by work the network thread runs itself (the matcher's request batches):
    answered from that thread with no hand-over, also when another thread queued it."""
    inbox: queue.Queue = queue.Queue()
    requests, decisions = (topics.device_topic("door-a", kind) for kind in (topics.REQUEST, topics.DECISION))
    door = _endpoint(broker, "door-a", (decisions,), inbox)
    ran_on: set[int] = set()
    matcher: MqttEndpoint | None = None

    def answer(batch: list) -> None:
        ran_on.add(threading.get_ident())
        for incoming in batch:
            matcher.publish(decisions, incoming.payload, qos=0)

    work = QueueWorker("inline", lambda incoming: answer([incoming]), 100, handle_batch=answer, max_batch=8)
    matcher = MqttEndpoint(settings_for(broker.pki, "matcher-1", broker.host, broker.port), on_message=work.put,
                           subscriptions=(topics.shared(requests),), inline=work)
    matcher.connect()
    try:
        deadline = time.monotonic() + 20
        while not _drain(inbox, 1, timeout=0.2):  # until its subscription is in place at the broker
            assert time.monotonic() < deadline, "the inline work never answered"
            door.publish(requests, b"-1", qos=0)
        while _drain(inbox, 1, timeout=0.2):  # answers to the probes sent before it was
            pass
        handled_before = work.handled
        for index in range(20):
            door.publish(requests, b"%d" % index, qos=0)
        got = _drain(inbox, 20)
        started = time.monotonic()
        work.put(Incoming(requests, b"from-another-thread", 0, False))  # wakes the loop: no wait for keepalive
        late = _drain(inbox, 1)
        waited = time.monotonic() - started
    finally:
        matcher.close()
        door.close()
    assert sorted(int(m.payload) for m in got) == list(range(20))
    assert [m.payload for m in late] == [b"from-another-thread"] and waited < MISC_EVERY_S
    assert len(ran_on) == 1 and threading.get_ident() not in ran_on and work.handled - handled_before == 21


def test_inline_work_needs_the_endpoints_own_network_thread(broker):
    shared = SharedLoop()
    with pytest.raises(ValueError, match="own network thread"):
        MqttEndpoint(settings_for(broker.pki, "door-a", broker.host, broker.port), network=shared.attach,
                     inline=QueueWorker("inline", lambda item: None, 10))

"""A revoked device can no longer connect nor receive deltas - on a real Mosquitto with
mutual TLS - while the other devices carry on."""
from __future__ import annotations

import queue
import time

import pytest

from appliance.broker.process import ManagedBroker
from appliance.errors import ApplianceError
from appliance.ops.provisioning import enroll_device, is_allowed, revoke_device, rotate
from appliance.protocol import topics
from appliance.transport.mqtt import MqttEndpoint, settings_for

QUIET_S = 1.0


@pytest.fixture
def broker(tmp_path):
    managed = ManagedBroker(tmp_path / "site")
    managed.provision(matchers=("matcher-1",))
    enroll_device(managed.pki, "door-a", "lobby", ("verify",))
    enroll_device(managed.pki, "door-b", "lobby", ("verify", "identify"))
    managed.start()
    yield managed
    managed.stop()


def _client(broker, name, inbox=None):
    subs = (topics.device_topic(name, topics.SYNC),) if inbox is not None else ()
    client = MqttEndpoint(settings_for(broker.pki, name, broker.host, broker.port),
                          on_message=inbox.put if inbox is not None else None, subscriptions=subs)
    client.connect(timeout=3)
    return client


def _drain(inbox, seconds=QUIET_S):
    time.sleep(seconds)
    got = []
    while not inbox.empty():
        got.append(inbox.get_nowait().payload)
    return got


def test_revoked_device_cannot_connect_nor_receive_deltas(broker):
    inbox_a, inbox_b = queue.Queue(), queue.Queue()
    door_a, door_b = _client(broker, "door-a", inbox_a), _client(broker, "door-b", inbox_b)
    matcher = _client(broker, "matcher-1")
    try:
        time.sleep(0.3)
        matcher.publish(topics.device_topic("door-a", topics.SYNC), b"delta 1")
        assert _drain(inbox_a) == [b"delta 1"]

        def wipe(name):
            matcher.publish(topics.device_topic(name, topics.SYNC), b'{"type":"cache-wipe"}')

        revoked = revoke_device(broker.pki, "door-a", broker.restart, wipe)
        assert revoked.revoked and not is_allowed(broker.pki, "door-a", "verify")
        assert _drain(inbox_a, 0.5) == [b'{"type":"cache-wipe"}']  # told before the cut
        matcher.connected.wait(10)  # the restart dropped everyone; the others come back
        door_b.connected.wait(10)
        matcher.publish(topics.device_topic("door-a", topics.SYNC), b"delta 2")
        matcher.publish(topics.device_topic("door-b", topics.SYNC), b"delta for b")
        assert _drain(inbox_b, 2.0)[-1:] == [b"delta for b"]
        assert _drain(inbox_a, 0.5) == [] and not door_a.connected.is_set()  # paho retries, refused
        with pytest.raises(ApplianceError):
            _client(broker, "door-a")
    finally:
        for client in (door_a, door_b, matcher):
            client.close(announce_offline=False)


def test_rotation_keeps_the_device_online_without_restart(broker):
    old_cert = broker.pki.cert("door-b").read_bytes()
    rotate(broker.pki, "door-b")
    assert broker.pki.cert("door-b").read_bytes() != old_cert
    client = _client(broker, "door-b")  # new key accepted by the running broker
    client.close(announce_offline=False)
    assert is_allowed(broker.pki, "door-b", "identify") and not is_allowed(broker.pki, "door-a", "identify")

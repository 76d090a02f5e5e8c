"""A revoked device can no longer connect nor receive deltas - on a real Mosquitto with
mutual TLS - while the other devices carry on."""
from __future__ import annotations

import queue
import shutil
import time

import pytest

from appliance.broker.process import ManagedBroker
from cryptography import x509

from appliance.errors import ApplianceError
from appliance.ops.provisioning import MATCHING_MODES, enroll_device, is_allowed, revoke_device, rotate
from appliance.protocol import topics
from appliance.transport.mqtt import MqttEndpoint, MqttSettings, settings_for

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
        assert matcher.connected.wait(10) and door_b.connected.wait(10)  # the restart dropped everyone
        # door-b subscribes again after its CONNACK: a QoS 0 delta sent before its SUBACK is lost, so
        # the matcher sends until one arrives (and door-a's each time)
        deadline, got_b = time.monotonic() + 10, []
        while not got_b and time.monotonic() < deadline:
            matcher.publish(topics.device_topic("door-a", topics.SYNC), b"delta 2")
            matcher.publish(topics.device_topic("door-b", topics.SYNC), b"delta for b")
            got_b = _drain(inbox_b, 0.2)
        assert got_b[-1:] == [b"delta for b"]
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


def _serial(path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def _connect_with(broker, name, cert, key):
    client = MqttEndpoint(MqttSettings(broker.host, broker.port, name, broker.pki.ca_cert, cert, key))
    try:
        client.connect(timeout=3)
    finally:
        client.close(announce_offline=False)


def test_revocation_after_rotation_refuses_every_certificate_the_device_had(broker, tmp_path):
    """The attack: rotate a device's key (the old certificate stays valid until it expires),
    then revoke the device; its previous certificate must be refused as well as the new one."""
    kept = tmp_path / "kept"
    kept.mkdir()
    old_cert, old_key = (shutil.copy(broker.pki.cert("door-a"), kept / "old.crt"),
                         shutil.copy(broker.pki.key("door-a"), kept / "old.key"))
    rotate(broker.pki, "door-a")
    _connect_with(broker, "door-a", old_cert, old_key)  # both valid while the device is active
    _connect_with(broker, "door-a", broker.pki.cert("door-a"), broker.pki.key("door-a"))
    both = {_serial(old_cert), _serial(broker.pki.cert("door-a"))}

    revoke_device(broker.pki, "door-a", broker.restart)
    for cert, key in ((old_cert, old_key), (broker.pki.cert("door-a"), broker.pki.key("door-a"))):
        with pytest.raises(ApplianceError):
            _connect_with(broker, "door-a", cert, key)
    _connect_with(broker, "door-b", broker.pki.cert("door-b"), broker.pki.key("door-b"))  # others carry on
    crl = x509.load_pem_x509_crl(broker.pki.crl.read_bytes())
    assert {entry.serial_number for entry in crl} >= both
    assert set(broker.pki.identities()["door-a"].serials) == both  # the registry remembers every one


def test_a_revoked_or_unknown_identity_is_allowed_nothing(broker):
    """``is_allowed`` is what the matcher asks for every message type of a device: a revoked
    device, an unknown name and an identity that is not a device are refused for every mode."""
    assert all(is_allowed(broker.pki, "door-b", mode) for mode in MATCHING_MODES)
    revoke_device(broker.pki, "door-b", lambda: None)
    for name in ("door-b", "door-z", "matcher-1"):
        assert not any(is_allowed(broker.pki, name, mode) for mode in (*MATCHING_MODES, "event", "", "*"))

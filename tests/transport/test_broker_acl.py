"""Mutual TLS and per-device ACLs on the real broker. Mosquitto grants every SUBSCRIBE and
filters on delivery, so the read tests check that nothing arrives."""
from __future__ import annotations

import queue
import ssl
import time

import pytest

from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import topics
from appliance.transport.mqtt import MqttEndpoint, MqttSettings, settings_for

QUIET_S = 1.0


def endpoint(broker, name, subscriptions=(), inbox=None, **options):
    client = MqttEndpoint(settings_for(broker.pki, name, broker.host, broker.port, **options),
                          on_message=(inbox.put if inbox is not None else None), subscriptions=subscriptions)
    client.connect()
    return client


def drain(inbox: queue.Queue, seconds: float = QUIET_S) -> list:
    time.sleep(seconds)
    items = []
    while not inbox.empty():
        items.append(inbox.get_nowait())
    return items


def test_device_publishes_only_in_its_own_subtree(broker):
    watched = queue.Queue()
    auditor = endpoint(broker, "auditor-1", (f"{topics.PREFIX}/#",), watched)
    door_a = endpoint(broker, "door-a")
    try:
        drain(watched, 0.3)
        door_a.publish(topics.device_topic("door-a", topics.EVENT), b"mine")
        with pytest.raises(ApplianceError) as refused:
            door_a.publish(topics.device_topic("door-b", topics.REQUEST), b"forged")
        assert refused.value.code is ErrorCode.MESSAGE_REJECTED
        with pytest.raises(ApplianceError):
            door_a.publish(topics.device_topic("door-a", topics.DECISION), b"self-approval")
        seen = [(m.topic, m.payload) for m in drain(watched) if not m.topic.endswith("availability")]
        assert seen == [(topics.device_topic("door-a", topics.EVENT), b"mine")]
    finally:
        door_a.close()
        auditor.close()


def test_device_cannot_read_another_devices_decisions(broker):
    stolen, own = queue.Queue(), queue.Queue()
    spy = endpoint(broker, "door-a", (topics.device_topic("door-b", topics.DECISION), f"{topics.PREFIX}/#"), stolen)
    door_b = endpoint(broker, "door-b", (topics.device_topic("door-b", topics.DECISION),), own)
    matcher = endpoint(broker, "matcher-1")
    try:
        drain(stolen, 0.3)
        matcher.publish(topics.device_topic("door-b", topics.DECISION), b"decision for b")
        assert [m.payload for m in drain(own)] == [b"decision for b"]
        assert [m for m in drain(stolen, 0.2) if not m.topic.endswith("availability")] == []
    finally:
        for client in (spy, door_b, matcher):
            client.close()


def test_integration_reads_only_enrollment_events(broker):
    inbox = queue.Queue()
    erp = endpoint(broker, "erp", (f"{topics.PREFIX}/#",), inbox)
    matcher = endpoint(broker, "matcher-1")
    try:
        matcher.publish(topics.ENROLLMENT_EVENTS, b"subject enrolled")
        matcher.publish(topics.device_topic("door-a", topics.DECISION), b"private")
        assert [m.payload for m in drain(inbox)] == [b"subject enrolled"]
        with pytest.raises(ApplianceError):
            erp.publish(topics.ENROLLMENT_EVENTS, b"fake")
    finally:
        erp.close()
        matcher.close()


def test_a_client_without_a_project_certificate_is_refused(broker, tmp_path):
    from appliance.broker.pki import ProjectPKI

    rogue = ProjectPKI(tmp_path / "rogue")
    rogue.create_ca()
    rogue.issue_client("door-a", "device")
    settings = MqttSettings(
        broker.host, broker.port, "door-a", broker.pki.ca_cert, rogue.cert("door-a"), rogue.key("door-a")
    )
    client = MqttEndpoint(settings)
    with pytest.raises((ApplianceError, ssl.SSLError)):
        client.connect(timeout=3)
    client.close(announce_offline=False)


def test_availability_is_retained_and_the_will_fires(broker):
    inbox = queue.Queue()
    topic = topics.device_topic("door-b", topics.AVAILABILITY)
    door_b = endpoint(broker, "door-b", will_topic=topic)
    door_b.close()
    watcher = endpoint(broker, "auditor-1", (topic,), inbox)
    try:
        assert [m.payload for m in drain(inbox, 0.5)] == [b"offline"]
    finally:
        watcher.close()

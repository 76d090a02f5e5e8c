"""Mutual TLS and the per-role access rules on the real broker, attacked the way a stolen
certificate would attack them.

The rules are one table (``topics.RIGHTS``) rendered for the broker. The broker enforces
them on PUBLISH (a refusal is PUBACK reason 135), on SUBSCRIBE (a refusal is SUBACK reason
135: a filter outside the rights is never registered, so a device cannot join the matchers'
shared group and take its turn of every door's requests) and on delivery. The attack tests
send every filter a device could try - ``$share`` in the matchers' group and in any other,
``#`` and ``+`` at every level, ``$SYS``, ``$CONTROL``, other devices' and the matchers'
topics - and check with real publishers that nothing reaches the rogue while the matcher
replicas still receive every request."""
from __future__ import annotations

import queue
import ssl
import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.subscribeoptions import SubscribeOptions

from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import topics
from appliance.transport.mqtt import MqttEndpoint, MqttSettings, settings_for

QUIET_S = 1.0
ACK_TIMEOUT_S = 5.0
REFUSED = 0x80  # SUBACK reason codes from 0x80 up are refusals (135 = not authorised)
REQUESTS = 24  # enough that a rogue member of the share group would visibly take its turns
ROGUE, VICTIM = "door-a", "door-b"
CONTROL = "$CONTROL/dynamic-security/v1"
ALL_KINDS = topics.DEVICE_PUBLISHES + topics.DEVICE_SUBSCRIBES


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


class RawClient:
    """paho without the project's wrapper: the attack needs each SUBACK reason code, which
    ``MqttEndpoint`` does not report, and a PUBLISH the client library would refuse to send."""

    def __init__(self, broker, name: str, client_id: str | None = None):
        self.inbox: queue.Queue = queue.Queue()
        self._subacks: dict[int, list[int]] = {}
        self._acked = threading.Condition()
        self.connected = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or name,
                                  protocol=paho.MQTTv5)
        self.client.tls_set(ca_certs=str(broker.pki.ca_cert), certfile=str(broker.pki.cert(name)),
                            keyfile=str(broker.pki.key(name)))
        self.client.on_connect = lambda *args: self.connected.set()
        self.client.on_disconnect = lambda *args: self.connected.clear()
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = lambda client, userdata, message: self.inbox.put((message.topic, message.payload))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        assert self.connected.wait(ACK_TIMEOUT_S), f"{name} did not connect"

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._acked:
            self._subacks[mid] = [code.value for code in reason_codes]
            self._acked.notify_all()

    def subscribe(self, filters: list[str]) -> dict[str, int]:
        """One SUBSCRIBE with every filter; the SUBACK reason code of each."""
        _, mid = self.client.subscribe([(f, SubscribeOptions(qos=1)) for f in filters])
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self._subacks, ACK_TIMEOUT_S), "no SUBACK"
            return dict(zip(filters, self._subacks.pop(mid)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def attack_filters(own: str, other: str) -> list[str]:
    """Every filter a device's certificate could try, except the two it is granted: each
    topic of another device, each topic it only publishes itself, the matchers' topic, with
    ``+`` at every level and ``#`` from every level; ``$SYS`` and ``$CONTROL``; and each of
    those inside a shared subscription of the matchers' group, of another group and of one
    named after the device."""
    targets = [topics.device_topic(other, kind) for kind in ALL_KINDS]
    targets += [topics.device_topic(own, kind) for kind in topics.DEVICE_PUBLISHES] + [topics.ENROLLMENT_EVENTS]
    filters = {"#", "+", "+/#", "$SYS/#", "$SYS/broker/+", "$CONTROL/#", CONTROL, f"{CONTROL}/response"}
    for topic in targets:
        levels = topic.split("/")
        filters.add(topic)
        for at in range(len(levels)):
            filters.add("/".join([*levels[:at], "+", *levels[at + 1:]]))
            filters.add("/".join([*levels[:at], "#"]))
    plain = sorted(f for f in filters if not f.startswith("$"))
    for group in (topics.SHARE_GROUP, "x", own):
        filters.update(f"$share/{group}/{f}" for f in plain)
    filters.update({f"$share/{topics.SHARE_GROUP}/$SYS/#", f"$share/{topics.SHARE_GROUP}/{CONTROL}"})
    return sorted(filters - set(own_filters(own)))


def own_filters(device: str) -> list[str]:
    return [topics.device_topic(device, kind) for kind in topics.DEVICE_SUBSCRIBES]


def matcher_filters() -> list[str]:
    """What the matcher service subscribes (``matcher/service.py``): its shared group."""
    return [topics.shared(topics.all_devices(kind)) for kind in topics.DEVICE_PUBLISHES]


def test_a_device_is_refused_every_filter_but_its_own(broker):
    rogue = RawClient(broker, ROGUE)
    try:
        attempted = attack_filters(ROGUE, VICTIM)
        codes = rogue.subscribe(attempted + own_filters(ROGUE))
        granted = sorted(f for f in attempted if codes[f] < REFUSED)
        assert granted == []
        assert all(codes[f] < REFUSED for f in own_filters(ROGUE))
    finally:
        rogue.close()


def covers(right: str, wanted: str) -> bool:
    """Whether every topic ``wanted`` matches is matched by ``right`` - written here,
    independently of the broker and of ``topics``; ``$share/<group>`` counts as two levels."""
    have, need = right.split("/"), wanted.split("/")
    for at, level in enumerate(have):
        if level == "#":
            return True
        if at >= len(need) or need[at] == "#" or (level != "+" and level != need[at]):
            return False
    return len(need) == len(have)


# which filters each role may subscribe: written out here, independently of topics.RIGHTS
EXPECTED_GRANTS = {
    "door-a": lambda f: f in own_filters("door-a"),
    "matcher-1": lambda f: any(covers(right, f) for right in matcher_filters()),
    "auditor-1": lambda f: covers(f"{topics.PREFIX}/#", f),
    "erp": lambda f: f == topics.ENROLLMENT_EVENTS,
}


@pytest.mark.parametrize("name", sorted(EXPECTED_GRANTS))
def test_every_role_is_granted_exactly_the_filters_of_its_rights(broker, name):
    attempted = sorted(set(attack_filters(ROGUE, VICTIM) + own_filters(ROGUE) + matcher_filters()))
    client = RawClient(broker, name)
    try:
        codes = client.subscribe(attempted)
        granted = {f for f, code in codes.items() if code < REFUSED}
        assert granted == {f for f in attempted if EXPECTED_GRANTS[name](f)}
    finally:
        client.close()


def test_a_rogue_device_receives_nothing_and_the_matchers_everything(broker):
    """The stolen-turn attack end to end: the rogue sends every filter, then real publishers
    talk. The rogue gets only its own decision (proof its session is live); the two matcher
    replicas of the shared group get every message of the victim door exactly once."""
    replicas = queue.Queue()
    matchers = [endpoint(broker, name, tuple(matcher_filters()), replicas) for name in ("matcher-1", "matcher-2")]
    rogue = RawClient(broker, ROGUE)
    victim = endpoint(broker, VICTIM)
    try:
        rogue.subscribe(attack_filters(ROGUE, VICTIM) + own_filters(ROGUE))
        drain(rogue.inbox, 0.3)  # retained $SYS or availability messages, if any were let through
        drain(replicas, 0.3)
        sent = []
        for number in range(REQUESTS):
            sent.append((topics.device_topic(VICTIM, topics.REQUEST), b"request %d" % number))
        for kind in topics.DEVICE_PUBLISHES:
            if kind != topics.REQUEST:
                sent.append((topics.device_topic(VICTIM, kind), kind.encode()))
        for topic, payload in sent:
            victim.publish(topic, payload)
        matchers[0].publish(topics.device_topic(VICTIM, topics.DECISION), b"decision for b")
        matchers[0].publish(topics.device_topic(VICTIM, topics.SYNC), b"delta for b")
        matchers[0].publish(topics.ENROLLMENT_EVENTS, b"enrolled")
        matchers[0].publish(topics.device_topic(ROGUE, topics.DECISION), b"decision for a")
        received = sorted((m.topic, m.payload) for m in drain(replicas))
        assert received == sorted(sent)
        assert drain(rogue.inbox, 0.2) == [(topics.device_topic(ROGUE, topics.DECISION), b"decision for a")]
    finally:
        rogue.close()
        victim.close(announce_offline=False)
        for client in matchers:
            client.close()


def test_a_device_cannot_take_over_another_identitys_session(broker):
    """MQTT lets a new connection with an existing client id replace the old session (and
    inherit a persistent one's subscriptions and queue). With a device's certificate and the
    client id of a matcher replica the rogue would kick the replica off, again and again; the
    broker makes every client id the certificate's CN, so the replica never notices."""
    replicas = queue.Queue()
    matcher = endpoint(broker, "matcher-1", tuple(matcher_filters()), replicas)
    victim = endpoint(broker, VICTIM)
    connections = matcher.connections
    rogue = RawClient(broker, ROGUE, client_id="matcher-1")
    try:
        drain(replicas, 0.5)
        victim.publish(topics.device_topic(VICTIM, topics.REQUEST), b"after the takeover attempt")
        assert [m.payload for m in drain(replicas)] == [b"after the takeover attempt"]
        assert matcher.connected.is_set() and matcher.connections == connections
    finally:
        rogue.close()
        victim.close(announce_offline=False)
        matcher.close()


def forbidden_publications(own: str, other: str) -> list[str]:
    """Topic names a device may not write: another device's topics, its own read-only ones,
    the matchers' topic, ``$SYS``, a shared-subscription name and the broker's control API."""
    names = [topics.device_topic(other, kind) for kind in ALL_KINDS]
    names += own_filters(own) + [topics.ENROLLMENT_EVENTS, "$SYS/broker/uptime", CONTROL,
                                 f"$share/{topics.SHARE_GROUP}/{topics.device_topic(own, topics.REQUEST)}"]
    return names


def test_device_publishes_only_in_its_own_subtree(broker):
    watched = queue.Queue()
    auditor = endpoint(broker, "auditor-1", (f"{topics.PREFIX}/#",), watched)
    replicas = queue.Queue()
    matcher = endpoint(broker, "matcher-1", tuple(matcher_filters()), replicas)
    door_a = endpoint(broker, "door-a")
    try:
        drain(watched, 0.3)
        door_a.publish(topics.device_topic("door-a", topics.EVENT), b"mine")
        for topic in forbidden_publications("door-a", "door-b"):
            with pytest.raises(ApplianceError) as refused:
                door_a.publish(topic, b'{"commands":[{"command":"createClient","username":"x"}]}')
            assert refused.value.code is ErrorCode.MESSAGE_REJECTED, topic
        seen = [(m.topic, m.payload) for m in drain(watched) if not m.topic.endswith("availability")]
        assert seen == [(topics.device_topic("door-a", topics.EVENT), b"mine")]
        assert [m.topic for m in drain(replicas, 0.1)] == [topics.device_topic("door-a", topics.EVENT)]
    finally:
        door_a.close()
        matcher.close()
        auditor.close()


@pytest.mark.parametrize("name", ["+", "#", "appliance/v1/dev/+/req", "appliance/v1/dev/door-b/#"])
def test_a_publish_to_a_wildcard_name_cuts_the_session(broker, name):
    """A topic name with a wildcard is malformed (MQTT-3.3.2-2); paho refuses to send one, so
    the bytes go out below its check: the broker drops the connection and delivers nothing."""
    replicas = queue.Queue()
    matcher = endpoint(broker, "matcher-1", tuple(matcher_filters()), replicas)
    rogue = RawClient(broker, ROGUE)
    try:
        with pytest.raises(ValueError):
            rogue.client.publish(name, b"x", qos=1)
        rogue.client._send_publish(rogue.client._mid_generate(), name.encode(), b"forged", qos=1)
        deadline = time.monotonic() + ACK_TIMEOUT_S
        while rogue.connected.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not rogue.connected.is_set()
        assert drain(replicas, 0.3) == []
    finally:
        rogue.close()
        matcher.close()


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
    erp = endpoint(broker, "erp", (topics.ENROLLMENT_EVENTS, f"{topics.PREFIX}/#"), inbox)
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

"""A thin, explicit wrapper over paho-mqtt for MQTT 5 with mutual TLS.

Why a wrapper: every service needs the same things done the same way - MQTT 5 (under 3.1.1
a denied publish looks successful), PUBACK reason codes surfaced as errors, subscriptions
renewed on every reconnect, a retained last-will ``availability`` message, request/response
properties, and bounded waits instead of hangs. It composes paho's client through its public API
only (no private hooks overridden), so a paho upgrade cannot silently change what it does; its
network thread is ours (``transport.mqtt_loop``: several packets per wake-up, no wake-up per
publish).
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from appliance.errors import ApplianceError, ErrorCode
from appliance.transport.mqtt_loop import InlineWork, NetworkDriver, NetworkLoop
from appliance.transport.publish_properties import PackedProperties, publish_properties
from appliance.transport.tls_read_ahead import client_context

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
PUBLISH_TIMEOUT_S = 5.0
SUCCESS = 0
NO_MATCHING_SUBSCRIBERS = 16  # MQTT 5 PUBACK: accepted, nobody subscribed - still success
EARLY_ACKS = 1024  # message ids wrap at 65,535: far fewer are remembered
SUBSCRIBE_QOS = 1  # the default: what a device's own subscriptions (decisions, deltas) get
# topic filters per SUBSCRIBE/UNSUBSCRIBE packet: a matcher holds one per device and kind, and
# the broker refuses packets over 64 KiB (broker.config.MAX_PACKET_BYTES): 500 shared device
# topics are ~25 KiB, and under 57 KiB with 63-character device names (pki.IDENTITY's longest)
FILTERS_PER_PACKET = 500


# (client, name, reconnect minimum s, reconnect maximum s) -> the driver of its socket I/O
NetworkFactory = Callable[[paho.Client, str, float, float], NetworkDriver]


@dataclass(frozen=True)
class MqttSettings:
    host: str
    port: int
    client_id: str
    ca_file: Path
    cert_file: Path
    key_file: Path
    keepalive_s: int = 30
    reconnect_min_s: int = 1
    reconnect_max_s: int = 30
    session_expiry_s: int = 0  # >0: the broker keeps QoS 1 messages while we are away
    will_topic: str | None = None
    will_payload: bytes = b"offline"


@dataclass(frozen=True)
class Incoming:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    response_topic: str | None = None
    correlation: bytes | None = None


class MqttEndpoint:
    """One MQTT 5 connection. ``network``: who does its socket I/O - by default a thread of its
    own (``NetworkLoop``); a load generator simulating many devices in one process passes
    ``SharedLoop.attach`` (``transport.mqtt_shared_loop``) to serve them all from one thread.
    ``inline``: work its own network thread runs between reads and writes (``InlineWork``)."""

    def __init__(self, settings: MqttSettings, on_message: Callable[[Incoming], None] | None = None,
                 subscriptions: tuple[str, ...] = (), subscribe_qos: int = SUBSCRIBE_QOS,
                 network: NetworkFactory = NetworkLoop, inline: InlineWork | None = None):
        self.settings = settings
        # renewed on every reconnect; changed at run time by ``subscribe``/``unsubscribe``
        self._subscriptions: dict[str, None] = dict.fromkeys(subscriptions)
        self._subscriptions_lock = threading.Lock()  # also orders a renewal against a change
        self.subscribe_qos = subscribe_qos  # the most the broker delivers at (it delivers at the lower)
        self._on_message = on_message
        self.connected = threading.Event()
        self.connections = 0  # CONNACKs so far: a change means "reconnected" (sessions resync)
        self._acks: dict[int, tuple[threading.Event, list[int]]] = {}
        self._lock = threading.Lock()
        # PUBACKs (reason, when) that arrived before their waiter; also every report of a QoS 0
        # publish made while someone waits (paho reports those too), hence the time check
        self._early: OrderedDict[int, tuple[int, float]] = OrderedDict()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=settings.client_id, protocol=paho.MQTTv5)
        client.tls_set_context(client_context(settings.ca_file, settings.cert_file, settings.key_file))
        if settings.will_topic:
            client.will_set(settings.will_topic, settings.will_payload, qos=1, retain=True)
        client.on_connect = self._handle_connect
        client.on_disconnect = self._handle_disconnect
        client.on_message = self._handle_message
        self._waiters = 0  # callers waiting for a PUBACK: while there are any, on_publish is set
        self._waiters_lock = threading.Lock()
        self._client = client
        self._loop = network(client, settings.client_id, settings.reconnect_min_s, settings.reconnect_max_s)
        if inline is not None:
            if not isinstance(self._loop, NetworkLoop):
                raise ValueError(f"{settings.client_id}: inline work needs the endpoint's own network thread")
            self._loop.run_inline(inline)

    # -- life cycle ------------------------------------------------------------------------
    def connect(self, timeout: float = CONNECT_TIMEOUT_S, wait: bool = True) -> None:
        """Connect and wait for the CONNACK; ``wait=False`` starts connecting in the background
        (a door must start while the broker is down), paho retrying with its back-off."""
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.settings.session_expiry_s
        if not wait:
            self._client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s,
                                       clean_start=self.settings.session_expiry_s == 0, properties=properties)
            self._loop.start(connect_now=True)
            return
        try:
            self._client.connect(self.settings.host, self.settings.port, self.settings.keepalive_s,
                                 clean_start=self.settings.session_expiry_s == 0, properties=properties)
        except (OSError, ValueError) as exc:
            raise ApplianceError(ErrorCode.BROKER_UNAVAILABLE,
                                 f"{self.settings.host}:{self.settings.port}: {exc}") from None
        self._loop.start()
        if not self.connected.wait(timeout):
            self.close()
            raise ApplianceError(ErrorCode.BROKER_UNAVAILABLE,
                                 f"{self.settings.client_id}: no CONNACK from "
                                 f"{self.settings.host}:{self.settings.port}")

    def close(self, announce_offline: bool = True) -> None:
        if announce_offline and self.settings.will_topic and self.connected.is_set():
            try:
                self.publish(self.settings.will_topic, self.settings.will_payload, retain=True, timeout=1.0,
                             wait=not self._loop.reads_here())
            except ApplianceError:
                pass  # the will covers it
        self._loop.stop()
        self.connected.clear()

    # -- publishing ------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
                response_topic: str | None = None, correlation: bytes | None = None,
                timeout: float = PUBLISH_TIMEOUT_S, wait: bool = True) -> None:
        """Publish and, for QoS 1, wait for the PUBACK; a refusal raises MESSAGE_REJECTED.

        ``wait=False`` hands a QoS 1 message to paho (which retransmits it until
        acknowledged) without blocking the caller on the broker's round trip."""
        properties = publish_properties(response_topic, correlation)
        if qos == 0 or not wait:
            info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
            if info.rc != paho.MQTT_ERR_SUCCESS:
                raise ApplianceError(ErrorCode.BROKER_UNAVAILABLE,
                                     f"publish to {topic}: {paho.error_string(info.rc)}")
            return
        if self._loop.reads_here():  # the PUBACK could only be read by this thread, once it stops waiting
            raise RuntimeError(f"{self.settings.client_id}: a publish that waits for its PUBACK on the thread that "
                               "reads the connection (a callback, inline work, a shared loop): use wait=False")
        self._count_waiter(1)
        try:
            self._publish_and_wait(topic, payload, qos, retain, properties, timeout)
        finally:
            self._count_waiter(-1)

    def _publish_and_wait(self, topic: str, payload: bytes, qos: int, retain: bool,
                          properties: PackedProperties | None, timeout: float) -> None:
        done, reason = threading.Event(), []
        # paho is not called under our lock: its network thread holds paho's own lock while it
        # calls _handle_publish (which takes ours), so holding ours around publish() deadlocks
        # under concurrent publishers. A PUBACK that beats the registration waits in _early; one
        # from before this call is another message's with a message id since reused.
        sent_at = time.monotonic()
        info = self._client.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        with self._lock:
            early = self._early.pop(info.mid, None)
            if early is None or early[1] < sent_at:
                self._acks[info.mid] = (done, reason)
            else:
                reason.append(early[0])
                done.set()
        if info.rc != paho.MQTT_ERR_SUCCESS:
            self._acks.pop(info.mid, None)
            raise ApplianceError(ErrorCode.BROKER_UNAVAILABLE, f"publish to {topic}: {paho.error_string(info.rc)}")
        if not done.wait(timeout):
            self._acks.pop(info.mid, None)
            raise ApplianceError(ErrorCode.REQUEST_TIMEOUT, f"no PUBACK for {topic} within {timeout:g} s")
        if reason and reason[0] not in (SUCCESS, NO_MATCHING_SUBSCRIBERS):
            raise ApplianceError(ErrorCode.MESSAGE_REJECTED, f"broker refused publish to {topic} (reason {reason[0]})")

    # -- subscriptions ---------------------------------------------------------------------
    @property
    def subscriptions(self) -> tuple[str, ...]:
        """The filters this endpoint holds (and renews on every reconnect)."""
        with self._subscriptions_lock:
            return tuple(self._subscriptions)

    def subscribe(self, filters: Sequence[str]) -> None:
        """Hold ``filters`` from now on: subscribed at once when connected, and on every reconnect."""
        with self._subscriptions_lock:
            new = [f for f in filters if f not in self._subscriptions]
            self._subscriptions.update(dict.fromkeys(new))
            if new and self.connected.is_set():
                self._send_subscribe(new)

    def unsubscribe(self, filters: Sequence[str]) -> None:
        """Drop ``filters``: the broker stops delivering what only they matched (and, with no
        other subscriber, drops it itself), and no reconnect renews them."""
        with self._subscriptions_lock:
            held = [f for f in filters if f in self._subscriptions]
            for f in held:
                del self._subscriptions[f]
            if held and self.connected.is_set():
                for packet in _packets(held):
                    self._client.unsubscribe(packet)

    def _send_subscribe(self, filters: Sequence[str]) -> None:
        options = SubscribeOptions(qos=self.subscribe_qos)
        for packet in _packets(filters):
            self._client.subscribe([(f, options) for f in packet])

    def _count_waiter(self, change: int) -> None:
        """paho reports every publish to ``on_publish``, at QoS 0 too, each with a new reason code
        and properties object (~30 us on the network thread per answer: issue 17); only a caller
        waiting for its PUBACK needs the report, so the callback is set only while one waits."""
        with self._waiters_lock:
            self._waiters += change
            if change > 0 and self._waiters == 1:
                self._client.on_publish = self._handle_publish
            elif self._waiters == 0:
                self._client.on_publish = None

    # -- paho callbacks (network thread) ---------------------------------------------------
    def _handle_connect(self, client, userdata, flags, reason_code: ReasonCode, properties) -> None:
        if reason_code.is_failure:
            log.warning("%s: connection refused: %s", self.settings.client_id, reason_code)
            return
        connection = client.socket()
        if connection is not None:  # small request/answer packets: Nagle + delayed ACK add ~40 ms each
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._subscriptions_lock:  # a change made meanwhile is either renewed here or sent after
            if self._subscriptions:
                self._send_subscribe(list(self._subscriptions))
            if self.settings.will_topic:
                client.publish(self.settings.will_topic, b"online", qos=1, retain=True)
            self.connections += 1
            self._loop.connected_again()
            self.connected.set()

    def _handle_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self.connected.is_set():
            log.info("%s: disconnected (%s); paho reconnects", self.settings.client_id, reason_code)
        self.connected.clear()

    def _handle_publish(self, client, userdata, mid: int, reason_code: ReasonCode, properties) -> None:
        code = reason_code.value if hasattr(reason_code, "value") else int(reason_code)
        with self._lock:
            entry = self._acks.pop(mid, None)
            if entry is None:
                self._early[mid] = (code, time.monotonic())
                while len(self._early) > EARLY_ACKS:
                    self._early.popitem(last=False)
        if entry:
            done, reason = entry
            reason.append(code)
            done.set()

    def _handle_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        properties = message.properties
        incoming = Incoming(
            topic=message.topic,
            payload=bytes(message.payload),
            qos=message.qos,
            retain=bool(message.retain),
            response_topic=getattr(properties, "ResponseTopic", None) if properties else None,
            correlation=getattr(properties, "CorrelationData", None) if properties else None,
        )
        self._deliver(incoming)

    def _deliver(self, incoming: Incoming) -> None:
        if self._on_message is None:
            return
        try:
            self._on_message(incoming)
        except Exception:  # noqa: BLE001 - one bad message must never stop the network loop
            log.exception("handler failed for a message on %s", incoming.topic)


def _packets(filters: Sequence[str]) -> list[Sequence[str]]:
    """``filters`` in runs of at most ``FILTERS_PER_PACKET``: one SUBSCRIBE/UNSUBSCRIBE each."""
    return [filters[start:start + FILTERS_PER_PACKET] for start in range(0, len(filters), FILTERS_PER_PACKET)]


def settings_for(pki, name: str, host: str, port: int, **options) -> MqttSettings:
    """Settings for an identity issued by ``appliance.broker.pki.ProjectPKI``."""
    return MqttSettings(host=host, port=port, client_id=name, ca_file=pki.ca_cert, cert_file=pki.cert(name),
                        key_file=pki.key(name), **options)

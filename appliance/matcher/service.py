"""``appliance matcher``: one matcher replica, a router of device topics to their handlers.

The replica reads device topics on shared subscriptions (``$share/matchers/...``) so N
replicas split the load. Each topic kind has one handler, composed by
``appliance.matcher.app``: match requests (``requests``), events and alarms (``events``),
sync requests and acknowledgements with the replica's revision poll (``sync_requests``).
Each handler offers a ``Route``: the kinds it reads and the worker that runs it; the router
queues a message for that worker on the MQTT network thread, so the network loop never
waits - except for one handler's worker that is ``inline`` (the match requests'): the network
thread runs its batches itself between its reads and writes, so a request is read, decided and
answered on one thread (``transport.mqtt_loop.InlineWork``). At start the router makes its MQTT endpoint, subscribed to
the kinds its handlers read, attaches the courier (the way out) to it, starts the handlers
and connects. Before a message is queued the replica's ``Gate`` (``matcher.gate``) looks at
its topic: one its owner may not publish, or no handler reads, is ignored; a muted device's
or one over its budget is dropped unopened. Every refusal is counted and summed up in one
audit record per device and window, written by the gate's flush ticker. A muted device is
also shed at the broker: the replica subscribes to each device's topics (the devices it knows),
not a wildcard, and drops a muted device's until the mute ends.
"""
from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from appliance.matcher.device_limits import Limits
from appliance.matcher.gate import FLUSH_EVERY_S, Gate
from appliance.matcher.replica_io import Auditor, Courier
from appliance.protocol import bundles, topics
from appliance.transport.mqtt import Incoming, MqttEndpoint, MqttSettings
from appliance.workers import QueueWorker, Ticker

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Route:
    """The device topic kinds one handler reads, the worker its messages are queued for, and
    the ticker that nudges that worker when nothing arrives (if it needs one)."""

    kinds: tuple[str, ...]
    worker: QueueWorker[Incoming | None]
    ticker: Ticker | None = None
    inline: bool = False  # served by a replica: its worker runs on the MQTT network thread (one route at most)

    def start(self) -> None:
        self.worker.start()
        if self.ticker is not None:
            self.ticker.start()

    def stop(self) -> None:
        if self.ticker is not None:
            self.ticker.stop()
        self.worker.stop()


class MatcherService:
    def __init__(self, name: str, mqtt: MqttSettings, routes: Sequence[Route], courier: Courier,
                 stats: Counter[str] | None = None, gate: Gate | None = None):
        self.name = name
        self.routes = tuple(routes)
        self.courier = courier
        self.stats: Counter[str] = stats if stats is not None else Counter()
        self.gate = gate or Gate(name, Limits(), Auditor(name), self.stats)
        self._flush = Ticker(f"{name}-gate-flush", FLUSH_EVERY_S, self.gate.flush)
        self._routes: dict[str, Route] = {}
        for route in self.routes:
            for kind in route.kinds:
                if kind in self._routes:
                    raise ValueError(f"two handlers read {kind!r}")
                self._routes[kind] = route
        inline = [route.worker for route in self.routes if route.inline]
        if len(inline) > 1:
            raise ValueError("only one handler's worker can run on the network thread")
        self._inline = inline[0] if inline else None
        self._mqtt = mqtt
        self.endpoint: MqttEndpoint | None = None  # made at start: the routes are fixed by then
        self._started = False
        self._shed: set[str] = set()  # muted devices whose topics are unsubscribed
        self._shed_lock = threading.Lock()
        self.gate.watch_mutes(self._follow_mute)

    @property
    def subscriptions(self) -> tuple[str, ...]:
        """Each kind's topic of every device the gate knows (its openers'), on the shared
        subscription; a wildcard per kind when the gate takes any device. One filter per device
        lets a muted device be shed at the broker (``_follow_mute``)."""
        devices = self.gate.devices
        if devices is None or not isinstance(devices, Iterable):
            return tuple(topics.shared(topics.all_devices(kind)) for kind in self._routes)
        return tuple(filter_ for device in sorted(devices) for filter_ in self._filters(device))

    def _filters(self, device: str) -> list[str]:
        return [topics.shared(topics.device_topic(device, kind)) for kind in self._routes]

    def _follow_mute(self, device: str) -> None:
        """A device muted by the gate is shed at the broker: this replica unsubscribes from its
        topics until the mute ends, so its flood no longer reaches this process (its network
        thread read and dropped ~2,000 messages/s that moved the other doors' p95: issue 17).
        With no other replica subscribed the broker drops them itself. Only per-device
        subscriptions can be dropped; re-read under a lock, so racing changes end as the gate is."""
        if self.endpoint is None or self.gate.devices is None or device not in self.gate.devices:
            return
        with self._shed_lock:
            muted = self.gate.muted(device)
            if muted == (device in self._shed):
                return
            if muted:
                self.endpoint.unsubscribe(self._filters(device))
                self._shed.add(device)
                self.stats["shed_devices"] += 1
                log.warning("%s: %s is muted: unsubscribed from its topics until the mute ends", self.name, device)
            else:
                self.endpoint.subscribe(self._filters(device))
                self._shed.discard(device)
                log.info("%s: %s is no longer muted: subscribed to its topics again", self.name, device)

    def follow_devices(self, devices: Sequence[str]) -> None:
        """Doors the gate has just learnt of (``matcher.device_follow``): their topics are
        subscribed now and on every reconnect (before ``start``, ``subscriptions`` has them)."""
        if self.endpoint is None:
            return
        with self._shed_lock:
            filters = [f for device in devices if device not in self._shed for f in self._filters(device)]
        self.endpoint.subscribe(filters)

    @property
    def shed(self) -> frozenset[str]:
        """The devices this replica has unsubscribed from while they are muted."""
        with self._shed_lock:
            return frozenset(self._shed)

    def route(self, incoming: Incoming) -> None:
        """The endpoint's ``on_message``: hand the message to the handler of its topic kind,
        if the gate lets it through, a bundle charged per envelope (no envelope is opened on
        this thread)."""
        if self.gate.at_router(incoming.topic, self._routes, bundles.count(incoming.payload)):
            self._routes[incoming.topic.rsplit("/", 1)[-1]].worker.put(incoming)  # full: dropped_overload

    # -- life cycle -----------------------------------------------------------------------
    @property
    def subscribe_qos(self) -> int:
        """What the broker delivers to this replica at: QoS 0 on a clean session (the default).
        A clean session ends with its connection, and with it every message in flight at QoS 1
        too; a shared subscription never hands those to another replica. So QoS 1 only added a
        PUBACK per message on the network thread (issue 17: 82 -> 66 us per request received).
        A replica that keeps its session (``session_expiry_s`` > 0) keeps QoS 1: the broker then
        holds its messages while it reconnects. What a device sends is acknowledged by the
        matcher's own answer (a decision, an outbox acknowledgement), which it repeats until then."""
        return 0 if self._mqtt.session_expiry_s == 0 else 1

    def start(self) -> None:
        with self._shed_lock:
            self._shed.clear()  # a new endpoint holds every device's topics; the router still drops the muted
        self.endpoint = MqttEndpoint(self._mqtt, on_message=self.route, subscriptions=self.subscriptions,
                                     subscribe_qos=self.subscribe_qos, inline=self._inline)
        self.courier.attach(self.endpoint.publish)
        for route in self.routes:
            route.start()
        self._flush.start()
        self._started = True
        self.endpoint.connect()
        log.info("%s: serving %s", self.name, ", ".join(self._routes))

    def stop(self) -> None:
        if self.endpoint is not None:
            self.endpoint.close(announce_offline=False)
        if self._started:
            for route in self.routes:
                route.stop()
            self._flush.stop()
            self._started = False
        self.gate.flush(closing=True)  # what was refused until now is on record before the process ends

    @property
    def connected(self) -> bool:
        return self.endpoint is not None and self.endpoint.connected.is_set()

    @property
    def queue_depth(self) -> int:
        return sum(route.worker.depth for route in self.routes)

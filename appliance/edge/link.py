"""The device's side of the conversation with the matcher: sealed requests, signed answers.

A request is sealed to the matcher's key and published on the device's own request topic
with an MQTT 5 response topic and correlation data. The answer must open with the matcher's
signature, be fresh, unseen, and carry the request id we are waiting for; anything else is
dropped (a forged or replayed answer can never open the door). On a timeout the same
request id is sent again (the matcher answers retries idempotently).

The link also keeps what the door knows of the matcher's presence: a connected broker is not
a matcher. ``matcher_reachable`` holds once a matcher has answered on this connection (a
decision here, a sync answer through ``heard``) and no request has gone unanswered since;
``matcher_silent`` from a request left unanswered until a matcher answers again.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import messages, topics
from appliance.protocol.directory import MATCHER_NODE, NodeDirectory
from appliance.protocol.inbound import open_on_topic
from appliance.security.envelope import MessageType, NodeKeys, Opener, ReplayGuard, Sealer
from appliance.transport.mqtt import Incoming, MqttEndpoint, MqttSettings

log = logging.getLogger(__name__)

ANSWER_TIMEOUT_S = 2.0
ATTEMPTS = 3


class MatcherLink:
    def __init__(self, device_id: str, mqtt: MqttSettings, keys: NodeKeys, directory: NodeDirectory,
                 replay_window_s: float = 120.0):
        self.device_id = device_id
        self.matcher = directory.get(MATCHER_NODE)
        self.sealer = Sealer(keys)
        self.opener = Opener(keys, directory.matchers(), window_s=replay_window_s,
                             guard=ReplayGuard(not_before=time.time()))
        self.stats: Counter[str] = Counter()
        self._pending: dict[str, tuple[threading.Event, list[messages.Decision]]] = {}
        self._lock = threading.Lock()
        self.decision_topic = topics.device_topic(device_id, topics.DECISION)
        self.sync_topic = topics.device_topic(device_id, topics.SYNC)
        self.on_sync: Callable[[Incoming], None] | None = None  # offline operation (edge.sync_client)
        self.capture_topic = topics.device_topic(device_id, topics.ENROLL_CAPTURE)
        self.on_capture: Callable[[Incoming], None] | None = None  # enrollment capture (edge.enroll_capture)
        self.wipe_topic = topics.device_topic(device_id, topics.WIPE)
        self.on_wipe: Callable[[Incoming], None] | None = None  # remote wipe on revocation (edge.wipe)
        self._heard_at = self._silent_at = 0.0  # monotonic: last matcher answer / last one missed
        self._heard_on = -1  # the connection the last answer came on
        self.endpoint = MqttEndpoint(mqtt, on_message=self._on_message,
                                     subscriptions=(self.decision_topic, self.sync_topic, self.capture_topic,
                                                    self.wipe_topic))

    def connect(self, wait: bool = True) -> None:
        self.endpoint.connect(wait=wait)

    def close(self) -> None:
        self.endpoint.close()

    @property
    def online(self) -> bool:
        return self.endpoint.connected.is_set()

    @property
    def connections(self) -> int:
        """Connections made so far: a change means the broker connection came back."""
        return self.endpoint.connections

    @property
    def matcher_reachable(self) -> bool:
        """Connected, a matcher answered on this connection, and none has failed to since."""
        return self.online and self._heard_on == self.connections and self._heard_at >= self._silent_at

    @property
    def matcher_silent(self) -> bool:
        """A request went unanswered in its time and no matcher has answered since. A door that
        can decide from its cache then does so at once instead of making each person wait the
        answer timeout again; the sync client asks the matcher every few seconds meanwhile, and
        its first answer ends this."""
        return self._silent_at > self._heard_at

    def heard(self) -> None:
        """A matcher answered (a signed message that opened): it is there."""
        self._heard_at, self._heard_on = time.monotonic(), self.connections

    def silent(self) -> None:
        """A matcher left a request unanswered in its time: not reachable until it answers."""
        self._silent_at = time.monotonic()

    def send(self, kind: str, message: messages.Message, message_type: MessageType,
             pack: tuple[str, str] = ("", "")) -> None:
        """Seal and publish an event, alarm or telemetry message on the device's own topic."""
        sealed = self.sealer.seal(self.matcher, message_type, message.encode(), *pack)
        self.endpoint.publish(topics.device_topic(self.device_id, kind), sealed)

    def request(self, request: messages.MatchRequest, pack: tuple[str, str], timeout: float = ANSWER_TIMEOUT_S,
                attempts: int = ATTEMPTS, kind: str = topics.REQUEST) -> messages.Decision:
        """Seal ``request`` (a match request, or on ``kind`` CREDENTIAL a card/PIN request) and
        wait for its decision."""
        done, answer = threading.Event(), []
        with self._lock:
            self._pending[request.request_id] = (done, answer)
        try:
            for attempt in range(1, attempts + 1):
                sealed = self.sealer.seal(self.matcher, MessageType.PROBE, request.encode(), *pack)
                try:
                    self.endpoint.publish(topics.device_topic(self.device_id, kind), sealed,
                                          response_topic=self.decision_topic,
                                          correlation=request.request_id.encode("ascii"), timeout=timeout)
                except ApplianceError as exc:
                    log.warning("%s: request attempt %d not delivered: %s", self.device_id, attempt, exc)
                    self.stats["publish_failed"] += 1
                    done.wait(timeout)
                    continue
                if done.wait(timeout):
                    return answer[0]
                self.stats["timeouts"] += 1
            self.silent()
            raise ApplianceError(ErrorCode.REQUEST_TIMEOUT, f"no decision after {attempts} attempts")
        finally:
            with self._lock:
                self._pending.pop(request.request_id, None)

    def _on_message(self, incoming: Incoming) -> None:
        if incoming.topic == self.sync_topic:
            if self.on_sync is not None:
                self.on_sync(incoming)
            return
        if incoming.topic == self.capture_topic:
            if self.on_capture is not None:
                self.on_capture(incoming)
            return
        if incoming.topic == self.wipe_topic:
            if self.on_wipe is not None:
                self.on_wipe(incoming)
            return
        try:
            inbound = open_on_topic(self.opener, incoming.topic, incoming.payload, expect=MessageType.DECISION)
            decision = messages.decode(inbound.payload, messages.Decision)
        except ApplianceError as exc:  # EnvelopeRejected included
            self.stats["rejected_answers"] += 1
            log.warning("%s: dropped an answer: %s", self.device_id, exc)
            return
        self.heard()  # even a late answer says a matcher is there
        with self._lock:
            waiting = self._pending.get(decision.request_id)
        if waiting is None:
            self.stats["unexpected_answers"] += 1
            return
        done, answer = waiting
        if not done.is_set():
            answer.append(decision)
            done.set()

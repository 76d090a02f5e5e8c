"""What the handlers of one matcher replica share: the way out and the audit log (the way in
is ``matcher.gate``: budgets, the sender check, opening on the topic).

* ``Courier``: a message leaves sealed to the device it is for, signed under this replica's
  own name (with the shared matcher keys), on that device's own topic - never on a topic a
  sender named. The service attaches it to its MQTT endpoint when it starts.
* ``Auditor``: this replica's entries in the central audit log, one at a time;
  ``decision_detail`` is what a decision's entry says.
* ``StoreTrouble``: what a handler does when this replica's own store cannot be written.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import messages, topics
from appliance.protocol.directory import NodeDirectory
from appliance.security.envelope import MessageType, NodeKeys, Sealer
from appliance.security.roles import Principal, Role

log = logging.getLogger(__name__)

Audit = Callable[..., None]  # (device, action, object, result, detail="")


class Courier:
    def __init__(self, name: str, keys: NodeKeys, directory: NodeDirectory):
        # every replica signs under its own name with the shared matcher keys
        self.sealer = Sealer(keys.renamed(name))  # SM2 keys and suite too
        self.directory = directory
        self._publish: Callable[..., None] | None = None

    def attach(self, publish: Callable[..., None]) -> None:
        """Where messages go from now on (the service's ``MqttEndpoint.publish``)."""
        self._publish = publish

    def publish(self, topic: str, payload: bytes, **options) -> None:
        if self._publish is None:
            raise ApplianceError(ErrorCode.BROKER_UNAVAILABLE, f"nothing published on {topic}: not started")
        self._publish(topic, payload, **options)

    def seal(self, device: str, message_type: MessageType, message: messages.Message,
             pack: tuple[str, str] = ("", "")) -> bytes:
        return self.sealer.seal(self.directory.get(device), message_type, message.encode(), *pack)

    def send(self, device: str, kind: str, sealed: bytes, **options) -> None:
        """Publish a sealed message on ``device``'s own ``kind`` topic."""
        self.publish(topics.device_topic(device, kind), sealed, **options)

    def sync(self, device: str, message: messages.Message) -> None:
        """A delta or an outbox acknowledgement, on the device's ``sync`` topic."""
        self.send(device, topics.SYNC, self.seal(device, MessageType.SYNC, message))


def decision_detail(reason: str, request_id: str, *more: str) -> str:
    """The detail of a decision's audit entry: the reason, anything more, and the request id the
    door sent (an auditor links the entry to the door's own log, and recognises a retry that
    another replica decided again as the same pass)."""
    return "; ".join((reason, *more, f"request {request_id}"))


class Auditor:
    """Entries under this replica's name, for the device concerned; the request and event
    handlers share the log's connection, hence the lock. Without central data (benchmarks),
    nothing is written."""

    def __init__(self, name: str, log_store=None):
        self.name = name
        self.log = log_store

    def __call__(self, device: str, action: str, obj: str, result: str, detail: str = "", *,
                 block: bool = True) -> None:
        """Queue the entry; without ``block`` a full queue raises ``STORE_UNWRITABLE`` rather
        than holding the caller (the request path: ``StoreTrouble``)."""
        if self.log is None:
            return
        principal = Principal(self.name, Role.OPERATOR, device=device)
        # group-committed off the request path: the writer thread makes it durable
        self.log.append(principal, action, obj, result, detail, wait=False, block=block)


STORE_TROUBLE_LOG_EVERY_S = 60.0  # while a store stays unwritable, one log line per handler this often
LEFT_UNANSWERED = "left unanswered: the doors decide from their caches meanwhile"


class StoreTrouble:
    """This replica's own store refused a write (E213 STORE_UNWRITABLE: a full disk, an I/O
    error) while a handler dealt with a door's message. That is no fault of the door, so nothing
    is noted against it: ``Gate.refuse`` would count it as malformed and in the end mute a busy
    door as a flooder. The message goes unanswered (a request: the door decides from its cache,
    its pass queued on its own disk and taken in once there is room) or unacknowledged (events:
    the door sends them again). Counted per kind (``unwritable:<kind>``); logged at once, then
    once per ``STORE_TROUBLE_LOG_EVERY_S`` while it lasts."""

    def __init__(self, name: str, stats: Counter[str], clock: Callable[[], float] = time.monotonic):
        self.name, self.stats, self.clock = name, stats, clock
        self._logged_at: float | None = None
        self._since_logged = 0

    def note(self, device: str, kind: str, exc: ApplianceError, outcome: str, count: int = 1) -> None:
        """``count`` messages of ``kind`` from ``device`` not dealt with in full because of
        ``exc``; ``outcome``: what became of them, for the log."""
        self.stats[f"unwritable:{kind}"] += count
        self._since_logged += count
        now = self.clock()
        if self._logged_at is not None and now - self._logged_at < STORE_TROUBLE_LOG_EVERY_S:
            return
        log.warning("%s: %d message(s) not recorded (the last a %s message from %s, %s): %s; free disk space",
                    self.name, self._since_logged, kind, device, outcome, exc)
        self._logged_at, self._since_logged = now, 0

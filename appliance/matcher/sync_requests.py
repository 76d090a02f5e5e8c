"""The ``sync-ack`` topic: device sync requests and acknowledgements, and the replica's poll.

Only a provisioned, not revoked device is heard at all (``Gate.admit``, for requests and
acknowledgements alike). Its ``sync_request`` is answered with the deltas of the
revision stream (``SyncEngine``), sealed to that device; the revision it says it holds
counts as an acknowledgement (``DeletionConfirmations``), as does every ``sync_ack``. The
same worker follows the store revision every ``poll_s`` (``ReplicaFollower``), so answers
and the replica's gallery move on one thread. Requests reach one replica through the shared
subscription; any replica can answer, since the answer depends only on the stores.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable

from appliance.errors import ApplianceError, is_unwritable
from appliance.matcher.deletions import DeletionConfirmations
from appliance.matcher.eligibility import DEFAULT_GROUP
from appliance.matcher.device_limits import Limits
from appliance.matcher.gate import MALFORMED, Gate, any_mode
from appliance.matcher.replica import POLL_S, ReplicaFollower
from appliance.matcher.replica_io import Auditor, Courier, StoreTrouble
from appliance.matcher.revisions import SyncEngine
from appliance.matcher.service import Route
from appliance.protocol import messages, topics
from appliance.protocol.directory import NodeDirectory
from appliance.security.envelope import MessageType, NodeKeys, Opener, ReplayGuard
from appliance.transport.mqtt import Incoming
from appliance.workers import QueueWorker, Ticker

log = logging.getLogger(__name__)

QUEUE_LIMIT = 10_000
_FOLLOW = None  # the ticker's item: look for new revisions


class SyncHandler:
    def __init__(self, name: str, keys: NodeKeys, directory: NodeDirectory, engine: SyncEngine,
                 confirmations: DeletionConfirmations, follower: ReplicaFollower, courier: Courier,
                 stats: Counter[str], group_of: Callable[[str], str] | None = None,
                 device_allowed: Callable[[str, str], bool] | None = None, poll_s: float = POLL_S,
                 replay_window_s: float = 120.0, gate: Gate | None = None,
                 central_allowed: Callable[[], bool] | None = None):
        # every answer carries the site's matching decision (appliance.matcher.site_policy);
        # none wired: central matching is not justified (fail safe)
        self.central_allowed = central_allowed or (lambda: False)
        self.name, self.engine, self.confirmations, self.follower = name, engine, confirmations, follower
        self.courier, self.stats = courier, stats
        self.group_of = group_of or (lambda device: DEFAULT_GROUP)
        self.gate = gate or Gate(name, Limits(), Auditor(name), stats, any_mode(device_allowed))
        self.opener = Opener(keys, directory.devices(), window_s=replay_window_s,
                             guard=ReplayGuard(not_before=time.time()))
        self.store_trouble = StoreTrouble(name, stats)
        worker: QueueWorker[Incoming | None] = QueueWorker(f"{name}-sync", self._take, QUEUE_LIMIT, stats)
        self.route = Route((topics.SYNC_ACK,), worker, Ticker(f"{name}-sync-poll", poll_s, lambda: worker.put(_FOLLOW)))

    def _take(self, incoming: Incoming | None) -> None:
        if incoming is None:
            self.follower.follow()
        else:
            self.handle(incoming)

    def handle(self, incoming: Incoming) -> None:
        inbound = self.gate.admit(self.opener, incoming, MessageType.SYNC_ACK)
        if inbound is None:  # revoked or without a policy: no deltas, no confirmations
            return
        device = inbound.device
        try:
            message = messages.decode(inbound.payload)
            if not isinstance(message, (messages.SyncRequest, messages.SyncAck)) or message.device_id != device:
                raise ValueError("not a sync message of this device")
        except Exception as exc:  # MESSAGE_REJECTED or a foreign message type
            log.debug("%s: bad sync message from %s: %s", self.name, device, exc)
            self.gate.refuse(device, inbound.kind, MALFORMED)
            return
        if isinstance(message, messages.SyncAck):
            self._acknowledge(device, message.revision, inbound.kind)
            self.stats["sync_acks"] += 1
            return
        if not message.snapshot_id:
            self._acknowledge(device, message.revision, inbound.kind)  # what it holds, committed
        deltas, why = self.engine.answer(message, self.group_of(device))
        self.stats[f"sync:{why}"] += 1
        central = self.central_allowed()
        for delta in deltas:
            self.courier.sync(device, dataclasses.replace(delta, central=central))

    def _acknowledge(self, device: str, revision: int, kind: str) -> None:
        """Record that ``device`` holds ``revision``. The answer does not depend on it: with the
        store unwritable (a full disk) the door is answered all the same - unanswered, it would
        take the matcher for gone and its cache would go stale - and its deletion confirmations
        wait for its next request, which says the revision again."""
        try:
            self.confirmations.acknowledge(device, revision)
        except ApplianceError as exc:
            if not is_unwritable(exc):
                raise
            self.store_trouble.note(device, kind, exc, outcome="answered all the same; the door's next request "
                                    "acknowledges again")

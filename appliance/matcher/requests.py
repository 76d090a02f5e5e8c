"""Match requests: open, decode strictly, decide, answer with a sealed ``Decision``.

A request is an envelope sealed to the matcher and signed by the device whose ``req`` topic
it came on, from a device still provisioned (``Gate.admit``), with a ``match_request``
naming that same device inside. The
decision comes from ``MatchEngine`` over the replica's gallery (``LoadedGallery``): the
device's provisioning policy, the model pack and the matcher's own liveness judgement come
first. The answer is sealed to the device on its own ``decision`` topic. Idempotent: a
retried request id gets the same sealed decision again without a second count. Anything
malformed, forged or replayed is counted and noted by the gate (one audit record per device
and window), never fatal.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.gate import MALFORMED, Gate, Limits, any_mode
from appliance.matcher.loaded import LoadedGallery
from appliance.matcher.replica_io import Audit, Courier
from appliance.matcher.service import Route
from appliance.matching import MatchEngine, Verdict
from appliance.protocol import messages, topics
from appliance.protocol.directory import NodeDirectory
from appliance.protocol.inbound import Inbound
from appliance.security.envelope import Header, MessageType, NodeKeys, Opener, ReplayGuard
from appliance.transport.mqtt import Incoming
from appliance.vision.templates import Template
from appliance.workers import QueueWorker

log = logging.getLogger(__name__)

RECENT_DECISIONS = 4096  # request ids remembered for idempotent retries
QUEUE_LIMIT = 10_000


class RequestHandler:
    def __init__(self, name: str, keys: NodeKeys, directory: NodeDirectory, loaded: LoadedGallery,
                 threshold: float, courier: Courier, audit: Audit, stats: Counter[str],
                 replay_window_s: float = 120.0, liveness_check: Callable[[str, dict], bool] | None = None,
                 device_allowed: Callable[[str, str], bool] | None = None, gate: Gate | None = None):
        self.name = name
        self.loaded = loaded
        self.engine = MatchEngine(loaded.gallery, threshold, loaded.claims.get)
        # nothing sealed before this process started is accepted: its predecessor may have
        # accepted it already (the replay state is not carried across restarts)
        self.opener = Opener(keys, directory.devices(), window_s=replay_window_s,
                             guard=ReplayGuard(not_before=time.time()))
        self.courier, self.audit, self.stats = courier, audit, stats
        self.liveness_check = liveness_check  # second judgement on the device's evidence
        # provisioning policy: is this device (still) allowed this matching mode?
        self.device_allowed = device_allowed or (lambda device, mode: True)
        self.gate = gate or Gate(name, Limits(), audit, stats, any_mode(device_allowed))
        self._recent: OrderedDict[str, bytes] = OrderedDict()
        self.route = Route((topics.REQUEST,), QueueWorker(f"{name}-worker", self.handle, QUEUE_LIMIT, stats))

    def handle(self, incoming: Incoming) -> None:
        inbound = self.gate.admit(self.opener, incoming)
        if inbound is None:
            return
        try:
            self._answer(inbound, incoming)
        except ApplianceError as exc:
            log.debug("%s: malformed %s from %s: %s", self.name, inbound.kind, inbound.device, exc)
            self.gate.refuse(inbound.device, inbound.kind, MALFORMED)

    def _answer(self, inbound: Inbound, incoming: Incoming) -> None:
        device = inbound.device
        request = messages.decode(inbound.payload, messages.MatchRequest)
        if request.device_id != device:
            raise ApplianceError(ErrorCode.MESSAGE_REJECTED, "device id does not match the sender")
        cached = self._recent.get(request.request_id)
        if cached is not None:  # a retry: same answer, counted once
            self.stats["retries"] += 1
            self._reply(device, incoming, cached)
            return
        with self.loaded.lock:
            verdict = self.decide(device, request, inbound.header)
            display = self.loaded.display_names.get(verdict.subject_id, "") if verdict.accepted else ""
        decision = messages.Decision(request_id=request.request_id, accepted=verdict.accepted, reason=verdict.reason,
                                     display_name=display, retry_after_s=round(verdict.retry_after_s, 1),
                                     subject=verdict.subject_id if verdict.accepted else "")
        sealed = self.courier.seal(device, MessageType.DECISION, decision,
                                   (inbound.header.pack_id, inbound.header.pack_version))
        self._recent[request.request_id] = sealed
        while len(self._recent) > RECENT_DECISIONS:
            self._recent.popitem(last=False)
        self.stats["accepted" if verdict.accepted else "rejected"] += 1
        self.audit(device, f"decision.{request.mode}", verdict.subject_id or "-",
                   "pass" if verdict.accepted else "fail", verdict.reason)
        self._reply(device, incoming, sealed)

    def decide(self, device: str, request: messages.MatchRequest, header: Header) -> Verdict:
        gallery = self.loaded.gallery
        if not self.device_allowed(device, request.mode):
            return Verdict(False, messages.Reason.BAD_REQUEST)
        if (header.pack_id, header.pack_version) != (gallery.pack_id, gallery.pack_version):
            return Verdict(False, messages.Reason.PACK_MISMATCH)
        if self.liveness_check is not None and not self.liveness_check(device, request.liveness):
            return Verdict(False, messages.Reason.LIVENESS_FAILED)
        vector = request.vector()
        if len(vector) != gallery.dimension:
            return Verdict(False, messages.Reason.BAD_REQUEST)
        template = Template(vector, gallery.pack_id, gallery.pack_version)
        return self.engine.decide(device, template, request.claim, time.time())

    def _reply(self, device: str, incoming: Incoming, sealed: bytes) -> None:
        # the device's own decision topic, never a response topic it was given; paho
        # retransmits until the broker acknowledges, so the worker need not wait for it
        self.courier.send(device, topics.DECISION, sealed, correlation=incoming.correlation, wait=False)

"""Match requests: open, decode strictly, decide, answer with a sealed ``Decision``.

A request is an envelope sealed to the matcher and signed by the device whose ``req`` topic
it came on, from a device still provisioned (``Gate.admit``), with a ``match_request``
naming that same device inside. The
decision comes from ``MatchEngine`` over the replica's gallery (``LoadedGallery``): the
device's provisioning policy, the model pack and the matcher's own liveness judgement come
first; a match is then only granted if the site's access rules (``access``, a
``matcher.access_site.SiteAccess``) let that person through that door now, else the answer is
a refusal with the rule's reason code (never a score). The answer is sealed to the device on
its own ``decision`` topic. Idempotent: a
retried request id gets the same sealed decision again without a second count. The worker
takes every request already waiting (up to ``SEARCH_BATCH``) at once - under load after a short
gather window (``[matcher] request_gather_ms``, ``workers.QueueWorker``) - : each is opened and
decided as it would be alone, but their 1:N searches are one matrix product
(``loaded.SearchedBatch``), and they are answered in arrival order. The worker is ``inline``:
the replica's MQTT network thread runs its batches between reads and writes (``service``), so
an answer goes out in the pass that decided it (issue 17: ~15 % less CPU per request than
handing each request to a thread of its own). Anything
malformed, forged or replayed is counted and noted by the gate (one audit record per device
and window), never fatal.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from appliance.access.rules import ANTI_PASSBACK
from appliance.errors import ApplianceError, ErrorCode, is_unwritable
from appliance.matcher.access_site import AccessMemo, SiteAccess
from appliance.matcher.device_limits import Limits
from appliance.matcher.gate import MALFORMED, Gate, any_mode
from appliance.matcher.loaded import LoadedGallery, SearchedBatch
from appliance.matcher.replica_io import LEFT_UNANSWERED, Audit, Courier, StoreTrouble, decision_detail
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
# requests the worker takes from its queue at once (only what is already waiting): their 1:N
# searches are one matrix product (issue 17: one search per request was most of its CPU)
SEARCH_BATCH = 64
# An answer goes out at QoS 0, as decisions cross a site bridge (broker.bridge.QOS_DOWN): a
# door that misses one asks again with the same request id and this replica answers from
# ``_recent`` (``RECENT_DECISIONS``), the same sealed bytes, counted once. QoS 1 bought
# nothing a door relies on - the broker delivers to a door's clean session only while it is
# connected either way - and cost a PUBACK per answer on the network thread (issue 17).
DECISION_QOS = 0


@dataclass
class _Opened:
    """One opened, decoded request of a batch, and what the batch decided for it."""

    inbound: Inbound
    incoming: Incoming
    request: messages.MatchRequest
    template: Template | None
    verdict: Verdict | None = None  # None: a retry (or refused as malformed while deciding)
    display: str = ""


class RequestHandler:
    def __init__(self, name: str, keys: NodeKeys, directory: NodeDirectory, loaded: LoadedGallery,
                 threshold: float, courier: Courier, audit: Audit, stats: Counter[str],
                 replay_window_s: float = 120.0, liveness_check: Callable[..., bool] | None = None,
                 device_allowed: Callable[[str, str], bool] | None = None, gate: Gate | None = None,
                 gather_s: float = 0.0):
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
        # the presence book or the audit queue cannot take the pass: no answer, no strike against the door
        self.store_trouble = StoreTrouble(name, stats)
        self.access: SiteAccess | None = None  # the site's access rules (set by matcher.app.compose)
        self._recent: OrderedDict[str, bytes] = OrderedDict()
        self.route = Route((topics.REQUEST,), QueueWorker(f"{name}-worker", self.handle, QUEUE_LIMIT, stats,
                                                          handle_batch=self.handle_batch, max_batch=SEARCH_BATCH,
                                                          gather_s=gather_s), inline=True)

    def handle(self, incoming: Incoming) -> None:
        self.handle_batch([incoming])

    def handle_batch(self, batch: list[Incoming]) -> None:
        """Open and decode each request, decide them all under the gallery lock with their 1:N
        searches done together, then answer each in arrival order (the access rules read once
        for all). A retried request id gets the answer it got before, even within one batch,
        counted once."""
        opened: list[_Opened] = []
        for incoming in batch:
            inbound = self.gate.admit(self.opener, incoming)
            if inbound is None:
                continue
            try:
                request = messages.decode(inbound.payload, messages.MatchRequest)
                if request.device_id != inbound.device:
                    raise ApplianceError(ErrorCode.MESSAGE_REJECTED, "device id does not match the sender")
                opened.append(_Opened(inbound, incoming, request, self.template(request)))
            except ApplianceError as exc:
                self._malformed(inbound, exc)
        if not opened:
            return
        first: set[str] = set()
        with self.loaded.lock:
            engine = self.search([item.template for item in opened if item.template is not None
                                  and not item.request.claim and item.request.request_id not in self._recent])
            for item in opened:
                request_id = item.request.request_id
                if request_id in self._recent or request_id in first:
                    continue  # a retry: answered below with the first answer
                first.add(request_id)
                try:
                    item.verdict = self.decide(item.inbound.device, item.request, item.inbound.header, engine,
                                               item.template)
                except ApplianceError as exc:
                    self._malformed(item.inbound, exc)
                    continue
                if item.verdict.accepted:
                    item.display = self.loaded.display_names.get(item.verdict.subject_id, "")
        rules = self.access.current() if self.access is not None else None  # read once for the batch
        for item in opened:
            try:
                self._answer(item, rules)
            except ApplianceError as exc:
                if is_unwritable(exc):
                    self.store_trouble.note(item.inbound.device, item.inbound.kind, exc, LEFT_UNANSWERED)
                else:
                    self._malformed(item.inbound, exc)

    def _malformed(self, inbound: Inbound, exc: ApplianceError) -> None:
        log.debug("%s: malformed %s from %s: %s", self.name, inbound.kind, inbound.device, exc)
        self.gate.refuse(inbound.device, inbound.kind, MALFORMED)

    def _answer(self, item: _Opened, rules: AccessMemo | None = None) -> None:
        device, request, incoming = item.inbound.device, item.request, item.incoming
        if item.verdict is None:
            cached = self._recent.get(request.request_id)
            if cached is not None:  # a retry: same answer, counted once
                self.stats["retries"] += 1
                self._reply(device, incoming, cached)
            return
        verdict = self.admit(device, item.verdict, request.request_id, rules)
        display = item.display if verdict.accepted else ""  # a refused person is not named on the door's screen
        decision = messages.Decision(request_id=request.request_id, accepted=verdict.accepted, reason=verdict.reason,
                                     display_name=display, retry_after_s=round(verdict.retry_after_s, 1),
                                     subject=verdict.subject_id if verdict.accepted else "")
        sealed = self.courier.seal(device, MessageType.DECISION, decision,
                                   (item.inbound.header.pack_id, item.inbound.header.pack_version))
        # on record before it is given (or remembered for a retry): a queue of entries the disk
        # cannot take refuses it here, and the door decides from its cache (``StoreTrouble``)
        self.audit(device, f"decision.{request.mode}", verdict.subject_id or "-",
                   "pass" if verdict.accepted else "fail", decision_detail(verdict.reason, request.request_id),
                   block=False)
        self._recent[request.request_id] = sealed
        while len(self._recent) > RECENT_DECISIONS:
            self._recent.popitem(last=False)
        self.stats["accepted" if verdict.accepted else "rejected"] += 1
        self._reply(device, incoming, sealed)

    def template(self, request: messages.MatchRequest) -> Template | None:
        """The request's probe in the gallery's pack, None when its size is not the gallery's."""
        gallery = self.loaded.gallery
        vector = request.vector()
        if len(vector) != gallery.dimension:
            return None
        return Template(vector, gallery.pack_id, gallery.pack_version)

    def search(self, probes: list[Template]) -> MatchEngine:
        """The engine for one batch: its 1:N ``probes`` searched together (``SearchedBatch``)."""
        return MatchEngine(SearchedBatch(self.loaded.gallery, probes), self.engine.threshold,
                           self.engine.resolve_claim, self.engine.tracker)

    def decide(self, device: str, request: messages.MatchRequest, header: Header, engine: MatchEngine | None = None,
               template: Template | None = None) -> Verdict:
        """The verdict before the access rules; ``engine``/``template``: the batch's (``search``)."""
        gallery = self.loaded.gallery
        if not self.device_allowed(device, request.mode):
            return Verdict(False, messages.Reason.BAD_REQUEST)
        if (header.pack_id, header.pack_version) != (gallery.pack_id, gallery.pack_version):
            return Verdict(False, messages.Reason.PACK_MISMATCH)
        # the envelope (Gate.admit) authenticated ``device``: its evidence's signature adds nothing
        if self.liveness_check is not None and not self.liveness_check(device, request.liveness,
                                                                       origin_authenticated=True):
            return Verdict(False, messages.Reason.LIVENESS_FAILED)
        template = template if template is not None else self.template(request)
        if template is None:
            return Verdict(False, messages.Reason.BAD_REQUEST)
        return (engine or self.engine).decide(device, template, request.claim, time.time())

    def admit(self, device: str, verdict: Verdict, pass_id: str = "", rules: AccessMemo | None = None) -> Verdict:
        """A match stands only if the access rules grant that subject at ``device`` now; a
        refusal keeps the subject (the audit entry says who was refused) but is not accepted.
        ``pass_id``: the request's id (``SiteAccess.decide``: a retry reaching another replica);
        ``rules``: as read for the batch (``SiteAccess.current``); None: read now."""
        if not verdict.accepted or self.access is None:
            return verdict
        now = time.time()
        access = self.access.decide(verdict.subject_id, device, now, rules, pass_id)
        if access.passback_violation:  # soft anti-passback: let through, but on record (audit, door log)
            self.stats["passback_violations"] += 1
            self.audit(device, "access.passback_violation", verdict.subject_id, "fail", ANTI_PASSBACK, block=False)
            self.access.record_violation(verdict.subject_id, device, now)
        if access.granted:
            return verdict
        self.stats[f"access_{access.reason}"] += 1
        return Verdict(False, access.reason, verdict.subject_id)

    def _reply(self, device: str, incoming: Incoming, sealed: bytes) -> None:
        # the device's own decision topic, never a response topic it was given
        self.courier.send(device, topics.DECISION, sealed, correlation=incoming.correlation, qos=DECISION_QOS)

"""Card and PIN requests (``credential`` topic): the non-face alternative, decided centrally.

A request is an envelope sealed to the matcher (type PROBE) and signed by the device whose
``credential`` topic it came on (``Gate.admit``), with a ``credential_request`` naming that
same device. The card's holder comes from the identity registry (card number, PIN hash, and
whether they refused face recognition: ``stores.identity.card_holder``), the rule from
``matching.credentials.CredentialJudge`` (the door mode, the PIN, failures per card and per
door keypad), then the site's access rules (``admit``, the face requests' own check). The
answer is the same sealed ``Decision`` as a face pass, on the device's ``decision`` topic.
Idempotent: a retried request id gets the same sealed decision without a second count.
Neither card number nor PIN is ever logged or audited.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable

from appliance.errors import ApplianceError, ErrorCode, is_unwritable
from appliance.matcher.gate import MALFORMED, Gate
from appliance.matcher.replica_io import LEFT_UNANSWERED, Audit, Courier, StoreTrouble, decision_detail
from appliance.matcher.service import Route
from appliance.matching import Verdict
from appliance.matching.credentials import Credential, CredentialJudge, Holder
from appliance.protocol import messages, topics
from appliance.protocol.credential_messages import CredentialRequest
from appliance.protocol.directory import NodeDirectory
from appliance.protocol.inbound import Inbound
from appliance.security.envelope import MessageType, NodeKeys, Opener, ReplayGuard
from appliance.security.masking import mask_name
from appliance.security.roles import Principal
from appliance.transport.mqtt import Incoming
from appliance.workers import QueueWorker

log = logging.getLogger(__name__)

RECENT_DECISIONS = 4096  # request ids remembered for idempotent retries
QUEUE_LIMIT = 10_000


class CredentialRequestHandler:
    """The route of ``credential`` requests of one replica. ``identity`` is the central
    identity registry, read under ``principal``; ``admit`` applies the site's access rules to
    an accepted verdict (``RequestHandler.admit``)."""

    def __init__(self, name: str, keys: NodeKeys, directory: NodeDirectory, identity, principal: Principal,
                 courier: Courier, audit: Audit, stats: Counter[str], gate: Gate, judge: CredentialJudge,
                 admit: Callable[[str, Verdict, str], Verdict] | None = None, replay_window_s: float = 120.0):
        self.name, self.identity, self.principal = name, identity, principal
        self.courier, self.audit, self.stats, self.gate, self.judge = courier, audit, stats, gate, judge
        self.admit = admit or (lambda device, verdict, pass_id="": verdict)
        self.opener = Opener(keys, directory.devices(), window_s=replay_window_s,
                             guard=ReplayGuard(not_before=time.time()))
        self._recent: OrderedDict[str, bytes] = OrderedDict()
        self.store_trouble = StoreTrouble(name, stats)
        self.route = Route((topics.CREDENTIAL,),
                           QueueWorker(f"{name}-credentials", self.handle, QUEUE_LIMIT, stats))

    def handle(self, incoming: Incoming) -> None:
        inbound = self.gate.admit(self.opener, incoming, expect=MessageType.PROBE)
        if inbound is None:
            return
        try:
            self._answer(inbound, incoming)
        except ApplianceError as exc:
            if is_unwritable(exc):  # the presence book not writable: the door's cache decides
                self.store_trouble.note(inbound.device, inbound.kind, exc, LEFT_UNANSWERED)
                return
            log.debug("%s: malformed credential request from %s: %s", self.name, inbound.device, exc.code.name)
            self.gate.refuse(inbound.device, inbound.kind, MALFORMED)

    def _answer(self, inbound: Inbound, incoming: Incoming) -> None:
        device = inbound.device
        request = messages.decode(inbound.payload, CredentialRequest)
        if request.device_id != device:
            raise ApplianceError(ErrorCode.MESSAGE_REJECTED, "device id does not match the sender")
        sealed = self._recent.get(request.request_id)
        if sealed is None:
            sealed = self._decide(device, request)
        else:
            self.stats["credential_retries"] += 1
        self.courier.send(device, topics.DECISION, sealed, correlation=incoming.correlation, wait=False)

    def _decide(self, device: str, request: CredentialRequest) -> bytes:
        verdict, display = self.decide(device, request, time.time())
        decision = messages.Decision(request.request_id, verdict.accepted, verdict.reason,
                                     display if verdict.accepted else "", round(verdict.retry_after_s, 1),
                                     verdict.subject_id if verdict.accepted else "")
        sealed = self.courier.seal(device, MessageType.DECISION, decision)
        self.audit(device, f"decision.{request.kind}", verdict.subject_id or "-",
                   "pass" if verdict.accepted else "fail",
                   decision_detail(verdict.reason, request.request_id, request.mode), block=False)  # on record first
        self._recent[request.request_id] = sealed
        while len(self._recent) > RECENT_DECISIONS:
            self._recent.popitem(last=False)
        self.stats["credential_accepted" if verdict.accepted else "credential_rejected"] += 1
        return sealed

    def decide(self, device: str, request: CredentialRequest, now: float) -> tuple[Verdict, str]:
        """(verdict, masked name of the holder) of one request at ``now``."""
        credential = Credential(request.kind, request.card, request.pin)
        found = self.identity.card_holder(self.principal, credential.card)
        holder = Holder(found[0], found[1], found[2]) if found else None
        verdict = self.judge.judge(device, request.mode, credential, holder, now)
        if not verdict.accepted:
            return verdict, ""
        # a refusal by the access rules keeps the subject for the audit
        verdict = self.admit(device, verdict, request.request_id)
        if not verdict.accepted:
            return verdict, ""
        return verdict, mask_name(self.identity.person(self.principal, verdict.subject_id).name)

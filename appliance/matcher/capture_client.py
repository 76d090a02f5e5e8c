"""The central side of enrollment from a door camera: ask one device, wait for its answer.

The console's process (``appliance console``) holds one ``CaptureClient``: its own MQTT
connection under a ``console`` identity, whose broker rights are exactly "publish on every
device's ``enroll-capture`` topic, read every device's ``enroll-result`` topic"
(``protocol.topics.RIGHTS``) - it can neither ask for a match, nor sync, nor read events.
It seals under its own name with the central keys (as matcher replicas do), so a device
finds it in the node directory as a ``console`` and seals the answer back to it. One
identity, one connection: two processes under the same console name would take each
other's MQTT session over. Doors and consoles know each other from the node directory as it
was when they started (``appliance provision console NAME``, then restart the broker and the
doors).

An answer counts only when it opens (signed by the device, fresh, not replayed), arrived
on that device's own topic, the device may publish there (``topics.may_publish``, and the
site's own check ``may_send``: provisioned, not revoked) and it carries the id of a request
waiting for it. A device that is not in the directory, or that the site no longer allows,
is not asked at all; one that does not answer in the request's time plus
``ANSWER_MARGIN_S`` raises REQUEST_TIMEOUT. What comes back goes to
``EnrollmentDesk.enroll_templates`` (``as_enrollment``): the same consent, duplicate and
storage policy as uploaded images.

``as_enrollment`` is the one gate between a door's answer and the desk, and it never trusts
the door's liveness verdict alone (the rule of a door decision, ``matcher.liveness``): every
capture fused into the template must come with evidence signed by that device's key, made
for this request (its id and ``EVIDENCE_PURPOSE`` are in the signed summary), fresh, at least
at the site's level and self-consistent (``liveness.server.judge_evidence``). An enrollment
from a camera needs liveness evidence even where the site runs its doors with
``liveness.level = "off"``: the check is then made at ``ENROLLMENT_MIN_LEVEL``. Anything
short of that - a ``liveness_failed`` answer, no evidence, evidence of another request or
device - raises LIVENESS_FAILED and nothing reaches the desk.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from appliance.config import LIVENESS_LEVELS, LivenessConfig
from appliance.enrollment import EnrollmentResult, RejectedCapture
from appliance.errors import ApplianceError, ErrorCode
from appliance.liveness.evidence import from_transport
from appliance.liveness.server import ServerPolicy, judge_evidence
from appliance.protocol import messages, topics
from appliance.protocol.capture_messages import (
    EVIDENCE_PURPOSE, LIVENESS_FAILED, LIVENESS_FAILED_GUIDANCE, MAX_CAPTURE_TIMEOUT_S, CaptureRequest, CaptureResult,
)
from appliance.protocol.directory import CONSOLE, DEVICE, NodeDirectory
from appliance.protocol.inbound import open_on_topic
from appliance.security.envelope import MessageType, NodeKeys, Opener, ReplayGuard, Sealer
from appliance.transport.mqtt import Incoming, MqttEndpoint, MqttSettings
from appliance.vision.quality import QualityIssue
from appliance.vision.templates import Template

log = logging.getLogger(__name__)

ANSWER_MARGIN_S = 5.0  # the device's own time limit, plus this for the answer's way back
DEFAULT_FRAMES = 9  # the enrollment policy's whole burst: 3 attempts of 3 captures
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_CONSOLE = "console"  # the console process's MQTT identity unless told otherwise
ENROLLMENT_MIN_LEVEL = "passive"  # the least liveness an enrollment from a camera is judged at
ENROLL_WITHIN_S = 120.0  # after the answer, the console enrolls what was captured within this
# the oldest capture evidence a desk takes: a capture's whole time, the way back, the operator
EVIDENCE_MAX_AGE_S = MAX_CAPTURE_TIMEOUT_S + ANSWER_MARGIN_S + ENROLL_WITHIN_S


def provision_console(pki, directory: NodeDirectory, central: NodeKeys, name: str) -> None:
    """A console identity: its certificate (role ``console``; the broker grants its rights at
    its next start) and its directory entry (the central keys under its own name)."""
    if name not in pki.identities():
        pki.issue_client(name, CONSOLE)
    directory.add(central, CONSOLE, name=name)


def console_keys(central: NodeKeys, name: str) -> NodeKeys:
    """The central keys, signing under the console's own name."""
    return central.renamed(name)  # SM2 keys and suite too


class CaptureClient:
    """One MQTT connection for every capture request of a process; thread-safe."""

    def __init__(self, mqtt: MqttSettings, keys: NodeKeys, directory: NodeDirectory, replay_window_s: float = 120.0,
                 may_send: Callable[[str, str], bool] | None = None, liveness_level: str = LivenessConfig.level):
        self.name = keys.node_id
        self.directory = directory
        self.liveness_level = liveness_level  # the site's [liveness] level: what as_enrollment requires
        self.sealer = Sealer(keys)
        self.opener = Opener(keys, directory.devices(), window_s=replay_window_s,
                             guard=ReplayGuard(not_before=time.time()))
        self.may_send = may_send or (lambda device, topic: True)
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._pending: dict[str, tuple[str, threading.Event, list[CaptureResult]]] = {}
        self.endpoint = MqttEndpoint(mqtt, on_message=self._on_message,
                                     subscriptions=(topics.all_devices(topics.ENROLL_RESULT),))

    @classmethod
    def for_site(cls, site, name: str = DEFAULT_CONSOLE, replay_window_s: float = 120.0,
                 may_send: Callable[[str, str], bool] | None = None,
                 liveness_level: str = LivenessConfig.level) -> CaptureClient:
        """The client of the console ``name`` on a host's data folder (``appliance.site.Site``:
        its PKI, the central keys, the node directory as it is now; not connected yet);
        ``liveness_level``: the configuration's ``[liveness] level``."""
        return cls(site.mqtt(name), console_keys(site.central_keys(), name), site.directory, replay_window_s,
                   may_send, liveness_level)

    def connect(self) -> CaptureClient:
        self.endpoint.connect()
        return self

    def close(self) -> None:
        self.endpoint.close(announce_offline=False)

    def __enter__(self) -> CaptureClient:
        return self.connect()

    def __exit__(self, *exc) -> None:
        self.close()

    def request(self, device: str, requested_by: str, notice_version: str, frames: int = DEFAULT_FRAMES,
                timeout_s: float = DEFAULT_TIMEOUT_S) -> CaptureResult:
        """Ask ``device`` for a capture burst and wait for its answer (whatever its status)."""
        if self.directory.roles.get(device) != DEVICE:
            raise ApplianceError(ErrorCode.PKI_ERROR, f"{device!r} is not a device of this site")
        if not self.may_send(device, topics.device_topic(device, topics.ENROLL_RESULT)):
            raise ApplianceError(ErrorCode.PKI_ERROR, f"{device!r} is revoked or not enrolled: not asked")
        request = CaptureRequest(messages.new_id(), device, frames, float(timeout_s), requested_by, notice_version)
        messages.decode(request.encode(), CaptureRequest)  # what the device will check: refused here first
        done, answer = threading.Event(), []
        with self._lock:
            self._pending[request.request_id] = (device, done, answer)
        try:
            sealed = self.sealer.seal(self.directory.get(device), MessageType.CAPTURE_REQUEST, request.encode())
            self.endpoint.publish(topics.device_topic(device, topics.ENROLL_CAPTURE), sealed)
            self.stats["requests"] += 1
            if not done.wait(timeout_s + ANSWER_MARGIN_S):
                self.stats["timeouts"] += 1
                raise ApplianceError(ErrorCode.REQUEST_TIMEOUT, f"{device} did not answer the capture request within "
                                     f"{timeout_s + ANSWER_MARGIN_S:g} s (offline, or its camera is stuck)")
            return answer[0]
        finally:
            with self._lock:
                self._pending.pop(request.request_id, None)

    def as_enrollment(self, result: CaptureResult) -> EnrollmentResult:
        """``as_enrollment`` with this client's node directory and liveness level."""
        return as_enrollment(result, self.directory, self.liveness_level)

    def _on_message(self, incoming: Incoming) -> None:
        try:
            inbound = open_on_topic(self.opener, incoming.topic, incoming.payload, expect=MessageType.CAPTURE_RESULT)
            device = inbound.device
            if not (topics.may_publish(DEVICE, device, incoming.topic) and self.may_send(device, incoming.topic)):
                raise ApplianceError(ErrorCode.MESSAGE_REJECTED, f"{device} may not answer on {incoming.topic}")
            result = messages.decode(inbound.payload, CaptureResult)
            if result.device_id != device:
                raise ApplianceError(ErrorCode.MESSAGE_REJECTED, f"{device} answered for {result.device_id}")
        except ApplianceError as exc:  # EnvelopeRejected included
            self.stats["rejected_answers"] += 1
            log.warning("%s: dropped a capture answer: %s", self.name, exc)
            return
        with self._lock:
            waiting = self._pending.get(result.request_id)
        if waiting is None or waiting[0] != device:
            self.stats["unexpected_answers"] += 1
            return
        _, done, answer = waiting
        if not done.is_set():
            answer.append(result)
            done.set()


def enrollment_level(site_level: str) -> str:
    """The liveness level a camera enrollment is judged at: the site's, never below
    ``ENROLLMENT_MIN_LEVEL``."""
    return max(site_level, ENROLLMENT_MIN_LEVEL, key=LIVENESS_LEVELS.index)


def check_liveness(result: CaptureResult, directory: NodeDirectory, site_level: str,
                   clock: Callable[[], float] = time.time) -> None:
    """The central side's own judgement of a capture's liveness; LIVENESS_FAILED unless every
    capture used has acceptable evidence made for this request by this device."""
    device = result.device_id
    if result.status == LIVENESS_FAILED:
        raise ApplianceError(ErrorCode.LIVENESS_FAILED, f"{device} judged the presentation not live (a photo, a "
                             f"screen or a mask?); nothing enrolled. For the person: {LIVENESS_FAILED_GUIDANCE}")
    if result.template and not result.liveness:
        raise ApplianceError(ErrorCode.LIVENESS_FAILED, f"{device} sent no liveness evidence (its liveness.level "
                             "is off?): an enrollment from a door camera needs it; nothing enrolled")
    if len(result.liveness) != result.used:
        raise ApplianceError(ErrorCode.LIVENESS_FAILED, f"{device} sent {len(result.liveness)} liveness evidence "
                             f"for {result.used} captures used; nothing enrolled")
    try:
        public_key = directory.get(device).signing.public_bytes_raw()
    except ApplianceError as exc:
        raise ApplianceError(ErrorCode.LIVENESS_FAILED, f"no key to check {device}'s evidence: {exc.detail}") from None
    policy = ServerPolicy(min_level=enrollment_level(site_level), max_age_s=EVIDENCE_MAX_AGE_S)
    for index, form in enumerate(result.liveness, start=1):
        judgement = judge_evidence(from_transport(form), public_key, policy, now=clock())
        reasons = list(judgement.reasons)
        summary = judgement.summary or {}
        if judgement.summary is not None and (summary.get("purpose") != EVIDENCE_PURPOSE
                                              or summary.get("request_id") != result.request_id):
            reasons.append("evidence_of_another_request")
        if reasons:
            raise ApplianceError(ErrorCode.LIVENESS_FAILED, f"{device}'s liveness evidence of capture {index} is "
                                 f"not accepted ({', '.join(reasons)}); nothing enrolled")


def as_enrollment(result: CaptureResult, directory: NodeDirectory, site_level: str,
                  clock: Callable[[], float] = time.time) -> EnrollmentResult:
    """The device's answer as the enrollment policy's result (what the desk stores, or
    reports as a failure to enrol with each rejection's reason and guidance), once its
    liveness evidence holds (``check_liveness``; ``site_level``: the ``[liveness] level``)."""
    check_liveness(result, directory, site_level, clock)
    rejected = [RejectedCapture(str(r["capture"]), (QualityIssue(r["reason"], r["guidance"], "", math.nan, math.nan),))
                for r in result.rejections]  # the measured values stay on the door
    vector = result.vector()
    template = None if vector is None else Template(vector, result.pack_id, result.pack_version)
    return EnrollmentResult(template, result.used, [r.codes for r in rejected], rejected, result.attempts,
                            np.array(result.quality, np.float32))

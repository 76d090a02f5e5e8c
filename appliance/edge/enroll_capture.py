"""Enrollment from this door's camera: a console asks, the door captures, the templates go back.

A ``CaptureRequest`` arrives on the device's own ``enroll-capture`` topic, sealed by a console
(``protocol.directory`` role ``console``; the broker lets no one else publish there, and the
opener here knows no other sender, so a request signed by a matcher or another door is refused
and counted). A door whose ``[device] enroll_capture`` is off answers ``refused``; one already
capturing answers ``busy``. Otherwise the capture takes the camera: the daemon hands it every
frame instead of running passes (``feed``), so the door never opens during a capture, and
resumes when it is over.

The capture runs the enrollment policy (``appliance.enrollment``: attempts of captures, each
judged with the enrollment quality profile) over the frames: one capture per
``capture_interval_s`` (time for the person to follow the guidance), a frame without a face
is no capture (the display asks the person to step in front of the camera), the display says
which capture comes and, after a rejection, what to change. It ends when the policy is done
(``ok``) or the request's time runs out (``no_face`` when nobody came, else ``timeout`` with
what was taken). The answer carries the fused reference template of the accepted captures and
each rejection's reason code and guidance, sealed to the console that asked; never an image.
Answers are sent from this handler's worker thread, never from the MQTT network thread.

Liveness is judged as at a door pass, with the same checker at the configured level
(``edge.door_pass.judge_liveness``): every frame of a capture is looked at, and a capture is
the last of ``burst_frames`` face frames in a row (at level ``active``: the frame that ends a
challenge, drawn for each capture, with the last ``burst_frames`` frames before it). A capture
that passes the enrollment profile is judged on its burst before the policy takes it; the
summary, with this request's id and the capture's number, is signed with the device key and
goes back with the template (one per capture used) for the central side's own judgement. A
capture judged not live ends the request at once: ``liveness_failed``, no template, the
failing evidence, the guidance on the display and, as at a door, one alarm when it was an
attack or an unfinished challenge. A door without a liveness check (``liveness.level = "off"``)
answers ``refused``: an enrollment from a camera needs liveness evidence, and the person should
not stand for a capture the central side will refuse.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np

from appliance.capture.sources import Frame
from appliance.edge.challenge_runner import ChallengeRunner
from appliance.edge.door_pass import ALARM_ATTACK, ALARM_LIVENESS_FAILED, LivenessGate, judge_liveness
from appliance.edge.hardware import Display
from appliance.edge.kiosk.screen import ScreenState, State
from appliance.enrollment import CAPTURES_PER_ATTEMPT, EnrollmentResult, EnrollmentSession, judge
from appliance.errors import ApplianceError, ErrorCode
from appliance.liveness.challenge import ActiveChallenge
from appliance.liveness.evidence import SignedEvidence, Signer, sign_summary
from appliance.pipeline import FacePipeline
from appliance.protocol import messages, topics
from appliance.protocol.capture_messages import (
    BUSY, EVIDENCE_PURPOSE, LIVENESS_FAILED, LIVENESS_FAILED_GUIDANCE, NO_FACE, OK, REFUSED, TIMEOUT,
    CaptureRejection, CaptureRequest, CaptureResult,
)
from appliance.protocol.directory import CONSOLE, NodeDirectory
from appliance.protocol.inbound import open_on_topic
from appliance.security.envelope import MessageType, NodeKeys, Opener, ReplayGuard, Sealer
from appliance.transport.mqtt import Incoming
from appliance.vision import quality
from appliance.vision.types import Face
from appliance.workers import QueueWorker, Ticker

log = logging.getLogger(__name__)

CAPTURE_INTERVAL_S = 1.0  # between two captures: the person reads the guidance and adjusts
CHECK_S = 0.2  # how often the time limit is looked at when no frame comes
QUEUE_LIMIT = 100
MAX_MISSING_FRAMES = 2  # faceless frames tolerated inside a burst (a detector miss); more: the burst restarts
STEP_IN_TEXT = "Enrollment: please step in front of the camera"
CAPTURE_TEXT = "Enrollment: look at the camera ({n} of {total})"
DONE_TEXT = "Enrollment capture finished — thank you"
_CHECK = None  # the ticker's item
Emit = Callable[[str, messages.Message], None]


@dataclass(frozen=True)
class CaptureLiveness:
    """The door's liveness check, as its passes use it: the checker (at the configured
    level), the device key that signs the evidence, the calibration's id, the frames judged
    together and, at level ``active``, a challenge runner of the capture's own (the pass
    loop's is abandoned while a capture runs)."""

    gate: LivenessGate
    signer: Signer
    calibration_id: str = ""
    burst_frames: int = 1
    challenge: ChallengeRunner | None = None


@dataclass(frozen=True)
class _Judged:
    """One capture's liveness: the verdict, its signed evidence, and what kind of failure."""

    live: bool
    evidence: SignedEvidence
    attack: bool  # a cue judged the presentation an artefact
    unfinished: bool  # the challenge (level active) was not completed


@dataclass
class _Capture:
    """One request under way: the policy's session and what the display was told."""

    request: CaptureRequest
    requester: str  # the console that sealed the request: the answer is sealed to it
    deadline: float  # monotonic
    session: EnrollmentSession
    next_capture_at: float = 0.0  # monotonic time of the next frame that may be a capture
    faces_seen: bool = False
    taken: int = 0  # captures judged so far
    burst: deque[tuple[np.ndarray, Face]] = field(default_factory=deque)  # the face frames since the last capture
    missing: int = 0  # faceless frames in a row
    evidence: list[SignedEvidence] = field(default_factory=list)  # of each capture accepted, in order


def session_for(frames: int) -> EnrollmentSession:
    """The policy for ``frames`` captures at most: attempts of ``CAPTURES_PER_ATTEMPT`` (fewer
    when fewer captures are asked for)."""
    per_attempt = min(frames, CAPTURES_PER_ATTEMPT)
    return EnrollmentSession(attempts=math.ceil(frames / per_attempt), captures_per_attempt=per_attempt)


class EnrollCapture:
    """The device's capture handler. ``on_message`` takes requests (network thread), ``feed``
    takes frames (the daemon's thread), the worker sends answers and watches the time."""

    def __init__(self, device_id: str, pipeline: FacePipeline, display: Display, allowed: bool, keys: NodeKeys,
                 directory: NodeDirectory, publish: Callable[[str, bytes], None], sealer: Sealer | None = None,
                 replay_window_s: float = 120.0, capture_interval_s: float = CAPTURE_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic, liveness: CaptureLiveness | None = None,
                 emit: Emit | None = None):
        self.device_id, self.pipeline, self.display, self.allowed = device_id, pipeline, display, allowed
        self.liveness = liveness  # None: liveness.level "off" - this door refuses to capture
        self.emit = emit or (lambda kind, message: None)  # alarms, through the door's outbox
        self.directory = directory
        self.result_topic = topics.device_topic(device_id, topics.ENROLL_RESULT)
        self.opener = Opener(keys, directory.consoles(), window_s=replay_window_s,
                             guard=ReplayGuard(not_before=time.time()))
        self.sealer = sealer or Sealer(keys)  # give the link's: one counter sequence per node
        self.publish = publish
        self.capture_interval_s = capture_interval_s
        self.clock = clock
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()  # the capture under way, between the three threads
        self._current: _Capture | None = None
        self._worker: QueueWorker[tuple[str, CaptureResult] | None] = QueueWorker(
            "enroll-capture", self._take, QUEUE_LIMIT, self.stats)
        self._ticker = Ticker("enroll-capture-check", CHECK_S, lambda: self._worker.put(_CHECK))

    def start(self) -> EnrollCapture:
        self._worker.start()
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()
        self._worker.stop()

    @property
    def active(self) -> bool:
        return self._current is not None

    # -- requests (MQTT network thread) -----------------------------------------------------
    def on_message(self, incoming: Incoming) -> None:
        """A message on this device's ``enroll-capture`` topic: start a capture, or answer
        ``busy`` / ``refused``; anything that does not open or check out is dropped."""
        request, requester = self._open(incoming)
        if request is None:
            return
        with self._lock:
            if not self.allowed or self.liveness is None:
                status = REFUSED
            elif self._current is not None:
                status = BUSY
            else:
                status = ""
                self._current = _Capture(request, requester, self.clock() + request.timeout_s,
                                         session_for(request.frames),
                                         burst=deque(maxlen=max(1, self.liveness.burst_frames)))
                if self.liveness.challenge is not None:
                    self.liveness.challenge.abandon()  # a fresh challenge for the first capture
                # under the lock: the display is told one thing at a time
                self.display.show(ScreenState.of(State.GUIDANCE, STEP_IN_TEXT))
        if status:
            if self.allowed and self.liveness is None:
                log.warning("%s: capture refused: no liveness check (liveness.level off)", self.device_id)
            self.stats[f"answered:{status}"] += 1
            self._worker.put((requester, CaptureResult(request.request_id, self.device_id, status)))
            return
        self.stats["captures"] += 1
        log.info("%s: enrollment capture of %d frames for %s", self.device_id, request.frames, request.requested_by)

    def _open(self, incoming: Incoming) -> tuple[CaptureRequest | None, str]:
        try:
            inbound = open_on_topic(self.opener, incoming.topic, incoming.payload, expect=MessageType.CAPTURE_REQUEST)
            sender = inbound.header.sender
            if inbound.device != self.device_id or self.directory.roles.get(sender) != CONSOLE or \
                    not topics.may_publish(CONSOLE, sender, incoming.topic):
                raise ApplianceError(ErrorCode.MESSAGE_REJECTED, f"{sender} may not ask {inbound.device}")
            request = messages.decode(inbound.payload, CaptureRequest)
            if request.device_id != self.device_id:
                raise ApplianceError(ErrorCode.MESSAGE_REJECTED, f"a request for {request.device_id}")
        except ApplianceError as exc:  # EnvelopeRejected included
            self.stats["rejected_requests"] += 1
            log.warning("%s: dropped a capture request: %s", self.device_id, exc)
            return None, ""
        return request, sender

    # -- frames (the daemon's thread) -------------------------------------------------------
    def feed(self, frame: Frame) -> bool:
        """Use ``frame`` for the capture under way; False when there is none (the daemon runs
        its passes with the frame)."""
        alarm = None
        with self._lock:
            current = self._current
            if current is None:
                return False
            now = self.clock()
            if self._expired(current, now):
                return True
            ready = self._burst_ready(current, frame, now)
            if ready is not None:
                alarm = self._capture(current, *ready, now)
        if alarm is not None:  # outside the lock: the outbox may take its time
            try:
                self.emit("alarm", alarm)
            except ApplianceError as exc:
                log.warning("%s: enrollment alarm not queued: %s", self.device_id, exc)
        return True

    def _burst_ready(self, current: _Capture, frame: Frame,
                     now: float) -> tuple[list[tuple[np.ndarray, Face]], ActiveChallenge | None] | None:
        """Adds ``frame`` to the burst; the burst and its finished challenge when a capture is
        due (the capture is its last frame), else None. Called with the lock held."""
        face = self.pipeline.detect(frame.image).subject
        runner = self.liveness.challenge if self.liveness is not None else None
        if face is None:
            current.missing += 1
            if current.missing > MAX_MISSING_FRAMES:  # the person left: start over
                current.burst.clear()
                if runner is not None:
                    runner.abandon()
            return None
        current.faces_seen, current.missing = True, 0
        current.burst.append((frame.image, face))
        if now < current.next_capture_at:
            return None
        if runner is not None:  # level active: the capture is the frame that ends a challenge
            guidance = runner.observe(face, frame.monotonic)
            if guidance is not None:
                self.display.show(ScreenState.of(State.CHALLENGE, guidance))
            return (list(current.burst), runner.finish()) if runner.done else None
        return (list(current.burst), None) if len(current.burst) == current.burst.maxlen else None

    def _capture(self, current: _Capture, burst: list[tuple[np.ndarray, Face]], challenge: ActiveChallenge | None,
                 now: float) -> messages.Message | None:
        """One capture: the enrollment profile, then liveness on its burst when it passed; the
        alarm to send when the presentation failed. Called with the lock held."""
        current.burst.clear()
        report, template = judge(self.pipeline, burst[-1][0])
        if template is None and report.codes == [quality.NO_FACE.code]:
            return None  # the policy's detector lost the face after all: no capture, a new burst
        current.next_capture_at = now + self.capture_interval_s
        current.taken += 1
        if report.passed and template is not None:  # a capture the policy would take: is it live?
            checked = self._judge_liveness(current, burst, challenge)
            if not checked.live:
                return self._refuse(current, checked)
            current.evidence.append(checked.evidence)
        accepted = current.session.add(str(current.taken), report, template)  # labelled by its number
        if current.session.done:
            self._finish(current, OK)
        else:  # what comes next, or what to change first
            self.display.show(ScreenState.of(State.GUIDANCE, CAPTURE_TEXT, n=current.taken + 1,
                                             total=current.request.frames) if accepted
                              else ScreenState.of(State.GUIDANCE, report.issues[0].guidance))
        return None

    def _judge_liveness(self, current: _Capture, burst: list[tuple[np.ndarray, Face]],
                        challenge: ActiveChallenge | None) -> _Judged:
        """The liveness verdict of one capture's burst, with its signed evidence."""
        assert self.liveness is not None  # a capture runs only on a door that judges liveness
        result = judge_liveness(self.liveness.gate, [image for image, _ in burst], [face for _, face in burst],
                                challenge, None, self.liveness.calibration_id)
        summary = {**result.summary, "purpose": EVIDENCE_PURPOSE, "request_id": current.request.request_id,
                   "capture": current.taken}  # bound to this request: no other answer can reuse it
        evidence = sign_summary(summary, self.liveness.signer)
        return _Judged(result.verdict.live, evidence, result.verdict.attack,
                       challenge is not None and not challenge.passed)

    def _refuse(self, current: _Capture, checked: _Judged) -> messages.Message | None:
        """A capture judged not live: the request ends ``liveness_failed`` and nothing of it
        is kept; the alarm, as a door pass raises it. Called with the lock held."""
        current.evidence = [checked.evidence]  # only the failing one goes back (for the audit), with no template
        self._finish(current, LIVENESS_FAILED, LIVENESS_FAILED_GUIDANCE)
        kind = ALARM_ATTACK if checked.attack else ALARM_LIVENESS_FAILED if checked.unfinished else None
        if kind is None:  # nothing judged (a grey face without a grey calibration): no alarm
            return None
        return messages.Alarm(alarm_id=messages.new_id(), device_id=self.device_id, kind=kind, at=time.time(),
                              details=checked.evidence.as_dict())

    def run(self, frames: Iterable[Frame]) -> None:
        """Feed ``frames`` until the capture under way is over (tests, and a door without a
        pass loop)."""
        for frame in frames:
            if not self.feed(frame):
                return

    # -- the end of a capture ---------------------------------------------------------------
    def _expired(self, current: _Capture, now: float) -> bool:
        """Ends the capture when its time is up (``no_face`` if nobody came, else ``timeout``
        with what was taken); called with the lock held."""
        if now < current.deadline:
            return False
        self._finish(current, TIMEOUT if current.faces_seen else NO_FACE)
        return True

    def _finish(self, current: _Capture, status: str, text: str = DONE_TEXT) -> None:
        """Answer (on the worker) and give the camera back; called with the lock held."""
        self._current = None
        result = current.session.result()
        self.stats[f"answered:{status}"] += 1
        self.display.show(ScreenState.of(State.REFUSED if status == LIVENESS_FAILED else State.GUIDANCE, text))
        self._worker.put((current.requester, _answer(self.device_id, current, status, result)))

    def _take(self, item: tuple[str, CaptureResult] | None) -> None:
        if item is None:  # the ticker: a capture whose frames stopped still ends in time
            with self._lock:
                if self._current is not None:
                    self._expired(self._current, self.clock())
            return
        requester, result = item
        try:
            sealed = self.sealer.seal(self.directory.get(requester), MessageType.CAPTURE_RESULT, result.encode(),
                                      result.pack_id, result.pack_version)
            self.publish(self.result_topic, sealed)
        except ApplianceError as exc:  # the console times out; nothing else to do
            self.stats["answers_not_sent"] += 1
            log.warning("%s: capture answer not sent: %s", self.device_id, exc)


def _answer(device_id: str, current: _Capture, status: str, result: EnrollmentResult) -> CaptureResult:
    """The policy's result on the wire: the fused template, never a capture's image."""
    rejections = [CaptureRejection(capture=int(r.label), reason=r.reason, guidance=r.guidance) for r in result.rejected]
    evidence = [signed.as_dict() for signed in current.evidence]
    template = result.template
    if template is None or status == LIVENESS_FAILED:
        return CaptureResult(current.request.request_id, device_id, status, attempts=result.attempts,
                             rejections=rejections, liveness=evidence if status == LIVENESS_FAILED else [])
    return CaptureResult(current.request.request_id, device_id, status, CaptureResult.pack_vector(template.vector),
                         template.pack_id, template.pack_version, result.used,
                         [round(float(score), 2) for score in result.quality], result.attempts, rejections, evidence)

"""The per-pass state machine of one door.

idle -> face present -> quality -> liveness -> template -> decision -> actuate -> cool-down.

A pass starts when a face appears, collects a short burst, picks the best frame, checks
liveness on the burst (a failure stops here: no template, no request, one alarm), extracts
one template, asks the matcher, actuates, then ignores frames for a cool-down. A hard session
limit ends a pass that cannot complete (the person keeps failing quality); capture stops
when recognition ends. No frame or face crop is stored or sent.

When no decision can be had (``Reason.UNAVAILABLE`` from the decider, or an error from it),
the pass ends ``unavailable`` and the display says face recognition is unavailable and to use
the card - never "not recognised", which would be a claim nobody checked. Between passes the
daemon watches the decider's ``decision_available`` and says it on the display as it changes.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from statistics import median
from typing import Protocol

import numpy as np

from appliance.capture.sources import Frame
from appliance.edge.hardware import (
    READY_TEXT, UNAVAILABLE_TEXT, ConsoleDisplay, CredentialReader, DoorActuator, LogActuator,
)
from appliance.liveness.evidence import Signer, sign_summary
from appliance.errors import ApplianceError
from appliance.pipeline import FaceAnalysis, FacePipeline
from appliance.protocol import messages
from appliance.vision.quality import best_frame

log = logging.getLogger(__name__)

AVAILABILITY_CHECK_S = 1.0  # how often the door looks whether it can decide, between passes
UNAVAILABLE = "unavailable"  # the outcome of a pass nobody could decide


class PassState(Enum):
    IDLE = "idle"
    FACE_PRESENT = "face present"
    QUALITY = "quality"
    LIVENESS = "liveness"
    TEMPLATE = "template"
    DECISION = "decision"
    ACTUATE = "actuate"
    COOL_DOWN = "cool-down"


class LivenessVerdict(Protocol):
    live: bool
    attack: bool  # an attack was detected (alarm), as opposed to "could not judge"

    def summary(self) -> dict: ...  # cue scores, challenge results, timestamps: never images


class LivenessGate(Protocol):
    """``appliance.liveness.checker.LivenessChecker`` on the device."""

    def judge(self, frames: list[np.ndarray], faces: list) -> LivenessVerdict: ...


class Decider(Protocol):
    """Where decisions come from: the matcher over MQTT (MatcherLink), or a local cache."""

    def request(self, request: messages.MatchRequest, pack: tuple[str, str]) -> messages.Decision: ...


@dataclass(frozen=True)
class EdgeSettings:
    device_id: str
    burst_frames: int = 3
    max_missing_frames: int = 3  # frames without a face before a pass is abandoned
    session_limit_s: float = 60.0
    cool_down_s: float = 2.0
    open_door_s: float = 3.0
    require_card: bool = False  # "card + face" (1:1) instead of face only (1:N)
    telemetry_every_s: float = 30.0


@dataclass
class PassRecord:
    started_at: float
    outcome: str  # accepted | rejected | attack | timeout | unavailable (no decision could be had)
    reason: str = ""
    display_name: str = ""
    latency_ms: float = 0.0  # face in view -> actuator command
    faces_in_view: int = 1
    stage_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class Telemetry:
    started: float = field(default_factory=time.monotonic)
    frames: int = 0
    stage_ms: dict[str, deque] = field(default_factory=dict)

    def add(self, timings: dict[str, float]) -> None:
        for stage, value in timings.items():
            self.stage_ms.setdefault(stage, deque(maxlen=200)).append(value)

    def medians(self) -> dict[str, float]:
        return {stage: round(median(values), 2) for stage, values in self.stage_ms.items() if values}


class EdgeDaemon:
    def __init__(self, settings: EdgeSettings, pipeline: FacePipeline, decider: Decider,
                 liveness: LivenessGate | None = None, actuator: DoorActuator | None = None,
                 display: ConsoleDisplay | None = None, reader: CredentialReader | None = None,
                 emit: Callable[[str, messages.Message], None] | None = None,
                 heartbeat: Callable[[], None] | None = None, signer: Signer | None = None,
                 calibration_id: str = ""):
        self.settings = settings
        self.pipeline = pipeline
        self.decider = decider
        self.liveness = liveness
        self.actuator = actuator or LogActuator()
        self.display = display or ConsoleDisplay()
        self.reader = reader or CredentialReader()
        self.emit = emit or (lambda kind, message: None)
        self.heartbeat = heartbeat or (lambda: None)
        # the device's Ed25519 key signs the liveness evidence the matcher judges again
        self.signer = signer
        self.calibration_id = calibration_id
        self.state = PassState.IDLE
        self.telemetry = Telemetry()
        self.passes: list[PassRecord] = []
        self._available: bool | None = None  # last seen decision_available (None: not looked yet)
        self._next_availability_check = time.monotonic() + AVAILABILITY_CHECK_S

    # -- what the door can do -------------------------------------------------------------
    @property
    def decision_available(self) -> bool | None:
        """Whether a pass can be decided now, as the decider tells (``CacheDecider``); None
        when it cannot tell (a bare matcher link)."""
        available = getattr(self.decider, "decision_available", None)
        return None if available is None else bool(available)

    def _watch_availability(self) -> None:
        """Say on the display, before anyone tries, that the door cannot decide - and that it
        can again when that changes; checked every AVAILABILITY_CHECK_S (the first time one
        interval after start, so the catch-up after connecting does not flash a warning)."""
        now = time.monotonic()
        if now < self._next_availability_check:
            return
        self._next_availability_check = now + AVAILABILITY_CHECK_S
        available = self.decision_available
        if available is None:
            return
        previous, self._available = self._available, available
        if available == previous or (available and previous is None):
            return
        if available:
            log.info("%s: decisions available again", self.settings.device_id)
            self.display.show(READY_TEXT)
        else:
            log.warning("%s: no decision possible (matcher unreachable, no usable cache)", self.settings.device_id)
            self.display.show(UNAVAILABLE_TEXT)

    # -- the loop -------------------------------------------------------------------------
    def run(self, frames: Iterator[Frame], stop: threading.Event | None = None, max_passes: int | None = None) -> list[PassRecord]:
        for _ in self.run_iter(frames, stop, max_passes):
            pass
        return self.passes

    def run_iter(self, frames: Iterator[Frame], stop: threading.Event | None = None,
                 max_passes: int | None = None) -> Iterator[PassRecord]:
        """Process frames until they end, ``stop`` is set or ``max_passes`` passes are done;
        yields each pass as it completes."""
        stop = stop or threading.Event()
        next_telemetry = time.monotonic() + self.settings.telemetry_every_s
        burst: list[tuple[Frame, FaceAnalysis]] = []
        session_start = missing = 0.0
        cool_until = 0.0
        for frame in frames:
            self.heartbeat()
            if stop.is_set() or (max_passes is not None and len(self.passes) >= max_passes):
                break
            self.telemetry.frames += 1
            if self.state in (PassState.IDLE, PassState.COOL_DOWN):
                self._watch_availability()
            if frame.monotonic >= next_telemetry:
                next_telemetry = frame.monotonic + self.settings.telemetry_every_s
                self._emit("telemetry", self.telemetry_message())
            if frame.monotonic < cool_until:
                self.state = PassState.COOL_DOWN
                continue
            analysis = self.pipeline.analyze(frame.image, self.pipeline.config.quality_verification)
            self.telemetry.add(analysis.timings_ms)
            if analysis.face is None:
                if self.state is PassState.FACE_PRESENT:
                    missing += 1
                    if missing > self.settings.max_missing_frames:
                        burst, self.state = [], PassState.IDLE  # the person left
                else:
                    self.state = PassState.IDLE
                continue
            if self.state in (PassState.IDLE, PassState.COOL_DOWN):
                self.state, burst, session_start, missing = PassState.FACE_PRESENT, [], frame.monotonic, 0
            burst.append((frame, analysis))
            if len(burst) < self.settings.burst_frames:
                continue
            record = self._complete_pass(burst, session_start)
            burst = []
            if record is None:
                if frame.monotonic - session_start > self.settings.session_limit_s:
                    record = PassRecord(time.time(), "timeout", "session limit")
                    self._finish(record)
                    self.state, cool_until = PassState.COOL_DOWN, frame.monotonic + self.settings.cool_down_s
                    yield record
                continue
            self._finish(record)
            self.state, cool_until = PassState.COOL_DOWN, frame.monotonic + self.settings.cool_down_s
            yield record

    def telemetry_message(self) -> messages.Telemetry:
        """Health figures for operators: rates, latencies, queue depths; no biometric data."""
        uptime = time.monotonic() - self.telemetry.started
        return messages.Telemetry(
            device_id=self.settings.device_id, at=time.time(), uptime_s=round(uptime, 1),
            frames_per_s=round(self.telemetry.frames / max(uptime, 1e-6), 2),
            stage_latency_ms=self.telemetry.medians(), queue_depths={"passes": len(self.passes)},
            pack=self.pipeline.embedder_pack.label,
        )

    def _finish(self, record: PassRecord) -> None:
        self.passes.append(record)
        details = {"outcome": record.outcome, "reason": record.reason, "latency_ms": round(record.latency_ms, 1),
                   "faces_in_view": record.faces_in_view}
        self._emit("event", messages.Event(messages.new_id(), self.settings.device_id, "pass", time.time(), details))

    def _emit(self, kind: str, message: messages.Message) -> None:
        try:
            self.emit(kind, message)
        except ApplianceError as exc:  # queued for later delivery by the outbox (offline issue)
            log.warning("could not send %s: %s", kind, exc)

    # -- one pass -------------------------------------------------------------------------
    def _complete_pass(self, burst: list[tuple[Frame, FaceAnalysis]], session_start: float) -> PassRecord | None:
        """Quality -> liveness -> template -> decision -> actuate; None = keep collecting."""
        self.state = PassState.QUALITY
        analyses = [analysis for _, analysis in burst]
        best = best_frame([a.quality for a in analyses])
        chosen = analyses[best]
        if not chosen.quality.passed:
            self.display.show(chosen.quality.issues[0].guidance)
            return None
        others = len(chosen.detection.others)
        if others:
            self._emit("event", messages.Event(messages.new_id(), self.settings.device_id, "tailgating", time.time(),
                                               {"faces_in_view": others + 1}))
        stage_ms: dict[str, float] = {}
        liveness_summary: dict = {}
        if self.liveness is not None:
            self.state = PassState.LIVENESS
            start = time.perf_counter()
            started_at = time.time()
            outcome = self.liveness.judge([frame.image for frame, _ in burst], [a.face for a in analyses])
            stage_ms["liveness"] = (time.perf_counter() - start) * 1000
            summary = {"started_at": started_at, "decided_at": time.time(), "calibration": self.calibration_id,
                       **outcome.summary()}
            liveness_summary = sign_summary(summary, self.signer).as_dict() if self.signer else summary
            if not outcome.live:
                # stop here: no template, no match request; one alarm for the session
                self.display.show("Not recognised. Please see staff.")
                if outcome.attack:
                    self._emit("alarm", messages.Alarm(messages.new_id(), self.settings.device_id,
                                                       "presentation_attack", time.time(), liveness_summary))
                return PassRecord(time.time(), "attack" if outcome.attack else "rejected",
                                  messages.Reason.LIVENESS_FAILED, latency_ms=(time.monotonic() - burst[0][0].monotonic) * 1000,
                                  faces_in_view=others + 1, stage_ms=stage_ms)
        self.state = PassState.TEMPLATE
        extraction = self.pipeline.extract([chosen], self.pipeline.config.quality_verification)[0]
        stage_ms["embedding"] = extraction.analysis.timings_ms.get("embedding", 0.0)
        self.telemetry.add({k: v for k, v in stage_ms.items()})
        if not extraction.analysis.quality.passed:
            self.display.show(extraction.analysis.quality.issues[0].guidance)
            return None
        credential = self.reader.poll()
        if self.settings.require_card and credential is None:
            self.display.show("Present your card")
            return None
        template = extraction.template
        request = messages.MatchRequest(
            request_id=messages.new_id(), device_id=self.settings.device_id,
            mode="verify" if credential else "identify",
            template_b64=messages.MatchRequest.pack_vector(template.vector),
            captured_at=burst[best][0].timestamp, claim=credential.value if credential else "",
            liveness=liveness_summary,
        )
        self.state = PassState.DECISION
        start = time.perf_counter()
        try:
            decision = self.decider.request(request, (template.pack_id, template.pack_version))
        except ApplianceError as exc:  # e.g. a bare matcher link that got no answer
            log.warning("no decision: %s", exc)
            decision = messages.Decision(request.request_id, False, messages.Reason.UNAVAILABLE)
        stage_ms["decision"] = (time.perf_counter() - start) * 1000
        latency = (time.monotonic() - burst[0][0].monotonic) * 1000
        if decision.reason == messages.Reason.UNAVAILABLE:
            self.display.show(UNAVAILABLE_TEXT)  # the door stays locked; the card reader still works
            if self.decision_available is not None:
                self._available = False  # the display says it already; say when it is back
            return PassRecord(time.time(), UNAVAILABLE, decision.reason, latency_ms=latency,
                              faces_in_view=others + 1, stage_ms=stage_ms)
        self.state = PassState.ACTUATE
        if decision.accepted:
            self.actuator.open_for(self.settings.open_door_s)
            self.display.show(f"Welcome {decision.display_name}".strip())
        else:
            self.display.show("Not recognised" if decision.reason != messages.Reason.LOCKED_OUT
                              else "Too many attempts. Please use your card.")
        return PassRecord(time.time(), "accepted" if decision.accepted else "rejected", decision.reason,
                          decision.display_name, latency, others + 1, stage_ms)

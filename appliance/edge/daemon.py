"""The pass loop of one door.

idle -> face present [-> challenge] -> quality -> liveness -> template -> decision -> actuate
-> cool-down.

A pass starts when a face appears. Without an active challenge the daemon collects a short
burst and hands it to the door pass (``edge.door_pass``). With one (``liveness.level =
"active"``, ``edge.challenge_runner``; at ``"passive+stepup"`` only once the door pass found
the first burst not clearly live) every face frame feeds the challenge, its prompts go to the
display, and when the challenge is done (passed or timed out) the last ``burst_frames`` frames
go to the door pass with it: liveness is judged on the frames that performed the
challenge, and the template comes from them. The door pass checks quality, judges liveness (a
failure stops there: no template, no request, one alarm), extracts one template, asks the
decider and actuates; the daemon then ignores frames for a cool-down. A hard session limit
ends a pass that cannot complete (the person keeps failing quality). No frame or face crop is
stored or sent.

Between passes the daemon watches the decider's ``decision_available`` and says it on the
display as it changes; when the door falls back to idle (the person left, the cool-down is over)
the screen goes back to idle, or to "unavailable" while the door cannot decide. Every frame
goes to the display's preview with the face box (the kiosk keeps a few, downscaled, in memory
only). While an enrollment capture runs (``edge.enroll_capture``, asked for by
a console) every frame goes to it instead: a pass under way is abandoned, no pass starts, the
door does not open, and passes resume after a cool-down when the capture is over.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from statistics import median

from appliance.capture.sources import Frame
from appliance.edge.camera_gate import CameraGate
from appliance.edge.challenge_runner import ChallengeRunner
from appliance.edge.credential_pass import CredentialPass
from appliance.edge.door_modes import CredentialDecider, DoorMode, offers_face
from appliance.edge.door_pass import UNAVAILABLE, Burst, Decider, DoorPass, LivenessGate, PassRecord, PassState
from appliance.edge.enroll_capture import EnrollCapture
from appliance.edge.hardware import (
    READY_TEXT, UNAVAILABLE_TEXT, ConsoleDisplay, CredentialReader, Display, DoorActuator, LogActuator,
)
from appliance.edge.kiosk.screen import IDLE_TEXT, FaceBox, ScreenState, State
from appliance.errors import ApplianceError
from appliance.liveness.challenge import ActiveChallenge
from appliance.liveness.evidence import Signer
from appliance.pipeline import FaceAnalysis, FacePipeline
from appliance.protocol import messages

log = logging.getLogger(__name__)

AVAILABILITY_CHECK_S = 1.0  # how often the door looks whether it can decide, between passes
PROMPT_S = 3.0  # a card/PIN prompt or refusal stays on the screen at least this long, seconds


@dataclass(frozen=True)
class EdgeSettings:
    device_id: str
    burst_frames: int = 3  # frames judged per pass (with a challenge: its last frames)
    max_missing_frames: int = 3  # consecutive frames without a face before a pass is abandoned
    session_limit_s: float = 60.0
    cool_down_s: float = 2.0
    open_door_s: float = 3.0
    require_card: bool = False  # "card + face" (1:1) instead of face only (1:N), without a door-mode decider
    telemetry_every_s: float = 30.0


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
                 display: Display | None = None, reader: CredentialReader | None = None,
                 emit: Callable[[str, messages.Message], None] | None = None,
                 heartbeat: Callable[[], None] | None = None, signer: Signer | None = None,
                 calibration_id: str = "", challenge: ChallengeRunner | None = None,
                 capture: EnrollCapture | None = None, credentials: CredentialDecider | None = None,
                 gate: CameraGate | None = None):
        self.settings = settings
        self.pipeline = pipeline
        self.decider = decider
        self.liveness = liveness
        self.actuator = actuator or LogActuator()
        self.display = display or ConsoleDisplay()
        self.reader = reader or CredentialReader()
        self.emit = emit or (lambda kind, message: None)
        self.heartbeat = heartbeat or (lambda: None)
        self.challenge = challenge  # the active challenge, run over each attempt (level "active")
        self.capture = capture  # enrollment captures, which take the camera while they run
        self.gate = gate  # frames not from the bound camera are refused ([device] camera_binding)
        self.state = PassState.IDLE
        self.telemetry = Telemetry()
        self.passes: list[PassRecord] = []
        # the device's Ed25519 key signs the liveness evidence the matcher judges again
        # the door's mode now ([door_mode] through the credential decider; else [device] require_card)
        fixed = DoorMode.CARD_AND_FACE if settings.require_card else DoorMode.FACE
        self.mode_now: Callable[[], DoorMode] = credentials.mode_now if credentials is not None else lambda: fixed
        self.cards = CredentialPass(settings.device_id, credentials, self.mode_now, self.actuator, self.display,
                                    settings.open_door_s)
        self.door = DoorPass(settings.device_id, pipeline, decider, liveness=liveness, actuator=self.actuator,
                             display=self.display, claim=self.cards.claim, emit=self._emit, set_state=self._set_state,
                             add_timings=self.telemetry.add, signer=signer, calibration_id=calibration_id,
                             open_door_s=settings.open_door_s,
                             require_card=lambda: self.mode_now() == DoorMode.CARD_AND_FACE,
                             step_up=challenge.engage if challenge is not None else None)
        self._available: bool | None = None  # last seen decision_available (None: not looked yet)
        self._screen_idle = True  # the screen shows idle (or unavailable): nothing to take back
        self._idle_shown = ScreenState.of(State.IDLE, IDLE_TEXT)  # the idle screen on it (a new display's)
        self._prompt_until = 0.0  # a card/PIN prompt stays up until then (frame time)
        self._next_availability_check = time.monotonic() + AVAILABILITY_CHECK_S

    def _set_state(self, state: PassState) -> None:
        self.state = state

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
            screen = self.cards.idle_screen() or ScreenState.of(State.IDLE, READY_TEXT)
        else:
            log.warning("%s: no decision possible (matcher unreachable, no usable cache)", self.settings.device_id)
            screen = ScreenState.of(State.UNAVAILABLE, UNAVAILABLE_TEXT)
        self._screen_idle, self._idle_shown = True, screen
        self.display.show(screen)

    def _show_idle(self, now: float) -> None:
        """The screen between passes: the alternative at a card|pin door, "unavailable" while the
        door cannot decide, else idle; shown when a pass's guidance or result is still up, or
        the mode changed (a schedule window began or ended)."""
        if self.cards.holding or now < self._prompt_until:  # the screen asks for a PIN, a face or a card
            return
        wanted = self.cards.idle_screen() or (ScreenState.of(State.UNAVAILABLE, UNAVAILABLE_TEXT)
                                              if self._available is False else ScreenState.of(State.IDLE, IDLE_TEXT))
        shown = self._idle_shown
        if self._screen_idle and (shown == wanted or shown.state is wanted.state is State.IDLE):
            return
        self._screen_idle, self._idle_shown = True, wanted
        self.display.show(wanted)

    def _offer_credential(self, now: float) -> PassRecord | None:
        """A card or PIN the reader gave, in the door's mode: a pass record when it decided one."""
        presented = self.reader.poll()
        if presented is None:
            return None
        self._screen_idle, self._prompt_until = False, now + PROMPT_S
        decided = self.cards.offer(presented)
        if decided is None:
            return None
        decision, by = decided
        outcome = UNAVAILABLE if decision.reason == messages.Reason.UNAVAILABLE else (
            "accepted" if decision.accepted else "rejected")
        return PassRecord(time.time(), outcome, decision.reason, decision.display_name, faces_in_view=0,
                          subject=decision.subject if decision.accepted else "", decided_by=by)

    # -- the loop -------------------------------------------------------------------------
    def run(self, frames: Iterator[Frame], stop: threading.Event | None = None,
            max_passes: int | None = None) -> list[PassRecord]:
        for _ in self.run_iter(frames, stop, max_passes):
            pass
        return self.passes

    def run_iter(self, frames: Iterator[Frame], stop: threading.Event | None = None,
                 max_passes: int | None = None) -> Iterator[PassRecord]:
        """Process frames until they end, ``stop`` is set or ``max_passes`` passes are done;
        yields each pass as it completes."""
        stop = stop or threading.Event()
        next_telemetry = time.monotonic() + self.settings.telemetry_every_s
        burst: Burst = []
        session_start = 0.0
        missing = 0
        cool_until = 0.0
        capturing = False
        for frame in frames:
            self.heartbeat()
            if stop.is_set() or (max_passes is not None and len(self.passes) >= max_passes):
                break
            if self.gate is not None and not self.gate.admit(frame):  # injected: no pass, no capture
                burst, missing, self.state, self._screen_idle = [], 0, PassState.IDLE, False
                continue
            if self.capture is not None and self.capture.feed(frame):  # the capture has the camera
                if not capturing and self.challenge is not None:
                    self.challenge.abandon()
                capturing, burst, missing, self.state = True, [], 0, PassState.IDLE
                continue
            if capturing:  # the capture is over: the person who enrolled is not a pass
                capturing, cool_until = False, frame.monotonic + self.settings.cool_down_s
            self.telemetry.frames += 1
            if self.state in (PassState.IDLE, PassState.COOL_DOWN):
                self._watch_availability()
            card_pass = self._offer_credential(frame.monotonic) if frame.monotonic >= cool_until else None
            if card_pass is not None:  # a card or PIN decided a pass: whatever face pass ran is over
                if self.challenge is not None:
                    self.challenge.abandon()
                burst, missing = [], 0
                self._finish(card_pass)
                self.state, cool_until = PassState.COOL_DOWN, frame.monotonic + self.settings.cool_down_s
                yield card_pass
                continue
            if frame.monotonic >= next_telemetry:
                next_telemetry = frame.monotonic + self.settings.telemetry_every_s
                self._emit("telemetry", self.telemetry_message())
            if frame.monotonic < cool_until:
                self.state = PassState.COOL_DOWN
                self.display.preview(frame.image, None)
                continue
            if not offers_face(self.mode_now()):  # card|pin: the non-face alternative only, no camera pass
                burst, self.state = [], PassState.IDLE
                self.display.preview(frame.image, None)
                self._show_idle(frame.monotonic)
                continue
            analysis = self.pipeline.analyze(frame.image, self.pipeline.config.quality_verification)
            self.telemetry.add(analysis.timings_ms)
            self._preview(frame, analysis)
            if analysis.face is None:
                if self.state in (PassState.FACE_PRESENT, PassState.CHALLENGE):
                    missing += 1
                    if missing > self.settings.max_missing_frames:  # the person left
                        burst, self.state = [], PassState.IDLE
                        if self.challenge is not None:
                            self.challenge.abandon()
                        self._show_idle(frame.monotonic)
                else:
                    self.state = PassState.IDLE
                    self._show_idle(frame.monotonic)
                continue
            if self.state in (PassState.IDLE, PassState.COOL_DOWN):
                self.state, burst, session_start = PassState.FACE_PRESENT, [], frame.monotonic
            missing, self._screen_idle = 0, False
            burst.append((frame, analysis))
            ready = self._attempt_ready(frame, analysis, burst)
            if ready is None:
                burst = burst[-self.settings.burst_frames:]
                continue
            burst, (judged, challenge) = [], ready
            record = self.door.complete(judged, challenge)
            if record is None:  # a new attempt in the same session (guidance is on the display)
                if frame.monotonic - session_start <= self.settings.session_limit_s:
                    self.state = PassState.FACE_PRESENT
                    continue
                record = PassRecord(time.time(), "timeout", "session limit")
            self._finish(record)
            self.state, cool_until = PassState.COOL_DOWN, frame.monotonic + self.settings.cool_down_s
            yield record

    def _attempt_ready(self, frame: Frame, analysis: FaceAnalysis,
                       burst: Burst) -> tuple[Burst, ActiveChallenge | None] | None:
        """(frames to judge, finished challenge or None) when the attempt can be judged, else None."""
        if self.challenge is None or not self.challenge.engaged:  # step-up engages it when unclear
            return (list(burst), None) if len(burst) >= self.settings.burst_frames else None
        self.state = PassState.CHALLENGE
        guidance = self.challenge.observe(analysis.face, frame.monotonic)
        if guidance is not None:
            self.display.show(ScreenState.of(State.CHALLENGE, guidance))
        if not self.challenge.done:
            return None
        return burst[-self.settings.burst_frames:], self.challenge.finish()

    def _preview(self, frame: Frame, analysis: FaceAnalysis) -> None:
        face = analysis.face
        height, width = frame.image.shape[:2]
        self.display.preview(frame.image, FaceBox.of(face.box, width, height) if face is not None else None)

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
        if record.outcome == UNAVAILABLE and self.decision_available is not None:
            self._available = False  # the display says it already; say when it is back
        details = {"outcome": record.outcome, "reason": record.reason, "latency_ms": round(record.latency_ms, 1),
                   "faces_in_view": record.faces_in_view, **({"subject": record.subject} if record.subject else {}),
                   **({"decided_by": record.decided_by} if record.decided_by else {})}
        self._emit("event", messages.Event(event_id=messages.new_id(), device_id=self.settings.device_id,
                                           kind="pass", at=time.time(), details=details))

    def _emit(self, kind: str, message: messages.Message) -> None:
        try:
            self.emit(kind, message)
        except ApplianceError as exc:  # queued for later delivery by the outbox (offline issue)
            log.warning("could not send %s: %s", kind, exc)

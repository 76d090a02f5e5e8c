"""One pass at the door once its frames are in: quality -> liveness -> template -> decision -> actuate.

The same steps for every liveness level: ``off`` skips the check; ``passive`` and
``passive+motion`` judge the burst; ``active`` judges the last frames of the attempt together
with the challenge the daemon ran over them (``edge.challenge_runner``), and the template is
taken from those same frames, so the face that performed the challenge is the face matched.
``passive+stepup`` judges the first burst passively; a clear pass or a clear attack ends there
as at ``passive+motion``, a pass inside the step-up band engages the challenge runner (``step_up``)
and the attempt goes on: the frames that answered the challenge are judged as at ``active``.

A failed check stops the pass: no template is extracted (the embedder is never called), no
match request is sent, and one alarm goes out when the presentation was judged an artefact
(``presentation_attack``) or the challenge was not completed (``liveness_failed``: a replay
performs the wrong action or acts before its prompt). A presentation that could not be judged
at all (a grey face without a grey calibration) is refused without an alarm. A passed check
signs its summary (cue scores, motion and challenge results, timestamps; never images) with
the device key and sends it with the match request, for the matcher's second judgement.

When no decision can be had (``Reason.UNAVAILABLE`` from the decider, or an error from it),
the pass ends ``unavailable`` and the display says face recognition is unavailable and to use
the card - never "not recognised", which would be a claim nobody checked.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol

import numpy as np

from appliance.access.rules import ANTI_PASSBACK
from appliance.capture.sources import Frame
from appliance.edge.hardware import UNAVAILABLE_TEXT, DoorActuator, Display
from appliance.edge.kiosk.screen import WELCOME_TEXT, ScreenState, State
from appliance.errors import ApplianceError
from appliance.liveness.checker import NOT_JUDGED
from appliance.liveness.challenge import ActiveChallenge
from appliance.liveness.evidence import SignedEvidence, Signer, sign_summary
from appliance.pipeline import FaceAnalysis, FacePipeline
from appliance.protocol import messages
from appliance.vision.quality import best_frame

log = logging.getLogger(__name__)

UNAVAILABLE = "unavailable"  # the outcome of a pass nobody could decide
ALARM_ATTACK = "presentation_attack"  # a cue judged the presentation an artefact
ALARM_LIVENESS_FAILED = "liveness_failed"  # the active challenge was not completed
LIVENESS_REFUSED_TEXT = "Not recognised. Please see staff."
NOT_RECOGNISED_TEXT = "Not recognised"
LOCKED_OUT_TEXT = "Too many attempts. Please use your card."
CARD_TEXT = "Present your card"
NO_ACCESS_TEXT = "No access at this door now. Please see staff."
PASSBACK_TEXT = "Already inside: please leave through an exit first"
MATCHER, CACHE, DOOR = "matcher", "cache", "door"  # who decided a pass (PassRecord.decided_by)

Burst = list[tuple[Frame, FaceAnalysis]]


class PassState(Enum):
    IDLE = "idle"
    FACE_PRESENT = "face present"
    CHALLENGE = "challenge"
    QUALITY = "quality"
    LIVENESS = "liveness"
    TEMPLATE = "template"
    DECISION = "decision"
    ACTUATE = "actuate"
    COOL_DOWN = "cool-down"


class LivenessVerdict(Protocol):
    live: bool
    attack: bool  # an attack was detected (alarm), as opposed to "could not judge"
    reasons: tuple[str, ...]  # why it is not live (e.g. too_close: guidance, not refusal; checker.NOT_JUDGED)

    def summary(self) -> dict: ...  # cue scores, challenge results, timestamps: never images


class LivenessGate(Protocol):
    """``appliance.liveness.checker.LivenessChecker`` on the device."""

    def judge(self, frames: list[np.ndarray], faces: list,
              challenge: ActiveChallenge | None = None) -> LivenessVerdict: ...


class Decider(Protocol):
    """Where decisions come from: the matcher over MQTT (MatcherLink), or a local cache."""

    def request(self, request: messages.MatchRequest, pack: tuple[str, str]) -> messages.Decision: ...


@dataclass
class PassRecord:
    started_at: float
    outcome: str  # accepted | rejected | attack | timeout | unavailable (no decision could be had)
    reason: str = ""
    display_name: str = ""
    latency_ms: float = 0.0  # face in view -> actuator command
    faces_in_view: int = 1
    stage_ms: dict[str, float] = field(default_factory=dict)
    subject: str = ""  # the pseudonym let in (matcher or cache), never a name: for access requests
    # who decided: "matcher", "cache" (its local_decision event says how) or "door" (refused
    # here without matching: liveness, or no decision to be had); "" when nothing was decided
    decided_by: str = ""


@dataclass(frozen=True)
class LivenessResult:
    verdict: LivenessVerdict
    summary: dict  # what the device decided on: scores, reasons, challenge, timestamps
    evidence: SignedEvidence | None  # the summary signed with the device key (None: no signer)
    elapsed_ms: float

    @property
    def transport(self) -> dict:
        """The form sent in match requests and alarms."""
        return self.evidence.as_dict() if self.evidence is not None else self.summary


def judge_liveness(gate: LivenessGate, frames: list[np.ndarray], faces: list, challenge: ActiveChallenge | None = None,
                   signer: Signer | None = None, calibration_id: str = "",
                   clock: Callable[[], float] = time.time) -> LivenessResult:
    """The liveness step of a pass: the verdict and its summary, signed when there is a key."""
    start, started_at = time.perf_counter(), clock()
    verdict = gate.judge(frames, faces, challenge=challenge)
    elapsed = (time.perf_counter() - start) * 1000
    summary = {"started_at": started_at, "decided_at": clock(), "calibration": calibration_id, **verdict.summary()}
    evidence = sign_summary(summary, signer) if signer is not None else None
    return LivenessResult(verdict, summary, evidence, elapsed)


class DoorPass:
    """The steps of a pass after the frames are collected; the daemon calls :meth:`complete`."""

    def __init__(self, device_id: str, pipeline: FacePipeline, decider: Decider, *, liveness: LivenessGate | None,
                 actuator: DoorActuator, display: Display, claim: Callable[[], str],
                 emit: Callable[[str, messages.Message], None], set_state: Callable[[PassState], None],
                 add_timings: Callable[[dict[str, float]], None], signer: Signer | None = None,
                 calibration_id: str = "", open_door_s: float = 3.0,
                 require_card: Callable[[], bool] = lambda: False, step_up: Callable[[], None] | None = None):
        self.device_id = device_id
        self.pipeline, self.decider, self.liveness = pipeline, decider, liveness
        self.actuator, self.display, self.claim = actuator, display, claim
        self.emit, self.set_state, self.add_timings = emit, set_state, add_timings
        self.signer, self.calibration_id = signer, calibration_id
        self.open_door_s, self.require_card = open_door_s, require_card
        self.step_up = step_up  # engages the challenge runner (passive+stepup); None: no runner

    def complete(self, burst: Burst, challenge: ActiveChallenge | None = None) -> PassRecord | None:
        """Quality -> liveness -> template -> decision -> actuate; None = keep collecting (a
        new attempt: the daemon draws a new challenge; or, at step-up, the challenge now runs)."""
        self.set_state(PassState.QUALITY)
        analyses = [analysis for _, analysis in burst]
        best = best_frame([a.quality for a in analyses])
        chosen = analyses[best]
        failed_challenge = challenge is not None and not challenge.passed
        if not chosen.quality.passed and not failed_challenge:  # a failed challenge is judged as it is
            self.display.show(ScreenState.of(State.GUIDANCE, chosen.quality.issues[0].guidance))
            return None
        others = len(chosen.detection.others)
        if others:
            self._event("tailgating", {"faces_in_view": others + 1})
        stage_ms: dict[str, float] = {}
        if challenge is not None:  # from the attempt's first face frame to the last frame judged
            stage_ms["challenge"] = (burst[-1][0].monotonic - challenge.started_at) * 1000
        evidence: dict = {}
        if self.liveness is not None:
            self.set_state(PassState.LIVENESS)
            result = judge_liveness(self.liveness, [frame.image for frame, _ in burst], [a.face for a in analyses],
                                    challenge, self.signer, self.calibration_id)
            stage_ms["liveness"] = result.elapsed_ms
            evidence = result.transport
            if not result.verdict.live:
                if getattr(result.verdict, "step_up", False) and challenge is None and self.step_up is not None:
                    self.add_timings({"step_up_check": result.elapsed_ms})
                    self.step_up()  # not clearly live: the next frames answer a challenge
                    return None
                return self._refuse(result, challenge, burst, others + 1, stage_ms)
        elif failed_challenge:  # a challenge with nothing to judge it: never let it pass
            self.display.show(ScreenState.of(State.REFUSED, LIVENESS_REFUSED_TEXT))
            return PassRecord(time.time(), "rejected", messages.Reason.LIVENESS_FAILED,
                              latency_ms=_since(burst), faces_in_view=others + 1, stage_ms=stage_ms, decided_by=DOOR)
        self.set_state(PassState.TEMPLATE)
        extraction = self.pipeline.extract([chosen], self.pipeline.config.quality_verification)[0]
        stage_ms["embedding"] = extraction.analysis.timings_ms.get("embedding", 0.0)
        self.add_timings(dict(stage_ms))
        if not extraction.analysis.quality.passed:
            self.display.show(ScreenState.of(State.GUIDANCE, extraction.analysis.quality.issues[0].guidance))
            return None
        card = self.claim()  # the card held for this pass (card + face), else 1:N
        if self.require_card() and not card:
            self.display.show(ScreenState.of(State.GUIDANCE, CARD_TEXT))
            return None
        template = extraction.template
        request = messages.MatchRequest(
            request_id=messages.new_id(), device_id=self.device_id, mode="verify" if card else "identify",
            template_b64=messages.MatchRequest.pack_vector(template.vector), captured_at=burst[best][0].timestamp,
            claim=card, liveness=evidence,
        )
        return self._decide(request, (template.pack_id, template.pack_version), burst, others + 1, stage_ms)

    def _refuse(self, result: LivenessResult, challenge: ActiveChallenge | None, burst: Burst, faces: int,
                stage_ms: dict[str, float]) -> PassRecord:
        """Liveness failed: no template, no match request; one alarm for the attempt (the screen
        says staff are alerted), or none when nothing could be judged (a plain refusal)."""
        attack = result.verdict.attack
        if attack:
            kind = ALARM_ATTACK
        elif challenge is not None and not challenge.passed:
            kind = ALARM_LIVENESS_FAILED
        else:
            kind = None  # nothing judged (a grey face without grey calibration): the pass event says why
        guidance = next((NOT_JUDGED[r] for r in result.verdict.reasons if r in NOT_JUDGED), None)
        if kind is None and guidance is not None:  # not judged, and the person can fix it: step back, more light
            self.display.show(ScreenState.of(State.GUIDANCE, guidance))
        else:
            self.display.show(ScreenState.of(State.REFUSED if kind is None else State.ALARM, LIVENESS_REFUSED_TEXT))
        if kind is not None:
            self.emit("alarm", messages.Alarm(alarm_id=messages.new_id(), device_id=self.device_id, kind=kind,
                                              at=time.time(), details=result.transport))
        return PassRecord(time.time(), "attack" if attack else "rejected", messages.Reason.LIVENESS_FAILED,
                          latency_ms=_since(burst), faces_in_view=faces, stage_ms=stage_ms, decided_by=DOOR)

    def _decide(self, request: messages.MatchRequest, pack: tuple[str, str], burst: Burst, faces: int,
                stage_ms: dict[str, float]) -> PassRecord:
        self.set_state(PassState.DECISION)
        start = time.perf_counter()
        try:
            decision = self.decider.request(request, pack)
        except ApplianceError as exc:  # e.g. a bare matcher link that got no answer
            log.warning("no decision: %s", exc)
            decision = messages.Decision(request_id=request.request_id, accepted=False,
                                         reason=messages.Reason.UNAVAILABLE)
        stage_ms["decision"] = (time.perf_counter() - start) * 1000
        latency = _since(burst)
        if decision.reason == messages.Reason.UNAVAILABLE:
            # the door stays locked; the card reader still works
            self.display.show(ScreenState.of(State.UNAVAILABLE, UNAVAILABLE_TEXT))
            return PassRecord(time.time(), UNAVAILABLE, decision.reason, latency_ms=latency, faces_in_view=faces,
                              stage_ms=stage_ms, decided_by=DOOR)
        self.set_state(PassState.ACTUATE)
        if decision.accepted:
            self.actuator.open_for(self.open_door_s)
            self.display.show(ScreenState.of(State.ACCEPTED, WELCOME_TEXT, name=decision.display_name))
        else:
            self.display.show(ScreenState.of(State.REFUSED, refusal_text(decision.reason)))
        self.actuator.decided(decision.accepted, request.claim)
        by = CACHE if getattr(self.decider, "last_source", "") == "local" else MATCHER
        subject = decision.subject if decision.accepted else ""
        return PassRecord(time.time(), "accepted" if decision.accepted else "rejected", decision.reason,
                          decision.display_name, latency, faces, stage_ms, subject, by)

    def _event(self, kind: str, details: dict) -> None:
        self.emit("event", messages.Event(event_id=messages.new_id(), device_id=self.device_id, kind=kind,
                                          at=time.time(), details=details))


def refusal_text(reason: str) -> str:
    """What a refused person reads for a decision's reason (a msgid of the door catalog). A
    refusal by the access rules says so (the person was recognised, this door is not theirs now),
    never "not recognised", which would send them to try again."""
    if reason == messages.Reason.LOCKED_OUT:
        return LOCKED_OUT_TEXT
    if reason == ANTI_PASSBACK:
        return PASSBACK_TEXT
    if reason in messages.Reason.ACCESS:
        return NO_ACCESS_TEXT
    return NOT_RECOGNISED_TEXT


def _since(burst: Burst) -> float:
    """Milliseconds since the first frame of the burst (face in view)."""
    return (time.monotonic() - burst[0][0].monotonic) * 1000

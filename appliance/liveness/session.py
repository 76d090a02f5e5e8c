"""A door session with liveness first: no template, no match request unless the face is live.

The order is the specification's: analyse the burst (detection, alignment, quality: no
embedding), judge liveness, and only then extract the template and ask the matcher. A
failed check cancels the session and raises exactly one alarm event; a passed one sends the
signed evidence with the match request so the server can judge liveness a second time.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from appliance.liveness.challenge import ActiveChallenge
from appliance.liveness.checker import LivenessChecker, LivenessDecision
from appliance.liveness.events import ATTACK, FAILED, AlarmEvent, AlarmSink
from appliance.liveness.evidence import SignedEvidence, Signer, sign_summary
from appliance.pipeline import FacePipeline
from appliance.vision.templates import Template

MatchRequest = Callable[[Template, SignedEvidence], Any]


@dataclass(frozen=True)
class SessionOutcome:
    session_id: str
    decision: LivenessDecision
    evidence: SignedEvidence
    template: Template | None
    match: Any
    alarm: AlarmEvent | None

    @property
    def cancelled(self) -> bool:
        return self.template is None


def run_session(pipeline: FacePipeline, checker: LivenessChecker, frames: list[np.ndarray], signer: Signer,
                alarms: AlarmSink, match_request: MatchRequest, times: list[float] | None = None,
                challenge: ActiveChallenge | None = None, device_time: Callable[[], float] | None = None) -> SessionOutcome:
    """Run one presentation (a burst of BGR frames) through liveness, then template and match.

    ``times`` (monotonic seconds per frame) drive the active challenge when one is given.
    """
    import time

    clock = device_time or time.time
    session_id = uuid.uuid4().hex
    started = clock()
    analyses = [pipeline.analyze(frame) for frame in frames]
    faces = [a.face for a in analyses]
    if challenge is not None:
        for face, now in zip(faces, times or []):
            challenge.observe(face, now)
    decision = checker.judge(frames, faces, challenge=challenge)
    summary = {"session_id": session_id, "started_at": started, "decided_at": clock(),
               "calibration": checker.calibration_id, **decision.summary()}
    evidence = sign_summary(summary, signer)
    if not decision.live:
        alarm = AlarmEvent(ATTACK if decision.attack else FAILED, session_id, decision.level, decision.reasons,
                           evidence.summary, clock())
        alarms(alarm)
        return SessionOutcome(session_id, decision, evidence, None, None, alarm)
    usable = [a for a in analyses if a.aligned is not None]
    best = max(usable, key=lambda a: a.quality.score)
    template = pipeline.extract([best])[0].template
    return SessionOutcome(session_id, decision, evidence, template, match_request(template, evidence), None)

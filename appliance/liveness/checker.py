"""One liveness decision per session from the frames of a short burst.

The checker owns the liveness model (loaded on first use) and the calibration file, and
applies the site policy level:

* ``passive``         learned model + image cues, fused; median live score over the burst;
* ``passive+motion``  + the flat-plane test and micro-motion over the burst;
* ``passive+stepup``  passive+motion, and a presentation that passes but is not clearly live
                      (``liveness.step_up``) must also pass a random challenge;
* ``active``          + a random challenge (blink / turn / look / smile) that must pass.

Every per-cue score stays in the decision on the device; ``summary()`` is the compact form
that is signed for the server and copied into alarm events.
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from appliance import paths
from appliance.config import LivenessConfig
from appliance.liveness import framing, grey_path, image_cues, motion, step_up
from appliance.liveness.challenge import ActiveChallenge
from appliance.liveness.fusion import Calibration, cue_values
from appliance.liveness.minifasnet import MiniFASNet
from appliance.packs import PackRegistry
from appliance.vision.types import Face

MODEL_FRAMES = 2  # frames of a burst scored by the model (plus the middle one)
REASON_NO_FACE = "no_face"
REASON_PASSIVE = "passive_score_below_threshold"
REASON_MODEL = "model_veto"
REASON_GREY = "greyscale_uncalibrated"
REASON_FLAT = "flat_plane_motion"
REASON_CHALLENGE = "challenge_not_completed"
# presentations not judged (nothing accepted, no alarm) and what the door asks the person to do
NOT_JUDGED = {framing.REASON_TOO_CLOSE: framing.TOO_CLOSE_GUIDANCE, **grey_path.GUIDANCE}


@dataclass(frozen=True)
class FrameCues:
    values: dict[str, float]  # every passive cue by name
    timings_ms: dict[str, float]


@dataclass(frozen=True)
class LivenessDecision:
    live: bool
    attack: bool  # a cue judged it an artefact (vs. no decision reached)
    level: str
    score: float  # fused live score (median over the burst); nan when not measured
    threshold: float
    reasons: tuple[str, ...]
    cues: dict[str, float] = field(default_factory=dict)  # median per cue over the burst
    motion: motion.MotionEvidence | None = None
    challenge: dict | None = None
    frames: int = 0
    timings_ms: dict[str, float] = field(default_factory=dict)
    mode: str = "colour"  # which fusion judged it: "colour" or "grey"
    # passive+stepup: passed the threshold but not clearly live, and no challenge was run yet:
    # the door asks one and judges again on the frames that answered
    step_up: bool = False
    step_up_margin: float | None = None  # the band applied (passive+stepup only), for the server

    def summary(self) -> dict:
        return {
            "live": self.live,
            "mode": self.mode,
            "attack": self.attack,
            "level": self.level,
            "score": self.score,
            "threshold": self.threshold,
            "reasons": list(self.reasons),
            # scores only: the texture histogram bins are descriptors for the fusion
            "cues": {k: v for k, v in self.cues.items() if not k.startswith("texture_")},
            "motion": None if self.motion is None else self.motion.as_dict(),
            "challenge": self.challenge,
            "frames": self.frames,
            **({} if self.step_up_margin is None else {"step_up_margin": self.step_up_margin,
                                                       "step_up": self.step_up}),
        }


def calibration_path(config: LivenessConfig) -> Path:
    path = Path(config.calibration)
    return path if path.is_absolute() else paths.resource(path)


class LivenessChecker:
    def __init__(self, config: LivenessConfig, registry: PackRegistry, threads: int = 1,
                 calibration: Calibration | None = None):
        self.config = config
        self.registry = registry
        self.threads = threads
        self._model: MiniFASNet | None = None
        self._calibration = calibration

    @property
    def model(self) -> MiniFASNet:
        if self._model is None:
            pack = self.registry.get(self.config.pack)
            self._model = MiniFASNet(pack, self.registry.model_file(pack), self.threads)
        return self._model

    @property
    def calibration(self) -> Calibration:
        if self._calibration is None:
            self._calibration = Calibration.load(calibration_path(self.config))
        return self._calibration

    @property
    def calibration_id(self) -> str:
        grey = self.calibration.grey
        text = repr((self.calibration.weights, self.calibration.threshold,
                     None if grey is None else (grey.weights, grey.threshold))).encode()
        return hashlib.sha256(text).hexdigest()[:12]

    def frame_cues(self, bgr: np.ndarray, face: Face) -> FrameCues:
        """Every passive cue of one frame (the fusion is applied by ``judge``)."""
        model = self.model_cues(bgr, face)
        start = time.perf_counter()
        cues = image_cues.measure(bgr, face.box)
        elapsed = (time.perf_counter() - start) * 1000
        values = {**model.values, **cues.as_dict()}
        return FrameCues(values, {**model.timings_ms, "image_cues": elapsed})

    def model_cues(self, bgr: np.ndarray, face: Face) -> FrameCues:
        start = time.perf_counter()
        values = cue_values(self.model.score(bgr, face.box), None)
        return FrameCues(values, {"liveness_model": (time.perf_counter() - start) * 1000})

    def judge(self, frames: list[np.ndarray], faces: list[Face | None], level: str | None = None,
              challenge: ActiveChallenge | None = None) -> LivenessDecision:
        """The decision for one presentation; ``faces[i]`` is the subject of ``frames[i]``."""
        level = level or self.config.level
        threshold = self.calibration.threshold
        if level == "off":
            return LivenessDecision(True, False, level, float("nan"), threshold, ("policy_off",))
        present = [(frame, face) for frame, face in zip(frames, faces) if face is not None]
        if not present:
            return LivenessDecision(False, False, level, float("nan"), threshold, (REASON_NO_FACE,), frames=len(frames))
        middle = len(present) // 2
        middle_frame, middle_face = present[middle]
        calibration, mode = self.calibration, "colour"
        grey_cues: dict[str, float] = {}
        grey = image_cues.is_greyscale(middle_frame, middle_face.box)
        if not grey and framing.too_close(middle_frame.shape, middle_face.box):  # grey: grey_path.refusal, below
            return LivenessDecision(False, False, level, float("nan"), threshold, (framing.REASON_TOO_CLOSE,),
                                    frames=len(frames), mode=mode)
        if grey:
            mode = "grey"
            if calibration.grey is None:
                return LivenessDecision(False, False, level, float("nan"), threshold, (REASON_GREY,),
                                        frames=len(frames), mode=mode)
            calibration = calibration.grey
            grey_cues = grey_path.measure(middle_frame, middle_face.box)
            refused = grey_path.refusal(grey_cues)
            if refused is not None:  # not judged (no alarm): the door asks to step back / for more light
                return LivenessDecision(False, False, level, float("nan"), calibration.threshold, (refused,),
                                        grey_cues, frames=len(frames), mode=mode)
        threshold = calibration.threshold
        # The image cues are properties of the artefact: once, on the middle frame. The model
        # runs on MODEL_FRAMES frames spread over the burst (median), which bounds the cost
        # per frame while still not trusting a single frame.
        picks = sorted({middle, *np.linspace(0, len(present) - 1, MODEL_FRAMES).round().astype(int).tolist()})
        per_frame = [self.model_cues(*present[i]) for i in picks]
        cues = {name: float(np.median([c.values[name] for c in per_frame])) for name in per_frame[0].values}
        start = time.perf_counter()
        cues.update(image_cues.measure(middle_frame, middle_face.box).as_dict())
        cues.update(grey_cues)  # the grey path's own cues (empty in colour)
        timings = {"liveness_model": float(np.mean([c.timings_ms["liveness_model"] for c in per_frame])),
                   "image_cues": (time.perf_counter() - start) * 1000}
        score = calibration.live_score(cues)
        reasons: list[str] = []
        attack = score < threshold
        if attack:
            reasons.append(REASON_PASSIVE)
        if calibration.vetoed(cues):
            attack = True
            reasons.append(REASON_MODEL)
        evidence = None
        if level in ("passive+motion", step_up.LEVEL, "active") and len(present) >= 2:
            start = time.perf_counter()
            evidence = motion.analyse([f for f, _ in present], [face for _, face in present])
            timings["motion"] = (time.perf_counter() - start) * 1000
            if evidence.verdict == "flat":
                attack = True
                reasons.append(REASON_FLAT)
        challenge_summary = None
        live = not attack
        asked, margin = level == "active", None
        if level == step_up.LEVEL:
            margin = self.config.step_up_margin
            asked = challenge is not None or (live and not step_up.clearly_live(score, threshold, margin))
        if asked:
            if challenge is None or not challenge.passed:
                live = False
                reasons.append(REASON_CHALLENGE if challenge is not None or level == "active"
                               else step_up.REASON_STEP_UP)
            challenge_summary = None if challenge is None else challenge.summary()
        return LivenessDecision(live, attack, level, score, threshold, tuple(reasons), cues, evidence,
                                challenge_summary, len(frames), timings, mode,
                                step_up=asked and challenge is None and level == step_up.LEVEL,
                                step_up_margin=margin)

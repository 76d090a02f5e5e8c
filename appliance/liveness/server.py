"""The server's second liveness judgement, from the device's signed evidence alone.

The server never sees the images. It checks that the evidence is signed by the device, is
fresh, meets the site's policy level, and is self-consistent: the live verdict must follow
from the scores and thresholds it carries, a flat-plane burst or a model veto can never be
live, and an active challenge must have been answered in human time (a reaction faster
than ``min_reaction_s`` after a prompt is a replay or a script, not a person). At level
``passive+stepup`` a pass without a challenge is accepted only when its score was clearly above
the threshold (``liveness.step_up``: the band it carries, never narrower than the policy's), and
one inside the band only with the challenge's steps, order and timing.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from appliance.config import LIVENESS_LEVELS
from appliance.errors import ApplianceError
from appliance.liveness.evidence import SignedEvidence, verify
from appliance.liveness.step_up import LEVEL as STEP_UP, clearly_live

MIN_REACTION_S = 0.15  # fastest human response to a visual prompt, with margin


@dataclass(frozen=True)
class ServerPolicy:
    min_level: str = "passive+motion"
    max_age_s: float = 30.0
    min_reaction_s: float = MIN_REACTION_S
    known_calibrations: tuple[str, ...] = ()  # empty: any calibration id is accepted
    min_step_up_margin: float = 0.0  # passive+stepup: the narrowest band believed (log-odds)


@dataclass(frozen=True)
class ServerJudgement:
    accepted: bool
    reasons: tuple[str, ...]
    summary: dict | None


def _rank(level: str) -> int:
    return LIVENESS_LEVELS.index(level) if level in LIVENESS_LEVELS else -1


def _challenge_reasons(challenge: dict | None, policy: ServerPolicy) -> list[str]:
    if not challenge or not challenge.get("passed"):
        return ["challenge_not_passed"]
    reasons = []
    steps = challenge.get("steps", [])
    if [s.get("action") for s in steps] != challenge.get("order") or not steps:
        reasons.append("challenge_steps_inconsistent")
    previous = None  # the last step's completion: the next prompt comes after it
    for step in steps:
        done, prompted = step.get("completed_at"), step.get("prompted_at")
        if step.get("outcome") != "passed" or done is None or prompted is None:
            reasons.append("challenge_step_not_passed")
            continue
        if done - prompted < policy.min_reaction_s:
            reasons.append("challenge_answered_too_fast")
        if previous is not None and prompted < previous:
            reasons.append("challenge_steps_out_of_time")
        previous = done
    return reasons


def _step_up_reasons(summary: dict, policy: ServerPolicy) -> list[str]:
    """A step-up pass: with a challenge, the challenge's evidence; without, a clear score."""
    if summary.get("challenge") is not None:
        return _challenge_reasons(summary["challenge"], policy)
    band = summary.get("step_up_margin")
    if not isinstance(band, (int, float)) or summary.get("step_up"):
        return ["step_up_evidence_missing"]
    score, threshold = summary.get("score"), summary.get("threshold")
    if not clearly_live(float(score), float(threshold), max(float(band), policy.min_step_up_margin)):
        return ["step_up_challenge_missing"]
    return []


def judge_evidence(evidence: SignedEvidence, public_key: bytes, policy: ServerPolicy, now: float,
                   origin_authenticated: bool = False) -> ServerJudgement:
    """Accept only signed, fresh, policy-conformant and self-consistent live evidence.

    ``origin_authenticated``: the evidence came inside an envelope the same device's node key
    authenticated (the matcher's requests), the key that signs evidence too, so the signature
    check would prove nothing more and is skipped (issue 17: 104 µs a request); the signature
    stays in the evidence for whoever keeps it. Every other check is the same."""
    if origin_authenticated:
        try:
            summary = evidence.summary
        except ValueError:
            summary = None
        if not isinstance(summary, dict):
            return ServerJudgement(False, ("evidence_malformed",), None)
    else:
        try:
            summary = verify(evidence, public_key)
        except ApplianceError:
            return ServerJudgement(False, ("signature_invalid",), None)
    reasons: list[str] = []
    if not summary.get("live"):
        reasons.append("device_judged_not_live")
    if _rank(summary.get("level", "")) < _rank(policy.min_level):
        reasons.append("level_below_policy")
    decided = summary.get("decided_at")
    if decided is None or not (0 <= now - decided <= policy.max_age_s):
        reasons.append("evidence_stale_or_from_the_future")
    if policy.known_calibrations and summary.get("calibration") not in policy.known_calibrations:
        reasons.append("calibration_unknown")
    score, threshold = summary.get("score"), summary.get("threshold")
    if score is None or threshold is None or not math.isfinite(score) or score < threshold:
        reasons.append("score_below_threshold")
    if set(summary.get("reasons", [])) - {"policy_off"}:
        reasons.append("device_reported_failures")
    motion = summary.get("motion")
    if summary.get("level") in ("passive+motion", STEP_UP, "active") and motion and motion.get("verdict") == "flat":
        reasons.append("flat_plane_motion")
    if summary.get("level") == "active":
        reasons += _challenge_reasons(summary.get("challenge"), policy)
    elif summary.get("level") == STEP_UP and "score_below_threshold" not in reasons:
        reasons += _step_up_reasons(summary, policy)
    return ServerJudgement(not reasons, tuple(reasons), summary)

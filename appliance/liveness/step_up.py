"""Step-up (``liveness.level = "passive+stepup"``): when is passive evidence clear enough?

The passive (+motion) judgement decides alone when the live score is clearly above the
threshold; a presentation that passes but sits in the band just above it is not clearly live
and is asked a random challenge (``liveness.challenge``) before it may pass. The band is
measured in log-odds of the live score (``logit(score) - logit(threshold)``), so that one
setting means the same for the colour and the grey fusion, whose thresholds differ. The same
rule is applied by the door (``checker``) and by the server's second judgement (``server``).
"""
from __future__ import annotations

import math

LEVEL = "passive+stepup"
REASON_STEP_UP = "step_up_required"  # passed the threshold, but inside the band: challenge first
SCORE_CLIP = 1e-6  # keeps the log-odds finite for scores of exactly 0 or 1


def _logit(p: float) -> float:
    p = min(max(p, SCORE_CLIP), 1.0 - SCORE_CLIP)
    return math.log(p / (1.0 - p))


def live_margin(score: float, threshold: float) -> float:
    """How far above the threshold the live score is, in log-odds (negative: below it)."""
    if not (math.isfinite(score) and math.isfinite(threshold)):
        return float("-inf")
    return _logit(score) - _logit(threshold)


def clearly_live(score: float, threshold: float, margin: float) -> bool:
    """The passive evidence decides alone: the score is at least ``margin`` log-odds above the threshold."""
    return live_margin(score, threshold) >= margin

"""The matcher's second liveness judgement, made on the device's evidence summary.

The summary travels inside the device-signed envelope, so it is the device's word; the
matcher checks that word against the site policy independently of the device's own verdict:
the required level was applied, the fused score clears the threshold the device claims, and
the evidence covers at least one frame. A device that skipped or weakened liveness (by
configuration or tampering) is refused here.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

LEVELS = ("off", "passive", "passive+motion", "active")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def second_liveness_judgement(required_level: str) -> Callable[[str, dict], bool]:
    if required_level not in LEVELS:
        raise ValueError(f"liveness level {required_level!r} is not one of {LEVELS}")
    needed = LEVELS.index(required_level)

    def judge(device: str, evidence: dict) -> bool:
        if needed == 0:
            return True
        if not isinstance(evidence, dict) or evidence.get("live") is not True or evidence.get("attack"):
            return False
        level = evidence.get("level")
        if level not in LEVELS or LEVELS.index(level) < needed:
            return False
        score, threshold = _number(evidence.get("score")), _number(evidence.get("threshold"))
        frames = evidence.get("frames")
        if score is None or threshold is None or score < threshold:
            return False
        return isinstance(frames, int) and frames >= 1

    return judge

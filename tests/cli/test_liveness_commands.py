"""``appliance liveness check`` as a person at the console reads it: the verdict of each item,
and for a face the checker does not judge, why and what the door would ask the person to do."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from types import SimpleNamespace

import cv2
from framekit import close_up

from appliance.cli.liveness_commands import NEGATIVE, verdict_line
from appliance.liveness import framing


def test_verdict_lines_show_a_score_only_where_one_was_computed():
    def decision(live, attack, score, *reasons):
        return SimpleNamespace(live=live, attack=attack, score=score, threshold=0.45, reasons=reasons)

    assert verdict_line(decision(True, False, 0.9)) == "live score 0.900 threshold 0.450"
    assert verdict_line(decision(False, True, 0.1, "model_veto")) == "ATTACK score 0.100 threshold 0.450 (model_veto)"
    assert verdict_line(decision(False, False, 0.5, "step_up_required")).startswith("refused score 0.500")
    assert verdict_line(decision(True, False, math.nan, "policy_off")) == "live (policy_off)"
    assert verdict_line(decision(False, False, math.nan, framing.REASON_TOO_CLOSE)) == \
        f"not judged (too_close: {framing.TOO_CLOSE_GUIDANCE})"


def test_check_prints_live_for_the_sample_and_step_back_for_its_close_up(pipeline, shared, tmp_path):
    sample = shared / "data" / "spoof" / "samples" / "image_T1.jpg"
    frame = cv2.imread(str(sample))
    near = tmp_path / "near.jpg"
    cv2.imwrite(str(near), close_up(frame, pipeline.detect(frame).subject.box))
    result = subprocess.run([sys.executable, "-m", "appliance", "liveness", "check", str(sample), str(near)],
                            capture_output=True, text=True, env=dict(os.environ), timeout=300)
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert result.returncode == NEGATIVE, result.stderr  # not every item is live
    assert lines[str(sample)].startswith("live score")
    assert lines[str(near)] == f"not judged (too_close: {framing.TOO_CLOSE_GUIDANCE})"

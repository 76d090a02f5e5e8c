"""The step-up band (log-odds above the threshold) and the server's judgement of step-up evidence:
a pass without a challenge only above the band, one inside it only with the challenge's steps,
order and timing."""
from __future__ import annotations

import math

import pytest

from appliance.liveness.evidence import Ed25519Signer, sign_summary
from appliance.liveness.server import ServerPolicy, judge_evidence
from appliance.liveness.step_up import LEVEL, clearly_live, live_margin

NOW = 1001.0
BAND = 2.0


@pytest.fixture(scope="module")
def signer():
    return Ed25519Signer.generate("door-u")


def test_the_margin_is_in_log_odds_and_the_same_for_any_threshold():
    assert live_margin(0.5, 0.5) == 0.0
    assert live_margin(0.9, 0.5) == pytest.approx(math.log(9))
    assert live_margin(0.4, 0.5) < 0 and live_margin(float("nan"), 0.5) == float("-inf")
    # the same odds ratio above a colour (0.6) or a grey (0.7) threshold is the same margin
    odds = math.exp(BAND)
    for threshold in (0.6, 0.7):
        score = 1 / (1 + (1 - threshold) / threshold / odds)
        assert live_margin(score, threshold) == pytest.approx(BAND)
        assert clearly_live(score + 1e-6, threshold, BAND) and not clearly_live(score - 1e-3, threshold, BAND)


def evidence(signer, score: float, challenge: dict | None = None, **extra):
    summary = {"live": True, "level": LEVEL, "decided_at": NOW - 1, "score": score, "threshold": 0.6,
               "reasons": [], "motion": None, "challenge": challenge, "step_up_margin": BAND, "step_up": False,
               **extra}
    return sign_summary(summary, signer)


def judge(signer, evidence_, policy: ServerPolicy | None = None):
    return judge_evidence(evidence_, signer.public_key_bytes(), policy or ServerPolicy(min_level=LEVEL), NOW)


def steps(*timings: tuple[str, float, float]) -> dict:
    done = [{"action": a, "prompted_at": p, "completed_at": c, "outcome": "passed"} for a, p, c in timings]
    return {"steps": done, "order": [a for a, _, _ in timings], "passed": True}


def test_without_a_challenge_only_a_score_above_the_band_passes(signer):
    clear, unclear = 0.99, 0.8  # margins 4.2 and 0.98 above 0.6
    assert judge(signer, evidence(signer, clear)).accepted
    assert judge(signer, evidence(signer, unclear)).reasons == ("step_up_challenge_missing",)
    # the server's own band wins when it is wider than the device's
    assert not judge(signer, evidence(signer, clear), ServerPolicy(min_level=LEVEL, min_step_up_margin=5.0)).accepted
    # a step-up summary without its band (or still waiting for a challenge) is not step-up evidence
    assert judge(signer, evidence(signer, clear, step_up_margin=None)).reasons == ("step_up_evidence_missing",)


def test_inside_the_band_the_challenge_evidence_decides(signer):
    answered = steps(("blink", 10.0, 10.8), ("smile", 11.5, 12.3))
    assert judge(signer, evidence(signer, 0.8, answered)).accepted
    wrong_order = {**answered, "order": ["smile", "blink"]}
    assert "challenge_steps_inconsistent" in judge(signer, evidence(signer, 0.8, wrong_order)).reasons
    overlapping = steps(("blink", 10.0, 10.8), ("smile", 10.5, 11.3))  # prompted before the blink was done
    assert judge(signer, evidence(signer, 0.8, overlapping)).reasons == ("challenge_steps_out_of_time",)
    scripted = steps(("blink", 10.0, 10.05))
    assert judge(signer, evidence(signer, 0.8, scripted)).reasons == ("challenge_answered_too_fast",)
    failed = {**answered, "passed": False}
    assert judge(signer, evidence(signer, 0.8, failed)).reasons == ("challenge_not_passed",)


def test_step_up_sits_between_passive_motion_and_active(signer):
    clear = evidence(signer, 0.99)
    assert judge(signer, clear, ServerPolicy(min_level="passive+motion")).accepted
    assert "level_below_policy" in judge(signer, clear, ServerPolicy(min_level="active")).reasons

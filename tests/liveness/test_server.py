"""The server's second judgement from signed evidence (no images)."""
from __future__ import annotations


import pytest

from appliance.edge.door_pass import judge_liveness
from appliance.liveness.evidence import Ed25519Signer, sign_summary
from appliance.liveness.server import ServerPolicy, judge_evidence


@pytest.fixture(scope="module")
def signer():
    return Ed25519Signer.generate("door-2")


def door_evidence(pipeline, checker, image, signer):
    """The evidence the door's pass signs for a burst of ``image``, decided at device time 1000."""
    frames = [image] * 3
    result = judge_liveness(checker, frames, [pipeline.analyze(frame).face for frame in frames], signer=signer,
                            calibration_id=checker.calibration_id, clock=lambda: 1000.0)
    return result.verdict, result.evidence


@pytest.fixture(scope="module")
def live_evidence(pipeline, checker, spoof_samples, signer):
    verdict, evidence = door_evidence(pipeline, checker, spoof_samples["image_T1"], signer)
    assert verdict.live
    return evidence


def test_live_evidence_is_accepted(live_evidence, signer, checker):
    policy = ServerPolicy(known_calibrations=(checker.calibration_id,))
    judgement = judge_evidence(live_evidence, signer.public_key_bytes(), policy, now=1005.0)
    assert judgement.accepted, judgement.reasons


@pytest.mark.parametrize("policy, now, reason", [
    (ServerPolicy(), 1100.0, "evidence_stale_or_from_the_future"),
    (ServerPolicy(), 990.0, "evidence_stale_or_from_the_future"),
    (ServerPolicy(min_level="active"), 1001.0, "level_below_policy"),
    (ServerPolicy(known_calibrations=("someone-else",)), 1001.0, "calibration_unknown"),
])
def test_policy_rejections(live_evidence, signer, policy, now, reason):
    judgement = judge_evidence(live_evidence, signer.public_key_bytes(), policy, now)
    assert not judgement.accepted and reason in judgement.reasons


def test_wrong_key_and_attack_evidence_are_rejected(pipeline, checker, spoof_samples, live_evidence, signer):
    other = Ed25519Signer.generate().public_key_bytes()
    assert judge_evidence(live_evidence, other, ServerPolicy(), 1001.0).reasons == ("signature_invalid",)
    _, evidence = door_evidence(pipeline, checker, spoof_samples["image_F2"], signer)
    judgement = judge_evidence(evidence, signer.public_key_bytes(), ServerPolicy(), 1001.0)
    assert not judgement.accepted and "device_judged_not_live" in judgement.reasons


def test_inconsistent_live_claim_is_rejected(live_evidence, signer):
    """A device (or its key) that claims live against its own scores is not believed."""
    summary = dict(live_evidence.summary)
    summary.pop("version")
    forged = sign_summary({**summary, "score": summary["threshold"] - 0.2,
                           "motion": {**summary["motion"], "verdict": "flat"}}, signer)
    judgement = judge_evidence(forged, signer.public_key_bytes(), ServerPolicy(), 1001.0)
    assert {"score_below_threshold", "flat_plane_motion"} <= set(judgement.reasons)


def test_challenge_answered_in_machine_time_is_rejected(live_evidence, signer):
    summary = dict(live_evidence.summary)
    summary.pop("version")
    steps = [{"action": "blink", "prompted_at": 10.0, "completed_at": 10.05, "outcome": "passed"}]
    fast = sign_summary({**summary, "level": "active",
                         "challenge": {"steps": steps, "order": ["blink"], "passed": True}}, signer)
    judgement = judge_evidence(fast, signer.public_key_bytes(), ServerPolicy(min_level="active"), 1001.0)
    assert judgement.reasons == ("challenge_answered_too_fast",)
    human = [{**steps[0], "completed_at": 10.9}]
    ok = sign_summary({**summary, "level": "active",
                       "challenge": {"steps": human, "order": ["blink"], "passed": True}}, signer)
    assert judge_evidence(ok, signer.public_key_bytes(), ServerPolicy(min_level="active"), 1001.0).accepted

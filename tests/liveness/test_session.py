"""Liveness gates the door session: an attack yields no template, no match request, one alarm."""
from __future__ import annotations

import dataclasses

import pytest

from appliance.liveness.checker import LivenessChecker
from appliance.liveness.events import ATTACK, FAILED, CollectingSink
from appliance.liveness.evidence import Ed25519Signer, verify
from appliance.liveness.session import run_session

MAX_EVIDENCE_BYTES = 4096  # a compact summary: scores and results, never pixels


@pytest.fixture
def embed_calls(pipeline, monkeypatch):
    """Counts calls of the real embedder (still runs it): the proof that no template is made."""
    calls = []
    real = pipeline.embedder.embed_crops

    def counting(crops, flip_fusion=True):
        calls.append(len(crops))
        return real(crops, flip_fusion)

    monkeypatch.setattr(pipeline.embedder, "embed_crops", counting)
    return calls


def _run(pipeline, checker, frames, **kwargs):
    signer = Ed25519Signer.generate("door-1")
    alarms = CollectingSink()
    requests = []
    outcome = run_session(pipeline, checker, frames, signer, alarms,
                          lambda template, evidence: requests.append((template, evidence)) or "match-sent", **kwargs)
    return outcome, alarms, requests, signer


@pytest.mark.parametrize("attack", ["image_F1", "image_F2"])
def test_attack_stops_before_template(pipeline, checker, spoof_samples, embed_calls, attack):
    outcome, alarms, requests, signer = _run(pipeline, checker, [spoof_samples[attack]] * 3)
    assert outcome.cancelled and outcome.template is None and outcome.match is None
    assert embed_calls == []  # the embedder was never asked
    assert requests == []  # no match request
    assert len(alarms.events) == 1
    event = alarms.events[0]
    assert event.kind == ATTACK and event.session_id == outcome.session_id and event.reasons
    assert event.summary["live"] is False and "cues" in event.summary
    # the evidence of the failed check is still signed (for the audit log)
    assert verify(outcome.evidence, signer.public_key_bytes())["live"] is False


def test_bona_fide_gets_template_and_one_match_request(pipeline, checker, spoof_samples, embed_calls):
    outcome, alarms, requests, signer = _run(pipeline, checker, [spoof_samples["image_T1"]] * 3)
    assert not outcome.cancelled and outcome.match == "match-sent"
    assert alarms.events == [] and len(requests) == 1 and embed_calls == [1]
    template, evidence = requests[0]
    assert template is outcome.template
    summary = verify(evidence, signer.public_key_bytes())
    assert summary["live"] is True and summary["session_id"] == outcome.session_id
    assert summary["decided_at"] >= summary["started_at"]
    assert len(evidence.payload) < MAX_EVIDENCE_BYTES
    assert set(summary["cues"]) >= {"minifasnet_v2", "periodicity"}
    assert summary["motion"]["verdict"] == "inconclusive"  # a still burst tells nothing


def test_active_level_without_completed_challenge_fails_with_one_alarm(pipeline, checker, spoof_samples, embed_calls):
    from appliance.liveness.challenge import Action, ActiveChallenge, Step

    active = LivenessChecker(dataclasses.replace(checker.config, level="active"), checker.registry,
                             calibration=checker.calibration)
    challenge = ActiveChallenge([Step(Action.BLINK, 0.1, 0.5)], started_at=0.0)
    frames = [spoof_samples["image_T1"]] * 8
    outcome, alarms, requests, _ = _run(pipeline, active, frames, times=[i * 0.1 for i in range(8)],
                                        challenge=challenge)
    assert challenge.failed
    assert outcome.cancelled and requests == [] and embed_calls == []
    assert [e.kind for e in alarms.events] == [FAILED]
    assert "challenge_not_completed" in outcome.decision.reasons

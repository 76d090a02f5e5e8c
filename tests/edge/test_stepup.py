"""Step-up (``liveness.level = "passive+stepup"``) through the daemon with the real models: a Yale
subject replayed from a folder whose passive score falls inside the step-up band is asked a
challenge on the display; answering the drawn challenge (seeded) passes, a recording made for the
other order is refused; a clearly live face and a clear attack are decided without a challenge."""
from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from edgekit import FakeDecider
from test_door_pass import BURST, SETTINGS, door, folder_of, replay, seed_for, sequence, yale_folder

from appliance.edge.challenge_runner import ChallengeRunner
from appliance.edge.door_pass import ALARM_ATTACK, ALARM_LIVENESS_FAILED, LIVENESS_REFUSED_TEXT
from appliance.edge.kiosk.screen import STEP_UP_TEXT
from appliance.liveness.challenge import Action
from appliance.liveness.checker import LivenessChecker
from appliance.liveness.evidence import Ed25519Signer, from_transport, verify
from appliance.liveness.server import ServerPolicy, judge_evidence
from appliance.liveness.step_up import LEVEL, REASON_STEP_UP, live_margin
from appliance.protocol import messages
from appliance.vision.types import Face

ASKED = (Action.BLINK, Action.SMILE)  # what the Yale subject can perform (sleepy, happy)
BAND_ABOVE = 1.0  # the test's band reaches this far (log-odds) above the neutral face's margin


@pytest.fixture(scope="module")
def signer():
    return Ed25519Signer.generate("door-s")


@pytest.fixture(scope="module")
def neutral_margin(pipeline, checker, yale):
    """How clearly live the subject's neutral face is, as the first burst shows it."""
    folder = yale / "subject02"
    frames = [pipeline.analyze(image).face for image in [_read(folder / "normal.png")] * BURST]
    decision = checker.judge([_read(folder / "normal.png")] * BURST, frames, level="passive+motion")
    assert decision.live, f"the Yale subject is refused passively: {decision.reasons}"
    return live_margin(decision.score, decision.threshold)


def _read(path):
    from appliance.capture.images import read_image

    return read_image(path)


def stepup_checker(config, pipeline, checker, margin: float) -> LivenessChecker:
    settings = dataclasses.replace(config.liveness, level=LEVEL, step_up_margin=margin)
    return LivenessChecker(settings, pipeline.registry, calibration=checker.calibration)


@pytest.fixture(scope="module")
def in_band(config, pipeline, checker, neutral_margin):
    """The band reaches above the neutral face: its passive score is not clear, a challenge is asked."""
    return stepup_checker(config, pipeline, checker, neutral_margin + BAND_ABOVE)


def test_a_face_inside_the_band_is_challenged_and_passes_by_answering(pipeline, in_band, yale, embed_calls, signer,
                                                                      tmp_path):
    seed = seed_for(ASKED)
    decider = FakeDecider()
    runner = ChallengeRunner(SETTINGS, random.Random(seed), step_up=True)
    daemon, display, actuator, sent = door(pipeline, in_band, signer, runner, decider)
    scenes = ["neutral"] * BURST + sequence(seed, list(ASKED))  # the first burst, then the answers
    (record,) = daemon.run(replay(yale_folder(tmp_path, yale, scenes)))
    assert record.outcome == "accepted" and actuator.openings == 1 and embed_calls == [1]
    # the challenge was asked on the display, after the passive check of the first burst
    assert display.lines == [STEP_UP_TEXT, "Blink both eyes", "Look at the camera", "Smile", "Thank you",
                             "Welcome S**** T**"]
    request, _ = decider.requests[0]
    summary = verify(from_transport(request.liveness), signer.public_key_bytes())
    assert summary["level"] == LEVEL and summary["live"] is True and summary["step_up"] is False
    assert summary["challenge"]["order"] == ["blink", "smile"] and summary["challenge"]["passed"] is True
    policy = ServerPolicy(min_level=LEVEL, known_calibrations=(in_band.calibration_id,))
    judgement = judge_evidence(from_transport(request.liveness), signer.public_key_bytes(), policy,
                               now=summary["decided_at"] + 1.0)
    assert judgement.accepted, judgement.reasons
    assert [kind for kind, _ in sent] == ["event"]


def test_a_replayed_recording_of_the_other_order_is_refused(pipeline, in_band, yale, embed_calls, signer, tmp_path):
    """A real challenged sequence recorded for (smile, blink) smiles when this draw asks to blink."""
    seed = seed_for(ASKED)
    decider = FakeDecider()
    runner = ChallengeRunner(SETTINGS, random.Random(seed), step_up=True)
    daemon, display, actuator, sent = door(pipeline, in_band, signer, runner, decider)
    until_timeout = int((SETTINGS.max_delay_s + SETTINGS.step_timeout_s) * 5.0) + 3
    scenes = ["neutral"] * BURST + sequence(seed, [Action.SMILE, Action.BLINK]) + ["neutral"] * until_timeout
    (record,) = daemon.run(replay(yale_folder(tmp_path, yale, scenes)), max_passes=1)
    assert (record.outcome, record.reason) == ("rejected", messages.Reason.LIVENESS_FAILED)
    assert embed_calls == [] and decider.requests == [] and actuator.openings == 0
    assert display.lines[:2] == [STEP_UP_TEXT, "Blink both eyes"]  # asked, as the live person was
    alarms = [m for kind, m in sent if kind == "alarm"]
    assert [a.kind for a in alarms] == [ALARM_LIVENESS_FAILED]
    summary = verify(from_transport(alarms[0].details), signer.public_key_bytes())
    assert summary["level"] == LEVEL and "challenge_not_completed" in summary["reasons"]
    assert summary["challenge"]["order"] == ["blink", "smile"] and summary["challenge"]["passed"] is False
    assert display.lines[-2:] == ["Liveness check not completed", LIVENESS_REFUSED_TEXT]


def test_a_clearly_live_face_passes_without_a_challenge(config, pipeline, checker, neutral_margin, yale, embed_calls,
                                                        signer, tmp_path):
    clear = stepup_checker(config, pipeline, checker, max(0.0, neutral_margin - BAND_ABOVE))
    decider = FakeDecider()
    runner = ChallengeRunner(SETTINGS, random.Random(seed_for(ASKED)), step_up=True)
    daemon, display, actuator, _ = door(pipeline, clear, signer, runner, decider)
    (record,) = daemon.run(replay(yale_folder(tmp_path, yale, ["neutral"] * BURST)))
    assert record.outcome == "accepted" and embed_calls == [1] and runner.current is None
    assert display.lines == ["Welcome S**** T**"]  # no prompt
    request, _ = decider.requests[0]
    evidence = from_transport(request.liveness)
    summary = verify(evidence, signer.public_key_bytes())
    assert summary["challenge"] is None and summary["step_up"] is False
    key, now = signer.public_key_bytes(), summary["decided_at"] + 1.0
    assert judge_evidence(evidence, key, ServerPolicy(min_level=LEVEL), now).accepted
    # a server that asks for a wider band than this score clears wants the challenge's evidence
    strict = ServerPolicy(min_level=LEVEL, min_step_up_margin=neutral_margin + BAND_ABOVE)
    assert judge_evidence(evidence, key, strict, now).reasons == ("step_up_challenge_missing",)
    assert "level_below_policy" in judge_evidence(evidence, key, ServerPolicy(min_level="active"), now).reasons


def test_a_clear_attack_is_refused_without_a_challenge(pipeline, in_band, spoof_samples, embed_calls, signer,
                                                       tmp_path):
    runner = ChallengeRunner(SETTINGS, random.Random(1), step_up=True)
    daemon, display, actuator, sent = door(pipeline, in_band, signer, runner)
    (record,) = daemon.run(replay(folder_of(tmp_path, [spoof_samples / "image_F2.jpg"] * BURST)))
    assert record.outcome == "attack" and embed_calls == [] and actuator.openings == 0
    assert [m.kind for kind, m in sent if kind == "alarm"] == [ALARM_ATTACK]
    assert STEP_UP_TEXT not in display.lines and runner.current is None


def test_the_checker_says_step_up_only_inside_the_band(pipeline, in_band, yale):
    image = _read(yale / "subject02" / "normal.png")
    faces = [pipeline.analyze(image).face] * BURST
    decision = in_band.judge([image] * BURST, faces)
    assert decision.step_up and not decision.live and not decision.attack
    assert decision.reasons == (REASON_STEP_UP,)
    assert decision.summary()["step_up_margin"] == in_band.config.step_up_margin


def test_the_step_up_runner_is_engaged_only_on_request_and_for_one_attempt():
    face = Face((0.0, 0.0, 50.0, 50.0), np.zeros((5, 2), np.float32), 0.9, blendshapes={"eyeBlinkLeft": 0.05})
    runner = ChallengeRunner(SETTINGS, random.Random(seed_for(ASKED)), step_up=True)
    assert not runner.engaged
    runner.engage()
    assert runner.engaged and runner.observe(face, 10.0) == STEP_UP_TEXT  # the pause before the first prompt
    runner.abandon()  # the person left: the next attempt starts with the passive check again
    assert not runner.engaged and runner.current is None
    assert ChallengeRunner(SETTINGS, random.Random(1)).engaged  # level active: always

"""The door pass with the real models and a fake decider (no broker): liveness gates the pass
(an attack yields no template, no match request, one alarm), and at level ``active`` the
challenge runs inside the daemon's pass loop on a real sequence of Yale faces replayed from a
folder (sleepy = eyes closed, happy = smiling), in the order the seeded challenge asks."""
from __future__ import annotations

import random
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgekit import FakeDecider
from framekit import close_up

from appliance.capture.sources import Frame, FolderReplaySource
from appliance.edge.challenge_runner import ChallengeRunner, ChallengeSettings
from appliance.edge.daemon import EdgeDaemon, EdgeSettings
from appliance.edge.door_pass import ALARM_ATTACK, ALARM_LIVENESS_FAILED, LIVENESS_REFUSED_TEXT
from appliance.edge.hardware import ConsoleDisplay, LogActuator
from appliance.liveness import framing
from appliance.liveness.challenge import Action, draw_steps
from appliance.liveness.evidence import Ed25519Signer, from_transport, verify
from appliance.liveness.server import ServerPolicy, judge_evidence
from appliance.protocol import messages

MAX_EVIDENCE_BYTES = 4096  # a compact summary: scores and results, never pixels
FPS = 5.0  # the replayed camera's frame rate (frames are stamped FPS apart)
BURST = 5  # frames judged per pass, as `appliance edge` runs with the shipped config
SETTINGS = ChallengeSettings(minimum=1, maximum=3, step_timeout_s=4.0, max_delay_s=1.2)
SUBJECT = "subject02"  # a Yale face the grey calibration judges live (most are; BPCER 23 %)
SCENES = {"neutral": "normal.png", "closed": "sleepy.png", "smile": "happy.png"}
CLOSE_UP_ZOOM = 3  # an ORL crop enlarged until the eyes are far enough apart for the quality gate
PERFORM = {Action.BLINK: ["closed", "neutral"], Action.SMILE: ["smile"]}


def replay(folder: Path, fps: float = FPS):
    """The folder as a camera at exactly ``fps``: frames stamped 1/fps apart, whatever the
    machine's speed, so the challenge's prompt times fall on known frames."""
    start = None
    for frame in FolderReplaySource(folder).frames():
        start = frame.monotonic if start is None else start
        yield Frame(frame.image, frame.index, frame.timestamp, start + frame.index / fps, frame.origin)


def folder_of(tmp_path: Path, images: list[Path], name: str = "camera") -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for index, image in enumerate(images):
        shutil.copy(image, folder / f"{index:03d}{image.suffix}")
    return folder


def door(pipeline, liveness, signer, challenge=None, decider=None):
    display, actuator, sent = ConsoleDisplay(), LogActuator(), []
    daemon = EdgeDaemon(EdgeSettings("door-t", burst_frames=BURST, cool_down_s=0.0), pipeline,
                        decider or FakeDecider(), liveness=liveness, actuator=actuator, display=display,
                        emit=lambda kind, message: sent.append((kind, message)), signer=signer,
                        calibration_id=liveness.calibration_id, challenge=challenge)
    return daemon, display, actuator, sent


@pytest.fixture(scope="module")
def signer():
    return Ed25519Signer.generate("door-t")


# -- passive: the shared smoke-test samples ---------------------------------------------------
@pytest.mark.parametrize("attack", ["image_F1", "image_F2"])
def test_attack_stops_before_template(pipeline, checker, spoof_samples, embed_calls, signer, tmp_path, attack):
    decider = FakeDecider()
    daemon, display, actuator, sent = door(pipeline, checker, signer, decider=decider)
    (record,) = daemon.run(replay(folder_of(tmp_path, [spoof_samples / f"{attack}.jpg"] * BURST)))
    assert record.outcome == "attack" and record.reason == messages.Reason.LIVENESS_FAILED
    assert embed_calls == [] and decider.requests == []  # no template, no match request
    alarms = [m for kind, m in sent if kind == "alarm"]
    assert [a.kind for a in alarms] == [ALARM_ATTACK] and actuator.openings == 0
    # the evidence of the failed check is signed (for the audit log), with its reasons and cues
    summary = verify(from_transport(alarms[0].details), signer.public_key_bytes())
    assert summary["live"] is False and summary["reasons"] and "cues" in summary
    assert display.lines[-1] == LIVENESS_REFUSED_TEXT


def test_bona_fide_gets_one_template_and_one_signed_request(pipeline, checker, spoof_samples, embed_calls, signer,
                                                             tmp_path):
    decider = FakeDecider()
    daemon, _, actuator, sent = door(pipeline, checker, signer, decider=decider)
    (record,) = daemon.run(replay(folder_of(tmp_path, [spoof_samples / "image_T1.jpg"] * BURST)))
    assert record.outcome == "accepted" and actuator.openings == 1
    assert embed_calls == [1] and len(decider.requests) == 1 and [k for k, _ in sent] == ["event"]
    request, _ = decider.requests[0]
    evidence = from_transport(request.liveness)
    summary = verify(evidence, signer.public_key_bytes())
    assert summary["live"] is True and summary["decided_at"] >= summary["started_at"]
    assert len(evidence.payload) < MAX_EVIDENCE_BYTES
    assert set(summary["cues"]) >= {"minifasnet_v2", "periodicity"}
    assert summary["motion"]["verdict"] == "inconclusive"  # a still burst tells nothing



def test_a_face_filling_grey_crop_is_asked_to_step_back_not_refused_or_alarmed(pipeline, checker, faces, embed_calls,
                                                                                signer, tmp_path):
    """An ORL crop (grey, the face fills the frame) cannot be judged: the door guides, no alarm."""
    decider = FakeDecider()
    close_up = tmp_path / "close.png"  # the shared copy is too small for the quality gate: as a close camera sees it
    orl = cv2.imread(str(faces / "att-orl" / "s1" / "1.pgm"))
    cv2.imwrite(str(close_up), cv2.resize(orl, None, fx=CLOSE_UP_ZOOM, fy=CLOSE_UP_ZOOM, interpolation=cv2.INTER_CUBIC))
    daemon, display, actuator, sent = door(pipeline, checker, signer, decider=decider)
    (record,) = daemon.run(replay(folder_of(tmp_path, [close_up] * BURST)))
    assert record.outcome == "rejected" and actuator.openings == 0
    assert embed_calls == [] and decider.requests == [] and "alarm" not in [kind for kind, _ in sent]
    assert display.lines[-1] == framing.TOO_CLOSE_GUIDANCE

def test_a_colour_face_filling_the_frame_is_asked_to_step_back(pipeline, checker, spoof_samples, embed_calls,
                                                               signer, tmp_path):
    """The bona fide sample cut to ``framekit.LEANING_IN`` face boxes (a person leaning into the lens;
    the model then sees no surroundings and often calls a live face an attack): guidance, no alarm,
    no request."""
    frame = cv2.imread(str(spoof_samples / "image_T1.jpg"))
    near = tmp_path / "near.png"
    cv2.imwrite(str(near), close_up(frame, pipeline.detect(frame).subject.box))
    decider = FakeDecider()
    daemon, display, actuator, sent = door(pipeline, checker, signer, decider=decider)
    (record,) = daemon.run(replay(folder_of(tmp_path, [near] * BURST)))
    assert record.outcome == "rejected" and actuator.openings == 0
    assert embed_calls == [] and decider.requests == [] and "alarm" not in [kind for kind, _ in sent]
    assert display.lines[-1] == framing.TOO_CLOSE_GUIDANCE


# -- active: a real challenge sequence ------------------------------------------------------
def seed_for(want: tuple[Action, ...]) -> int:
    """A seed whose draw asks for ``want``: what one Yale subject can perform (blink, smile)."""
    for seed in range(10_000):
        if tuple(s.action for s in _steps(seed)) == want:
            return seed
    raise AssertionError(f"no seed draws {want}")


def _steps(seed: int):
    return draw_steps(random.Random(seed), SETTINGS.minimum, SETTINGS.maximum, SETTINGS.step_timeout_s,
                      SETTINGS.max_delay_s)


def sequence(seed: int, performed: list[Action]) -> list[str]:
    """Scenes of a person who waits for each prompt of the seeded challenge, then performs
    ``performed[i]`` (the asked actions: a cooperative person; others: a replay)."""
    scenes: list[str] = []
    for step, action in zip(_steps(seed), performed):
        scenes += ["neutral"] * (int(np.ceil(step.delay_s * FPS)) + 2) + PERFORM[action]
    return scenes


def yale_folder(tmp_path: Path, yale: Path, scenes: list[str]) -> Path:
    return folder_of(tmp_path, [yale / SUBJECT / SCENES[scene] for scene in scenes])


def test_a_challenged_pass_through_the_daemon_is_accepted(pipeline, active_checker, yale, embed_calls, signer,
                                                           tmp_path):
    asked = (Action.BLINK, Action.SMILE)
    seed = seed_for(asked)
    decider = FakeDecider()
    runner = ChallengeRunner(SETTINGS, random.Random(seed))
    daemon, display, actuator, sent = door(pipeline, active_checker, signer, runner, decider)
    (record,) = daemon.run(replay(yale_folder(tmp_path, yale, sequence(seed, list(asked)))))
    assert record.outcome == "accepted" and actuator.openings == 1 and embed_calls == [1]
    assert display.lines == ["Look at the camera", "Blink both eyes", "Look at the camera", "Smile", "Thank you",
                             "Welcome S**** T**"]
    request, _ = decider.requests[0]
    summary = verify(from_transport(request.liveness), signer.public_key_bytes())
    assert summary["level"] == "active" and summary["live"] is True
    assert summary["challenge"]["order"] == ["blink", "smile"] and summary["challenge"]["passed"] is True
    # the matcher's second judgement accepts it at the strictest policy (human-speed answers)
    policy = ServerPolicy(min_level="active", known_calibrations=(active_checker.calibration_id,))
    judgement = judge_evidence(from_transport(request.liveness), signer.public_key_bytes(), policy,
                               now=summary["decided_at"] + 1.0)
    assert judgement.accepted, judgement.reasons
    assert [kind for kind, _ in sent] == ["event"]


def test_a_sequence_without_the_asked_action_fails_the_challenge(pipeline, active_checker, yale, embed_calls, signer,
                                                                 tmp_path):
    """A recording made for the other order (smile, then blink) smiles when asked to blink."""
    seed = seed_for((Action.BLINK, Action.SMILE))
    decider = FakeDecider()
    runner = ChallengeRunner(SETTINGS, random.Random(seed))
    daemon, display, actuator, sent = door(pipeline, active_checker, signer, runner, decider)
    until_timeout = int((SETTINGS.max_delay_s + SETTINGS.step_timeout_s) * FPS) + 3
    scenes = sequence(seed, [Action.SMILE, Action.BLINK]) + ["neutral"] * until_timeout
    (record,) = daemon.run(replay(yale_folder(tmp_path, yale, scenes)), max_passes=1)
    assert (record.outcome, record.reason) == ("rejected", messages.Reason.LIVENESS_FAILED)
    assert embed_calls == [] and decider.requests == [] and actuator.openings == 0
    alarms = [m for kind, m in sent if kind == "alarm"]
    assert [a.kind for a in alarms] == [ALARM_LIVENESS_FAILED]
    summary = verify(from_transport(alarms[0].details), signer.public_key_bytes())
    assert "challenge_not_completed" in summary["reasons"] and summary["challenge"]["passed"] is False
    assert display.lines[-2:] == ["Liveness check not completed", LIVENESS_REFUSED_TEXT]

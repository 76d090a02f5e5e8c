"""Active challenge driven by real landmark sequences (Yale blink, AT&T/ORL head turns)."""
from __future__ import annotations

import random

import pytest

from appliance.capture.images import read_image
from appliance.liveness.challenge import Action, ActiveChallenge, Step, draw_steps

FPS = 10.0


def _faces(pipeline, paths):
    faces = [pipeline.detect(read_image(p)).subject for p in paths]
    assert all(f is not None for f in faces)
    return faces


def _challenge(*actions: Action, delay: float = 0.5, timeout: float = 3.0) -> ActiveChallenge:
    return ActiveChallenge([Step(a, delay, timeout) for a in actions], started_at=0.0)


def _play(challenge: ActiveChallenge, faces, start: float = 0.0) -> list[str]:
    """Feed one face per frame at FPS; returns the guidance shown per frame."""
    return [challenge.observe(face, start + i / FPS) for i, face in enumerate(faces)]


@pytest.fixture(scope="module")
def yale(faces):
    return faces / "yale"


@pytest.fixture(scope="module")
def orl(faces):
    return faces / "att-orl"


def test_blink_from_yale_normal_sleepy(pipeline, yale):
    normal, sleepy = _faces(pipeline, [yale / "subject02" / "normal.png", yale / "subject02" / "sleepy.png"])
    frames = [normal] * 8 + [sleepy] * 2 + [normal] * 3
    challenge = _challenge(Action.BLINK)
    shown = _play(challenge, frames)
    assert challenge.passed
    assert "Blink both eyes" in shown and shown[-1] == "Thank you"


def test_eyes_kept_closed_is_no_blink(pipeline, yale):
    normal, sleepy = _faces(pipeline, [yale / "subject02" / "normal.png", yale / "subject02" / "sleepy.png"])
    challenge = _challenge(Action.BLINK, timeout=2.0)
    _play(challenge, [normal] * 8 + [sleepy] * 30)
    assert challenge.failed and not challenge.passed


def test_turns_and_smile_from_real_faces(pipeline, orl, yale):
    """Real heads: ORL s26 turns to its left (yaw +20), s17 to its right; Yale subject01 smiles."""
    frontal_a, left = _faces(pipeline, [orl / "s26" / "1.pgm", orl / "s26" / "5.pgm"])
    frontal_b, right = _faces(pipeline, [orl / "s17" / "1.pgm", orl / "s17" / "10.pgm"])
    normal, happy = _faces(pipeline, [yale / "subject01" / "normal.png", yale / "subject01" / "happy.png"])
    assert left.pose.yaw - frontal_a.pose.yaw >= 12 and frontal_b.pose.yaw - right.pose.yaw >= 12
    challenge = _challenge(Action.TURN_LEFT)
    _play(challenge, [frontal_a] * 8 + [left] * 3)
    assert challenge.passed
    challenge = _challenge(Action.TURN_RIGHT)
    _play(challenge, [frontal_b] * 8 + [right] * 3)
    assert challenge.passed
    challenge = _challenge(Action.SMILE)
    _play(challenge, [normal] * 8 + [happy] * 3)
    assert challenge.passed


def test_wrong_direction_fails(pipeline, orl):
    frontal, left = _faces(pipeline, [orl / "s26" / "1.pgm", orl / "s26" / "5.pgm"])
    challenge = _challenge(Action.TURN_RIGHT, timeout=2.0)
    _play(challenge, [frontal] * 8 + [left] * 30)
    assert not challenge.passed and challenge.failed


def test_static_photo_sequence_fails_every_action(pipeline, yale):
    """A held photo: the same face in every frame performs nothing."""
    (still,) = _faces(pipeline, [yale / "subject05" / "normal.png"])
    for action in Action:
        challenge = _challenge(action, timeout=2.0)
        _play(challenge, [still] * 40)
        assert challenge.failed, action


def test_replayed_session_fails_new_random_order(pipeline, orl, yale):
    """A recording that performed 'turn left' then 'smile' at the old prompt times fails
    when this session asked for them in the other order (random order defeats replay)."""
    frontal, left = _faces(pipeline, [orl / "s26" / "1.pgm", orl / "s26" / "5.pgm"])
    recorded = [frontal] * 8 + [left] * 3 + [frontal] * 8 + [frontal] * 20
    challenge = _challenge(Action.SMILE, Action.TURN_LEFT, timeout=2.0)
    _play(challenge, recorded)
    assert not challenge.passed


def test_action_before_prompt_does_not_count(pipeline, orl):
    """Turned already when prompted: the step waits for a neutral face, then times out."""
    _, left = _faces(pipeline, [orl / "s26" / "1.pgm", orl / "s26" / "5.pgm"])
    challenge = _challenge(Action.TURN_LEFT, timeout=2.0)
    _play(challenge, [left] * 40)
    assert challenge.failed


def test_random_sequences_vary_and_are_valid():
    orders = set()
    rng = random.Random(7)
    for _ in range(50):
        steps = draw_steps(rng, 1, 3, 4.0, 1.2)
        assert 1 <= len(steps) <= 3
        keys = [s.action for s in steps]
        assert len(set(keys)) == len(keys)
        assert not {Action.TURN_LEFT, Action.TURN_RIGHT} <= set(keys)
        assert all(0.3 <= s.delay_s <= 1.2 for s in steps)
        orders.add(tuple(keys))
    assert len(orders) > 20
    challenge = ActiveChallenge.random(100.0, random.Random(1))
    assert challenge.guidance(100.0) == "Look at the camera"
    assert challenge.guidance(100.0 + challenge.steps[0].delay_s) == challenge.steps[0].action.guidance
    # the draw is the random source's: the same seed asks the same, which tests rely on
    assert ActiveChallenge.random(0.0, random.Random(1)).steps == challenge.steps

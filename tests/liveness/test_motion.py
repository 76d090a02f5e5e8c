"""Flat-plane motion and micro-motion on synthetic and real bursts (the generator itself is
tested in tests/evaluation/test_synthetic.py)."""
from __future__ import annotations

import pytest

from appliance.capture.images import read_image
from appliance.evaluation.synthetic import synthesize_sequence
from appliance.liveness import motion


@pytest.fixture(scope="module")
def photos(faces):
    return [read_image(p) for p in sorted((faces / "celeba-dev").glob("*/*.jpg"))[::300][:4]]


def test_tilted_print_burst_moves_as_a_plane(pipeline, photos):
    verdicts = []
    for seed, photo in enumerate(photos):
        frames = synthesize_sequence(photo, "print", seed, frames=6)
        faces = [pipeline.detect(f).subject for f in frames]
        assert all(f is not None for f in faces)
        evidence = motion.analyse(frames, faces)
        verdicts.append(evidence.verdict)
        if evidence.verdict != "inconclusive":
            assert evidence.tracked_points >= motion.MIN_POINTS
    assert verdicts.count("flat") >= 3, verdicts


def test_still_burst_is_inconclusive(pipeline, photos):
    frames = [photos[1]] * 5
    faces = [pipeline.detect(f).subject for f in frames]
    evidence = motion.analyse(frames, faces)
    assert evidence.verdict == "inconclusive" and evidence.out_of_plane < motion.MIN_OUT_OF_PLANE
    assert not evidence.blink


def test_burst_of_different_frame_sizes_is_inconclusive_not_an_error(pipeline, photos):
    """A replayed folder of stills (or a camera changing mode) mixes frame sizes."""
    frames = [photos[0], photos[0][: photos[0].shape[0] - 8], photos[0]]
    faces = [pipeline.detect(f).subject for f in frames]
    assert all(f is not None for f in faces)
    assert motion.analyse(frames, faces).verdict == "inconclusive"


def test_blink_over_a_real_burst(pipeline, faces):
    normal = read_image(faces / "yale" / "subject02" / "normal.png")
    sleepy = read_image(faces / "yale" / "subject02" / "sleepy.png")
    frames = [normal, normal, sleepy, normal]
    evidence = motion.analyse(frames, [pipeline.detect(f).subject for f in frames])
    assert evidence.blink and evidence.activity >= 0.25


def test_replayed_blink_on_a_moving_screen_is_still_an_attack(pipeline, checker, faces):
    """A recording of a real blink (Yale normal/sleepy) replayed on a hand-held screen: the
    blink is replayed too, so micro-motion alone would be fooled; the decision is not."""
    yale = faces / "yale" / "subject02"
    live = [read_image(yale / n) for n in ("normal.png", "normal.png", "sleepy.png", "normal.png", "normal.png")]
    frames = synthesize_sequence(live, "replay", seed=5, frames=5)
    found = [pipeline.detect(f).subject for f in frames]
    decision = checker.judge(frames, found, level="passive+motion")
    assert not decision.live and decision.attack

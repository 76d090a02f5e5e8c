"""The greyscale / NIR liveness path: its cues, its gates, and the checker routing grey frames to it."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from appliance.capture.images import read_image
from appliance.evaluation.pad import to_grey
from appliance.evaluation.synthetic import synthesize
from appliance.evaluation.synthetic_species import is_held_out
from appliance.liveness import grey_path

FRAME = (480, 640)
CENTRED = (220.0, 120.0, 200.0, 240.0)  # x, y, w, h of a face in the middle of a VGA frame


def test_noise_reads_sensor_noise_not_smooth_shading():
    rng = np.random.default_rng(1)
    ramp = np.tile(np.linspace(40, 200, FRAME[1], dtype=np.float32), (FRAME[0], 1))
    assert grey_path.noise(ramp.astype(np.uint8), CENTRED) < 0.6  # rounding of a ramp only
    noisy = np.clip(ramp + rng.normal(0, 8, FRAME), 0, 255).astype(np.uint8)
    assert grey_path.noise(noisy, CENTRED) == pytest.approx(8, rel=0.2)


def test_gates_refuse_face_filling_and_dark_noisy_frames():
    values = {grey_path.CONTEXT: 2.0, grey_path.NOISE: 1.0}
    assert grey_path.refusal(values) is None
    assert grey_path.refusal({**values, grey_path.CONTEXT: grey_path.MIN_CONTEXT - 0.1}) == grey_path.REASON_TOO_CLOSE
    assert grey_path.refusal({**values, grey_path.NOISE: grey_path.MAX_NOISE + 0.1}) == grey_path.REASON_TOO_DARK
    assert set(grey_path.GUIDANCE) == set(grey_path.REFUSALS)


def test_face_tone_sees_paper_that_cannot_reach_black():
    rng = np.random.default_rng(2)
    face = rng.uniform(0, 255, FRAME).astype(np.uint8)
    paper = (40 + face.astype(np.float32) * (235 - 40) / 255).astype(np.uint8)  # paper black 40, white 235
    real, printed = grey_path.face_tone(face, CENTRED), grey_path.face_tone(paper, CENTRED)
    assert printed["grey_face_black"] > real["grey_face_black"] + 0.1
    assert printed["grey_face_range"] < real["grey_face_range"]


def test_rings_see_a_cut_edge_round_the_face():
    rng = np.random.default_rng(4)
    plain = np.clip(128 + rng.normal(0, 10, FRAME), 0, 255).astype(np.uint8)
    cut = plain.copy()
    cv2.ellipse(cut, (320, 240), (105, 126), 0, 0, 360, 30, 3)  # a mask's outline just outside the box
    with_edge, without = grey_path.rings(cut, CENTRED), grey_path.rings(plain, CENTRED)
    assert with_edge["grey_ring_1"] > 2 * without["grey_ring_1"]  # the band at 0.95-1.1 half boxes
    assert with_edge["grey_ring_3"] == pytest.approx(without["grey_ring_3"], rel=0.2)  # nothing further out


def test_measure_gives_every_grey_cue():
    frame = np.random.default_rng(3).integers(0, 255, (*FRAME, 3), dtype=np.uint8)
    values = grey_path.measure(frame, CENTRED)
    assert set(values) == set(grey_path.GREY_CUES) and all(np.isfinite(list(values.values())))
    assert set(grey_path.FEATURES) - set(grey_path.GREY_CUES) == set(grey_path.IMAGE_FEATURES)


@pytest.fixture(scope="module")
def yale_held_out(faces):
    """The `normal` photo of each Yale subject the grey calibration never saw."""
    folders = [p for p in sorted((faces / "yale").iterdir()) if is_held_out(p.name)]
    return [read_image(p / "normal.png") for p in folders]


def test_checker_judges_held_out_yale_faces_live_in_grey(checker, pipeline, yale_held_out):
    assert len(yale_held_out) >= 5
    decisions = [checker.judge([frame], [pipeline.detect(frame).subject], level="passive") for frame in yale_held_out]
    assert all(d.mode == "grey" for d in decisions)
    assert all(grey_path.NOISE in d.cues and "grey_face_black" in d.cues for d in decisions)
    assert sum(d.live for d in decisions) >= len(decisions) - 1  # held-out Yale BPCER is ~1-5 %


def test_checker_refuses_grey_prints_of_held_out_yale_faces(checker, pipeline, yale_held_out):
    attacks = [to_grey(synthesize(frame, "print", seed=40 + n, held_out=True)) for n, frame in enumerate(yale_held_out)]
    decisions = [checker.judge([a], [pipeline.detect(a).subject], level="passive") for a in attacks]
    judged = [d for d in decisions if "no_face" not in d.reasons]
    assert judged and sum(d.live for d in judged) <= 1


def test_checker_does_not_judge_a_face_filling_orl_crop(checker, pipeline, faces):
    frame = read_image(faces / "att-orl" / "s1" / "1.pgm")
    decision = checker.judge([frame], [pipeline.detect(frame).subject], level="passive")
    assert decision.mode == "grey" and not decision.live and not decision.attack
    assert decision.reasons == (grey_path.REASON_TOO_CLOSE,) and np.isnan(decision.score)


def test_checker_does_not_judge_a_frame_too_dark_to_read(checker, pipeline, yale_held_out):
    rng = np.random.default_rng(5)
    gain = 0.08  # a dim entrance brought back by the sensor gain: the noise comes back with it
    dark = yale_held_out[0].astype(np.float32) * gain + rng.normal(0, 1.5, yale_held_out[0].shape)
    frame = cv2.cvtColor(np.clip(dark / gain, 0, 255).astype(np.uint8), cv2.COLOR_BGR2GRAY)
    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    decision = checker.judge([frame], [pipeline.detect(frame).subject], level="passive")
    assert decision.reasons == (grey_path.REASON_TOO_DARK,) and not decision.live and not decision.attack

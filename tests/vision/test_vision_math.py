"""Pure vision math: alignment, pose, subject choice, quality rules."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from appliance.config import QualityProfile
from appliance.evaluation import metrics
from appliance.vision import quality
from appliance.vision.alignment import ARCFACE_112, align, similarity_transform
from appliance.vision.geometry import choose_subject, pose_from_five_points, pose_from_rotation
from appliance.vision.types import Face


def test_similarity_transform_recovers_a_known_warp():
    angle, scale, shift = math.radians(12), 1.7, np.array([30.0, -8.0])
    rotation = scale * np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    source = ARCFACE_112 * 2 + 5
    target = source @ rotation.T + shift
    matrix = similarity_transform(source, target)
    np.testing.assert_allclose(matrix[:, :2], rotation, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_align_puts_points_on_the_template():
    image = np.zeros((300, 300, 3), np.uint8)
    points = ARCFACE_112 * 1.9 + [40, 25]
    for x, y in points:
        cv2.circle(image, (int(round(x)), int(round(y))), 3, (255, 255, 255), -1)
    crop = align(image, points)
    assert crop.shape == (112, 112, 3)
    for x, y in ARCFACE_112:
        assert crop[int(round(y)), int(round(x))].max() > 200


def test_pose_from_rotation_matrix():
    yaw = math.radians(25)
    ry = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    pose = pose_from_rotation(ry)
    assert pose.yaw == pytest.approx(25, abs=1e-6)
    assert abs(pose.pitch) < 1e-6 and abs(pose.roll) < 1e-6


def test_pose_from_five_points_is_frontal_for_the_template():
    pose = pose_from_five_points(ARCFACE_112)
    assert abs(pose.yaw) < 5 and abs(pose.roll) < 2 and abs(pose.pitch) < 10
    turned = ARCFACE_112.copy()
    turned[2, 0] += 15  # nose towards one eye
    assert abs(pose_from_five_points(turned).yaw) > 20


def face_at(x: float, y: float, size: float) -> Face:
    return Face(box=(x, y, size, size), five_points=ARCFACE_112.astype(np.float32) * size / 112 + [x, y], score=1.0)


def test_subject_is_the_largest_then_most_central_face():
    frame = (640, 480)
    assert choose_subject([face_at(10, 10, 80), face_at(300, 200, 120)], frame) == 1
    assert choose_subject([face_at(0, 0, 100), face_at(270, 190, 100)], frame) == 1
    assert choose_subject([], frame) is None


def test_quality_rules_give_codes_and_guidance():
    profile = QualityProfile()
    good = {
        "inter_eye_px": 60.0, "yaw_deg": 3.0, "pitch_deg": -4.0, "roll_deg": 1.0, "eye_closure": 0.1,
        "landmarks_in_frame": 1.0, "other_faces": 0.0, "sharpness": 200.0, "brightness": 120.0,
        "contrast": 45.0, "clipped_fraction": 0.01, "utility": 1.0,
    }
    assert quality.judge(good, profile).passed
    bad = dict(good, inter_eye_px=12.0, yaw_deg=-50.0, eye_closure=0.9, brightness=20.0, utility=0.3)
    report = quality.judge(bad, profile)
    assert set(report.codes) >= {"face_too_small", "head_turned", "eyes_closed", "too_dark", "low_utility"}
    assert {i.guidance for i in report.issues} >= {"move closer", "look at the camera", "open your eyes"}
    # an unmeasurable value (no blendshapes, no mesh) gives no verdict either way
    assert quality.judge(dict(good, eye_closure=float("nan")), profile).passed
    assert quality.best_frame([report, quality.judge(good, profile)]) == 1


def test_threshold_at_fmr_and_eer():
    rng = np.random.default_rng(1)
    impostor = rng.normal(0.0, 0.1, 100_000)
    genuine = rng.normal(0.6, 0.1, 10_000)
    threshold = metrics.threshold_at_fmr(impostor, 1e-3)
    assert np.count_nonzero(impostor >= threshold) <= 100
    assert np.count_nonzero(impostor >= threshold - 0.01) > 100
    eer, at = metrics.equal_error_rate(genuine, impostor)
    assert eer == pytest.approx(0.0013, abs=0.001)  # Phi(-3) for these two normals
    low, high = metrics.wilson_interval(5, 1000)
    assert low < 0.005 < high and high - low < 0.01


def test_a_rate_is_only_set_where_one_error_is_allowed():
    # below 1 / target comparisons the threshold would sit above every impostor: "0 in n", not the target
    assert metrics.estimable(1_000, 1e-3) and not metrics.estimable(999, 1e-3)
    assert not metrics.estimable(0, 0.5)
    with pytest.raises(ValueError, match="no impostor scores"):
        metrics.threshold_at_fmr(np.array([]), 1e-3)

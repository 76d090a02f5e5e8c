"""Occlusion as a quality reason: a real face passes; drawn covers are refused with the right guidance."""
from __future__ import annotations

import math

import numpy as np
import pytest

from appliance.capture.images import read_image
from appliance.evaluation.occlusion import draw_bar, draw_hand, draw_mask, draw_sunglasses, occlude, skin_tone
from appliance.vision import quality
from appliance.vision.occlusion import OCCLUSION_CODES, OCCLUSION_MEASURES, canonical_face, occlusion_measures

FACE = ("celeba-dev", "id07212")  # a frontal, evenly lit shared face (split b: not used to calibrate)
DONOR = ("celeba-dev", "id07211")  # another identity: the drawn hand's skin tone
GUIDANCE = {
    "occluded_eyes": "Please remove your sunglasses",
    "occluded_mouth": "Please remove your mask",
    "occluded_face": "Please keep your hands away from your face",
}


def _photo(faces, where):
    return read_image(sorted((faces / where[0] / where[1]).glob("*.jpg"))[0])


@pytest.fixture(scope="module")
def person(pipeline, faces):
    image = _photo(faces, FACE)
    return image, pipeline.detect(image).subject.mesh


def _codes(pipeline, image):
    analysis = pipeline.analyze(image, pipeline.config.quality_verification)
    return analysis.quality, [c for c in analysis.quality.codes if c in OCCLUSION_CODES]


def test_a_real_face_passes(pipeline, person):
    report, codes = _codes(pipeline, person[0])
    assert codes == []
    assert all(0.0 <= report.measures[m] <= 1.0 for m in OCCLUSION_MEASURES)


@pytest.mark.parametrize(("draw", "code"), [
    (draw_mask, "occluded_mouth"),
    (draw_sunglasses, "occluded_eyes"),
    (draw_bar, "occluded_eyes"),
])
def test_a_drawn_cover_is_refused_with_its_reason(pipeline, person, draw, code):
    image, mesh = person
    report, codes = _codes(pipeline, draw(image, mesh, np.random.default_rng(3)))
    assert codes == [code]
    issue = next(i for i in report.issues if i.code == code)
    assert issue.guidance == GUIDANCE[code] and issue.value > issue.limit


def test_a_hand_over_the_mouth_is_refused(pipeline, faces, person):
    image, mesh = person
    donor = _photo(faces, DONOR)
    skin = skin_tone(donor, pipeline.detect(donor).subject.mesh)
    report, codes = _codes(pipeline, draw_hand(image, mesh, skin, np.random.default_rng(1), place="mouth"))
    assert codes == ["occluded_face"]
    assert next(i for i in report.issues if i.code == "occluded_face").guidance == GUIDANCE["occluded_face"]


def test_grey_frames_are_judged_without_colour(pipeline, faces):
    """Yale is grey: eyes by texture, any mouth cover as a mask, no hand verdict; no crash."""
    image = read_image(faces / "yale" / "subject01" / "normal.png")
    face = pipeline.detect(image).subject
    profile = pipeline.config.quality_verification
    values = occlusion_measures(image[..., 0] if image.ndim == 3 else image, face)
    assert 0.0 <= values["eyes_occlusion"] < profile.max_eyes_occlusion
    assert 0.0 <= values["mouth_occlusion"] < profile.max_mouth_occlusion
    assert math.isnan(values["face_occlusion"])
    for seed, (kind, code) in enumerate((("bar", "occluded_eyes"), ("mask", "occluded_mouth"))):
        covered = occlude(image, face.mesh, kind, seed)
        assert np.array_equal(covered[..., 0], covered[..., 2])  # still grey
        assert code in pipeline.analyze(covered).quality.codes
    flat = np.full((120, 100), 128, np.uint8)  # no face at all where the points say: no crash
    assert not math.isnan(occlusion_measures(flat, face)["eyes_occlusion"])
    assert canonical_face(flat, face).shape == (128, 128, 3)


def test_without_a_frame_there_is_no_verdict(pipeline, person):
    detection = pipeline.detect(person[0])
    aligned = pipeline.embedder.aligned_crop(person[0], detection.subject)
    without, with_frame = quality.measure(detection, aligned), quality.measure(detection, aligned, person[0])
    assert all(math.isnan(without[m]) for m in OCCLUSION_MEASURES)
    assert all(not math.isnan(with_frame[m]) for m in OCCLUSION_MEASURES)
    covered = {**without, **dict.fromkeys(OCCLUSION_MEASURES, 1.0)}
    profile = pipeline.config.quality_verification
    assert not set(quality.judge(without, profile).codes) & set(OCCLUSION_CODES)
    assert set(quality.judge(covered, profile).codes) >= set(OCCLUSION_CODES)

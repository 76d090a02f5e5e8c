"""The enrollment policy (ISO/IEC 19795-5: up to 3 attempts of 3 captures) as a state machine,
then once over real images with the real pipeline."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from appliance.capture.images import read_image
from appliance.enrollment import (
    CAPTURES_PER_ATTEMPT, ENROLLMENT_ATTEMPTS, MAX_ENROLLMENT_CAPTURES, EnrollmentSession, enroll, enroll_labelled,
)
from appliance.vision.quality import NO_FACE, QualityIssue, QualityReport
from appliance.vision.templates import Template, normalise

PACK = ("test-pack", "1")
BLUR = QualityIssue("blurred", "hold still", "sharpness", 1.0, 8.0)
SMALL = QualityIssue("face_too_small", "move closer", "inter_eye_px", 20.0, 60.0)


def _template(seed: int) -> Template:
    return Template(normalise(np.random.default_rng(seed).normal(size=8)).astype(np.float32), *PACK)


def _good(session: EnrollmentSession, label: str, seed: int) -> bool:
    return session.add(label, QualityReport({}, (), 80.0), _template(seed))


def _bad(session: EnrollmentSession, label: str, *issues: QualityIssue) -> bool:
    return session.add(label, QualityReport({}, issues, 10.0), _template(99) if issues != (NO_FACE,) else None)


def test_the_standard_numbers():
    assert (ENROLLMENT_ATTEMPTS, CAPTURES_PER_ATTEMPT, MAX_ENROLLMENT_CAPTURES) == (3, 3, 9)


def test_an_attempt_with_an_accepted_capture_completes_the_enrollment():
    session = EnrollmentSession()
    _bad(session, "a", BLUR)
    _bad(session, "b", NO_FACE)
    _bad(session, "c", SMALL, BLUR)
    assert not session.done and session.attempt == 2  # first attempt failed: another one
    assert _good(session, "d", 1)
    assert not session.done  # the attempt's other captures still count
    _bad(session, "e", BLUR)
    assert _good(session, "f", 2)
    assert session.done
    with pytest.raises(ValueError):
        _good(session, "g", 3)
    result = session.result()
    assert result.enrolled and result.used == 2 and result.attempts == 2
    expected = normalise(_template(1).vector + _template(2).vector)
    assert np.allclose(result.template.vector, expected, atol=1e-6)
    assert (result.template.pack_id, result.template.pack_version) == PACK
    assert [(r.label, r.reason) for r in result.rejected] == [
        ("a", "blurred"), ("b", "no_face"), ("c", "face_too_small, blurred"), ("e", "blurred")]
    assert result.rejected[2].guidance == "move closer; hold still"
    assert result.rejections[2] == ["face_too_small", "blurred"]
    assert list(result.quality) == [80.0, 80.0]


def test_three_failed_attempts_are_a_failure_to_enrol():
    session = EnrollmentSession()
    for index in range(MAX_ENROLLMENT_CAPTURES):
        assert not session.done
        _bad(session, str(index), BLUR)
    assert session.done
    result = session.result()
    assert not result.enrolled and result.template is None and result.used == 0
    assert result.attempts == ENROLLMENT_ATTEMPTS and len(result.rejected) == MAX_ENROLLMENT_CAPTURES


def test_a_short_last_attempt_counts_with_what_it_has():
    session = EnrollmentSession()
    _bad(session, "a", BLUR)
    _good(session, "b", 4)
    result = session.result()
    assert result.enrolled and result.used == 1 and result.attempts == 1
    assert np.allclose(result.template.vector, _template(4).vector)
    assert not EnrollmentSession().result().enrolled


def test_guidance_is_said_once_per_capture():
    session = EnrollmentSession()
    _bad(session, "x", QualityIssue("too_dark", "more light on your face", "brightness", 10, 40),
         QualityIssue("low_contrast", "more light on your face", "contrast", 2, 12))
    assert session.result().rejected[0].guidance == "more light on your face"


def test_real_images_through_the_pipeline(pipeline, faces):
    files = sorted((faces / "celeba-dev" / "id07201").glob("*.jpg"))
    good = read_image(files[0])
    small = cv2.resize(good, (24, 30), interpolation=cv2.INTER_AREA)
    blank = np.full((240, 240, 3), 127, np.uint8)
    taken: list[str] = []

    def images():
        for label, image in (("blank", blank), ("small", small), ("good", good), ("never", good)):
            taken.append(label)
            yield label, image

    result = enroll_labelled(pipeline, images())
    assert result.enrolled and result.used == 1 and result.attempts == 1
    assert taken == ["blank", "small", "good"]  # the completing attempt ends the look
    assert [r.label for r in result.rejected] == ["blank", "small"]
    assert result.rejected[0].reason == "no_face" and result.rejected[0].guidance == NO_FACE.guidance
    assert all(r.guidance for r in result.rejected)
    assert not enroll(pipeline, [blank] * MAX_ENROLLMENT_CAPTURES).enrolled

"""Asking a source for the enrollment resolution: the geometry behind the numbers, and the
check of what the camera (here its stand-ins: a replayed folder, a video file) delivers."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from appliance.capture.sources import (
    ENROLLMENT_MINIMUM, ENROLLMENT_RESOLUTION, FolderReplaySource, OpenCVSource, check_resolution,
    enrollment_width,
)
from appliance.config.quality_presets import ISO_MIN_INTER_EYE_PX
from appliance.errors import ApplianceError, ErrorCode

MEAN_IED_MM = 63.0  # an average adult's distance between the eye centres


def test_the_requested_sizes_give_the_standards_eye_distance_at_the_kiosk():
    # 2 x 0.6 m x tan(35 deg) = 0.84 m of scene across the image
    assert enrollment_width(ISO_MIN_INTER_EYE_PX, inter_eye_mm=MEAN_IED_MM) == 1201
    assert ENROLLMENT_MINIMUM[0] >= enrollment_width(ISO_MIN_INTER_EYE_PX, inter_eye_mm=MEAN_IED_MM)
    assert ENROLLMENT_RESOLUTION[0] >= enrollment_width(ISO_MIN_INTER_EYE_PX)  # a small adult's 55 mm
    assert enrollment_width(ISO_MIN_INTER_EYE_PX, distance_m=1.0) > ENROLLMENT_RESOLUTION[0]  # too far for 1080p


def test_either_orientation_passes_and_a_small_one_names_both_sizes():
    assert check_resolution((1080, 1920), ENROLLMENT_RESOLUTION, "camera") == (1080, 1920)
    with pytest.raises(ApplianceError) as error:
        check_resolution((640, 480), ENROLLMENT_MINIMUM, "camera 0")
    assert error.value.code is ErrorCode.CAMERA_UNAVAILABLE
    assert "640x480" in error.value.detail and "1280x720" in error.value.detail


def test_a_replayed_folder_delivers_its_images_size(faces, tmp_path):
    high = tmp_path / "high"
    high.mkdir()
    shutil.copy(faces / "deepface-pairs" / "img3.jpg", high / "0.jpg")  # 1536x2048
    assert FolderReplaySource(high).request_resolution(*ENROLLMENT_RESOLUTION, minimum=ENROLLMENT_MINIMUM) \
        == (1536, 2048)
    web = FolderReplaySource(faces / "celeba-dev" / sorted(p.name for p in (faces / "celeba-dev").iterdir())[0])
    with pytest.raises(ApplianceError) as error:  # web photos of at most 400 px cannot be enrollment captures
        web.request_resolution(*ENROLLMENT_RESOLUTION, minimum=ENROLLMENT_MINIMUM)
    assert error.value.code is ErrorCode.CAMERA_UNAVAILABLE


def test_a_video_file_keeps_its_recorded_size(tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(3):
        writer.write(np.full((240, 320, 3), 128, np.uint8))
    writer.release()
    source = OpenCVSource(str(video))
    try:
        assert source.request_resolution(320, 240) == (320, 240)
        with pytest.raises(ApplianceError) as error:
            source.request_resolution(*ENROLLMENT_RESOLUTION)
        assert "320x240" in error.value.detail
    finally:
        source.close()

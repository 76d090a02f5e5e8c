"""Frame sources: folder replay, video files, missing cameras."""
from __future__ import annotations

import shutil
import time

import cv2
import pytest

from appliance.capture.sources import open_source
from appliance.capture.images import read_image
from appliance.capture.sources import FolderReplaySource, OpenCVSource
from appliance.errors import ApplianceError, ErrorCode


def test_folder_replay_is_timestamped_paced_and_skips_bad_frames(tmp_path, faces):
    for index, path in enumerate(sorted((faces / "att-orl" / "s1").glob("*.pgm"))[:4]):
        shutil.copy(path, tmp_path / f"{index:02d}.pgm")
    (tmp_path / "02b.jpg").write_bytes(b"\xff\xd8 broken")
    source = open_source(str(tmp_path), fps=20)
    start = time.monotonic()
    frames = list(source.frames())
    assert [f.index for f in frames] == [0, 1, 2, 3]
    assert all(f.image.ndim == 3 for f in frames)
    assert frames[-1].monotonic - start >= 3 / 20 * 0.9
    assert all(b.timestamp >= a.timestamp for a, b in zip(frames, frames[1:]))


def test_video_file_source(tmp_path, faces):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    image = cv2.resize(read_image(faces / "yale" / "subject01" / "normal.png"), (320, 240))
    for _ in range(5):
        writer.write(image)
    writer.release()
    frames = list(OpenCVSource(str(video)).frames())
    assert len(frames) == 5 and frames[0].image.shape == (240, 320, 3)


def test_missing_inputs_are_clear_errors(tmp_path):
    with pytest.raises(ApplianceError) as no_file:
        OpenCVSource(str(tmp_path / "missing.mp4"))
    assert no_file.value.code is ErrorCode.FILE_NOT_FOUND
    with pytest.raises(ApplianceError) as no_camera:
        OpenCVSource("57")
    assert no_camera.value.code is ErrorCode.CAMERA_UNAVAILABLE
    with pytest.raises(ApplianceError) as empty:
        FolderReplaySource(tmp_path)
    assert empty.value.code is ErrorCode.CAMERA_UNAVAILABLE

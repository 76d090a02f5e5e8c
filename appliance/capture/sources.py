"""One frame-source interface over picamera2, OpenCV capture and image-folder replay.

Every source yields timestamped BGR frames. Live sources reconnect after a lost stream;
a file or folder ends with ``StopIteration``.

An enrollment asks the camera for ``ENROLLMENT_RESOLUTION`` with ``request_resolution``
before its first frame: the ISO/IEC 19794-5 enrollment profile needs 90 px between the eye
centres, which at the enrollment distance takes an image this wide (``enrollment_width``,
docs/enrollment.md "Camera resolution"). A camera that delivers less than the minimum is
refused with a clear error rather than producing captures the profile must reject.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from appliance.capture.image_headers import IMAGE_SUFFIXES
from appliance.capture.images import read_image
from appliance.errors import ApplianceError, ErrorCode

log = logging.getLogger(__name__)

# A kiosk enrollment: the person stands ENROLLMENT_DISTANCE_M from a camera with a horizontal
# field of view of KIOSK_HFOV_DEG (a typical USB or Pi camera module); a small adult's eye
# centres are SMALL_IED_MM apart (5th percentile; the mean is about 63 mm).
ENROLLMENT_DISTANCE_M = 0.6
KIOSK_HFOV_DEG = 70.0
SMALL_IED_MM = 55.0
ENROLLMENT_RESOLUTION = (1920, 1080)  # asked for: 90 px for a small adult at 0.6 m (about 125 px at 63 mm)
ENROLLMENT_MINIMUM = (1280, 720)  # accepted: 90 px for an average adult at 0.6 m (and GA/T 1093's capture size)


def enrollment_width(inter_eye_px: float, distance_m: float = ENROLLMENT_DISTANCE_M,
                     hfov_deg: float = KIOSK_HFOV_DEG, inter_eye_mm: float = SMALL_IED_MM) -> int:
    """Image width (px) at which a face ``distance_m`` away spans ``inter_eye_px`` between the
    eye centres: the scene is ``2 d tan(hfov / 2)`` wide."""
    scene_mm = 2000.0 * distance_m * math.tan(math.radians(hfov_deg) / 2)
    return math.ceil(inter_eye_px * scene_mm / inter_eye_mm)


def check_resolution(got: tuple[int, int], minimum: tuple[int, int], what: str) -> tuple[int, int]:
    """``got`` when it is at least ``minimum`` in both directions (either orientation), else
    CAMERA_UNAVAILABLE naming both."""
    if min(got) < min(minimum) or max(got) < max(minimum):  # portrait or landscape alike
        raise ApplianceError(ErrorCode.CAMERA_UNAVAILABLE, (
            f"{what} delivers {got[0]}x{got[1]}, an enrollment needs at least {minimum[0]}x{minimum[1]} "
            "(ISO/IEC 19794-5: 90 px between the eyes; docs/enrollment.md 'Camera resolution')"))
    return got


@dataclass(frozen=True)
class Frame:
    image: np.ndarray  # BGR uint8
    index: int
    timestamp: float  # time.time() when captured
    monotonic: float  # time.monotonic() when captured, for latency
    origin: str = ""  # file name for replayed frames; empty for cameras


class FrameSource(Protocol):
    def frames(self) -> Iterator[Frame]: ...

    def request_resolution(self, width: int, height: int,
                           minimum: tuple[int, int] | None = None) -> tuple[int, int]: ...

    def close(self) -> None: ...


class FolderReplaySource:
    """Replays the images of a folder (sorted by name) at a fixed frame rate.

    The camera stand-in for tests and the demo: the frames go through the same pipeline
    as a live camera's. ``fps=0`` replays as fast as the consumer reads. Unreadable files
    are skipped with a warning, as a camera would drop a bad frame.
    """

    def __init__(self, folder: str | Path, fps: float = 0.0, loop: bool = False):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise ApplianceError(ErrorCode.FILE_NOT_FOUND, f"image folder {self.folder}")
        self.files = sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise ApplianceError(ErrorCode.CAMERA_UNAVAILABLE, f"{self.folder}: no images to replay")
        self.fps = fps
        self.loop = loop

    def frames(self) -> Iterator[Frame]:
        index = 0
        period = 1.0 / self.fps if self.fps > 0 else 0.0
        next_due = time.monotonic()
        while True:
            for path in self.files:
                if period:
                    delay = next_due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    next_due += period
                try:
                    image = read_image(path)
                except ApplianceError as exc:
                    log.warning("skipping frame: %s", exc)
                    continue
                yield Frame(image, index, time.time(), time.monotonic(), str(path))
                index += 1
            if not self.loop:
                return

    def request_resolution(self, width: int, height: int,
                           minimum: tuple[int, int] | None = None) -> tuple[int, int]:
        """A replayed folder cannot change its images: the first readable one's size is what
        this "camera" gives, checked against ``minimum`` (default: the size asked for)."""
        for path in self.files:
            try:
                image = read_image(path)
            except ApplianceError:
                continue
            got = (image.shape[1], image.shape[0])
            return check_resolution(got, minimum or (width, height), f"image folder {self.folder}")
        raise ApplianceError(ErrorCode.CAMERA_UNAVAILABLE, f"{self.folder}: no readable image")

    def close(self) -> None:
        return None


class OpenCVSource:
    """A USB camera (integer index), an RTSP/HTTP stream URL or a video file."""

    def __init__(self, target: str | int, reconnect_delay: float = 1.0, max_failures: int = 30):
        self.target = int(target) if isinstance(target, str) and target.isdigit() else target
        self.is_file = isinstance(self.target, str) and Path(self.target).suffix != "" and "://" not in self.target
        if self.is_file and not Path(self.target).is_file():
            raise ApplianceError(ErrorCode.FILE_NOT_FOUND, f"video file {self.target}")
        self.reconnect_delay = reconnect_delay
        self.max_failures = max_failures
        self._capture = self._open()

    def _open(self) -> cv2.VideoCapture:
        capture = cv2.VideoCapture(self.target)
        if not capture.isOpened():
            capture.release()
            raise ApplianceError(ErrorCode.CAMERA_UNAVAILABLE, f"cannot open {self.target!r}")
        return capture

    def frames(self) -> Iterator[Frame]:
        index, failures = 0, 0
        while True:
            ok, image = self._capture.read()
            if ok and image is not None:
                failures = 0
                yield Frame(image, index, time.time(), time.monotonic())
                index += 1
                continue
            if self.is_file:
                return
            failures += 1
            if failures > self.max_failures:
                raise ApplianceError(ErrorCode.CAMERA_UNAVAILABLE, f"{self.target!r}: stream lost, reconnect failed")
            log.warning("stream %r lost; reconnecting (%d/%d)", self.target, failures, self.max_failures)
            self._capture.release()
            time.sleep(self.reconnect_delay)
            try:
                self._capture = self._open()
            except ApplianceError:
                continue

    def request_resolution(self, width: int, height: int,
                           minimum: tuple[int, int] | None = None) -> tuple[int, int]:
        """Ask the camera for ``width`` x ``height`` and check what it gives (a driver picks its
        nearest mode); a file or stream has the size it was recorded at."""
        if not self.is_file:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        got = (int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if got != (width, height):
            log.info("%r: asked for %dx%d, got %dx%d", self.target, width, height, *got)
        return check_resolution(got, minimum or (width, height), f"camera {self.target!r}")

    def close(self) -> None:
        self._capture.release()


class Picamera2Source:
    """Raspberry Pi camera through picamera2 (imported only when used; Pi OS package)."""

    def __init__(self, size: tuple[int, int] = (640, 480)):
        try:
            from picamera2 import Picamera2
        except ImportError:
            raise ApplianceError(
                ErrorCode.DEPENDENCY_MISSING,
                "the Pi camera needs picamera2: on a Pi apt install python3-picamera2 (venv made with "
                "--system-site-packages), else pip install 'face-appliance[pi]'",
            ) from None
        try:
            self._camera = Picamera2()
            config = self._camera.create_video_configuration(main={"size": size, "format": "RGB888"})
            self._camera.configure(config)
            self._camera.start()
        except Exception as exc:  # noqa: BLE001 - libcamera raises many types
            raise ApplianceError(ErrorCode.CAMERA_UNAVAILABLE, f"Pi camera: {exc}") from None

    def frames(self) -> Iterator[Frame]:
        index = 0
        while True:
            # picamera2's "RGB888" is laid out B, G, R in memory: already OpenCV order
            image = self._camera.capture_array("main")
            yield Frame(image, index, time.time(), time.monotonic())
            index += 1

    def request_resolution(self, width: int, height: int,
                           minimum: tuple[int, int] | None = None) -> tuple[int, int]:
        """Reconfigure the main stream at ``width`` x ``height`` and check the size libcamera chose."""
        try:
            self._camera.stop()
            config = self._camera.create_video_configuration(main={"size": (width, height), "format": "RGB888"})
            self._camera.configure(config)
            self._camera.start()
            got = tuple(self._camera.camera_configuration()["main"]["size"])
        except Exception as exc:  # noqa: BLE001 - libcamera raises many types
            raise ApplianceError(ErrorCode.CAMERA_UNAVAILABLE, f"Pi camera at {width}x{height}: {exc}") from None
        return check_resolution((int(got[0]), int(got[1])), minimum or (width, height), "Pi camera")

    def close(self) -> None:
        self._camera.stop()
        self._camera.close()


def open_source(spec: str, fps: float = 0.0, loop: bool = False) -> FrameSource:
    """``picamera2``, a camera index, a URL, a video file, or a folder of images."""
    if spec == "picamera2":
        return Picamera2Source()
    if Path(spec).is_dir():
        return FolderReplaySource(spec, fps=fps, loop=loop)
    return OpenCVSource(spec)

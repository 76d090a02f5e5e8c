"""Deterministic 640x480 camera-like frames built from real face photos, kept in memory.

The benchmark needs many distinct frames of the size the door camera delivers, with real
faces at door distance, JPEG-encoded so that decoding is part of what is measured. Each
frame is one shared-data photo scaled and placed at a seeded position on a plain, slightly
noisy wall-like background; nothing is written into the repository.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from appliance import paths
from appliance.errors import ApplianceError, ErrorCode

FRAME_WIDTH, FRAME_HEIGHT = 640, 480
JPEG_QUALITY = 90  # typical of an MJPEG camera stream
# the photo fills this fraction of the frame height: a face 0.5-1 m from the camera
MIN_FILL, MAX_FILL = 0.6, 1.0
BACKGROUND_NOISE_SIGMA = 6.0  # sensor-like noise on the background, grey levels
BACKGROUND_LEVELS = (60, 200)  # range of the background's base grey levels
# photos with several faces: the appliance judges one subject at the door
MULTI_FACE_PHOTOS = ("couple.jpg", "selfie-many-people.jpg")
SOURCE_FOLDERS = ("celeba-dev", "deepface-pairs")


@dataclass(frozen=True)
class FrameSet:
    frames: tuple[bytes, ...]
    sources: tuple[str, ...]  # the photo each frame was built from, relative to data/faces
    seed: int

    @property
    def digest(self) -> str:
        """Fingerprint proving that every measured configuration saw the same bytes."""
        sha = hashlib.sha256()
        for frame in self.frames:
            sha.update(frame)
        return sha.hexdigest()[:16]


def source_photos(faces_dir: Path | None = None) -> list[Path]:
    faces_dir = faces_dir or paths.shared_dir() / "data" / "faces"
    photos: list[Path] = []
    for folder in SOURCE_FOLDERS:
        photos += sorted(p for p in (faces_dir / folder).rglob("*.jpg") if p.name not in MULTI_FACE_PHOTOS)
    if not photos:
        raise ApplianceError(
            ErrorCode.FILE_NOT_FOUND,
            f"no face photos under {faces_dir}/{{{','.join(SOURCE_FOLDERS)}}}: set APPLIANCE_SHARED_DATA",
        )
    return photos


def _background(rng: np.random.Generator) -> np.ndarray:
    low, high = BACKGROUND_LEVELS
    start, end = rng.integers(low, high, size=(2, 3))
    ramp = np.linspace(0.0, 1.0, FRAME_WIDTH, dtype=np.float32)[None, :, None]
    canvas = start + (end - start) * ramp
    canvas = np.broadcast_to(canvas, (FRAME_HEIGHT, FRAME_WIDTH, 3)).astype(np.float32)
    canvas = canvas + rng.normal(0.0, BACKGROUND_NOISE_SIGMA, canvas.shape).astype(np.float32)
    return np.clip(canvas, 0, 255).astype(np.uint8)


def compose_frame(photo: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photo scaled to fill part of the frame height, placed at a random position."""
    height, width = photo.shape[:2]
    scale = rng.uniform(MIN_FILL, MAX_FILL) * FRAME_HEIGHT / height
    scale = min(scale, FRAME_WIDTH / width)
    new_w, new_h = max(1, int(width * scale)), max(1, int(height * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    scaled = cv2.resize(photo, (new_w, new_h), interpolation=interpolation)
    canvas = _background(rng)
    x = int(rng.integers(0, FRAME_WIDTH - new_w + 1))
    y = int(rng.integers(0, FRAME_HEIGHT - new_h + 1))
    canvas[y : y + new_h, x : x + new_w] = scaled
    return canvas


def synthesize_frames(count: int, seed: int = 0, faces_dir: Path | None = None) -> FrameSet:
    """``count`` distinct JPEG frames (distinct source photos while there are enough)."""
    if count < 1:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"frame count must be positive, not {count}")
    photos = source_photos(faces_dir)
    root = faces_dir or paths.shared_dir() / "data" / "faces"
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(photos))
    frames, sources = [], []
    for index in range(count):
        path = photos[order[index % len(photos)]]
        photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if photo is None:
            raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{path}: not a supported image or corrupt")
        ok, encoded = cv2.imencode(".jpg", compose_frame(photo, rng), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:  # pragma: no cover - OpenCV always encodes a valid uint8 array
            raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{path}: JPEG encoding failed")
        frames.append(encoded.tobytes())
        sources.append(str(path.relative_to(root)))
    return FrameSet(tuple(frames), tuple(sources), seed)

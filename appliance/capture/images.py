"""Image decoding with one clear error for every way a file can be unusable."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from appliance.errors import ApplianceError, ErrorCode

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Bytes to a BGR uint8 array (greyscale is expanded to three channels)."""
    if not data:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{name}: empty file")
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{name}: not a supported image or corrupt")
    if image.shape[0] * image.shape[1] > MAX_PIXELS:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{name}: {image.shape[1]}x{image.shape[0]} is too large")
    return image


def read_image(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise ApplianceError(ErrorCode.FILE_NOT_FOUND, str(path))
    if not path.is_file():
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{path}: not a file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{path}: {exc.strerror}") from None
    return decode_image(data, str(path))

"""Image decoding with one clear error for every way a file can be unusable.

The header is read and checked before anything is decoded (``image_headers``): a decoder
allocates the whole image once it has the header, so a small file declaring a huge image - a
decompression bomb - must be refused from its header, with ``IMAGE_UNREADABLE`` "too large",
not after gigabytes were taken. The budget: ``MAX_PIXELS`` pixels of at most
``MAX_BYTES_PER_PIXEL`` bytes (16-bit RGBA), one frame (a face image is a still), and one of
the formats of ``image_headers.IMAGE_SUFFIXES``. The decoded array is checked again, in case a decoder ever
disagrees with the header.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from appliance.capture.image_headers import HeaderUnreadable, ImageHeader, read_header
from appliance.errors import ApplianceError, ErrorCode

MAX_PIXELS = 40_000_000  # refuse decompression bombs before decoding
MAX_BYTES_PER_PIXEL = 8  # four channels of 16 bits; float TIFF samples and more are refused
MAX_FRAMES = 1
HEADER_SLACK_BYTES = 1 << 20
# the largest file an image within the budget needs (uncompressed, widest samples)
MAX_FILE_BYTES = MAX_PIXELS * MAX_BYTES_PER_PIXEL + HEADER_SLACK_BYTES


def check_header(data: bytes, name: str = "image") -> ImageHeader:
    """The header of ``data`` if it is within the budget; ``IMAGE_UNREADABLE`` otherwise,
    before any pixel is decoded."""
    try:
        header = read_header(data)
    except HeaderUnreadable as exc:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{name}: {exc}") from None
    if header.width <= 0 or header.height <= 0:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{name}: {header.format} of {header.width}x{header.height} "
                                                         "has no pixels")
    if header.frames != MAX_FRAMES:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{name}: {header.format} with {header.frames} frames "
                                                         "(animation or pages); one still image expected")
    if header.pixels > MAX_PIXELS or header.bytes_per_pixel > MAX_BYTES_PER_PIXEL:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE,
                             f"{name}: {header.format} of {header.width}x{header.height} at {header.bytes_per_pixel} "
                             f"bytes per pixel is too large (at most {MAX_PIXELS:,} pixels and "
                             f"{MAX_BYTES_PER_PIXEL} bytes per pixel)")
    return header


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Bytes to a BGR uint8 array (greyscale is expanded to three channels)."""
    if not data:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{name}: empty file")
    check_header(data, name)
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
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:  # not even read: no image within the budget is that big
            raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{path}: {size} bytes is too large for an image "
                                                             f"(at most {MAX_FILE_BYTES})")
        data = path.read_bytes()
    except OSError as exc:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{path}: {exc.strerror}") from None
    return decode_image(data, str(path))

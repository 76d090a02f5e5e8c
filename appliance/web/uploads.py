"""Uploaded images: checked before anything decodes them.

The whole request body is already bounded (``[console] max_upload_mb``, FastAPI's
``max_body_size``); here each image is bounded too (``max_image_mb``: 413), must be declared
an image (``image/*``: else 415) and must carry an image header the decoder accepts (sniffed
from the bytes, not trusted from the name or the declared type: else 415 with the reason).
"""
from __future__ import annotations

from fastapi import HTTPException, UploadFile

from appliance.capture.images import check_header
from appliance.errors import ApplianceError, ErrorCode

BYTES_PER_MB = 1024 * 1024
TOO_LARGE, UNSUPPORTED = 413, 415
IMAGE_TYPE_PREFIX = "image/"


def read_image_upload(upload: UploadFile, max_mb: float) -> tuple[str, bytes]:
    """``(label, bytes)`` of one uploaded image; the label is its position-free file name
    (no path), for the per-image rejections."""
    label = (upload.filename or "image").replace("\\", "/").rsplit("/", 1)[-1] or "image"
    limit = int(max_mb * BYTES_PER_MB)
    if upload.size is not None and upload.size > limit:
        raise HTTPException(TOO_LARGE, f"{label}: {upload.size} bytes; one image may have at most {limit}")
    declared = (upload.content_type or "").lower()
    if not declared.startswith(IMAGE_TYPE_PREFIX):
        raise HTTPException(UNSUPPORTED, f"{label}: {declared or 'no content type'} is not an image "
                                         "(send JPEG, PNG, BMP, TIFF, WebP or PNM as image/*)")
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise HTTPException(TOO_LARGE, f"{label}: more than {limit} bytes; one image may have at most {limit}")
    if not data:
        raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{label}: empty file")
    check_header(data, label)  # IMAGE_UNREADABLE (415) for anything that is no still image
    return label, data

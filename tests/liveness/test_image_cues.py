"""Model-free image cues: the native-resolution fine texture (issue 15)."""
from __future__ import annotations

import cv2
import numpy as np

from appliance.capture.images import read_image
from appliance.liveness import image_cues
from appliance.liveness.fusion import FEATURES

BOX = (100.0, 80.0, 160.0, 180.0)  # a face box well inside the 360x320 test frame


def _face_frame(faces) -> np.ndarray:
    photo = read_image(sorted((faces / "celeba-dev").glob("*/*.jpg"))[0])
    return cv2.resize(photo, (360, 320), interpolation=cv2.INTER_CUBIC)


def test_fine_texture_sees_what_the_64px_texture_averages_away(faces):
    frame = _face_frame(faces)
    plain = image_cues.measure(frame, BOX)
    # ink dots on a 3 px grid: a print's fine structure, invisible after the 64 px resize
    dots = frame.astype(np.float32)
    dots[::3, ::3] *= 0.55
    dotted = image_cues.measure(np.clip(dots, 0, 255).astype(np.uint8), BOX)
    blurred = image_cues.measure(cv2.GaussianBlur(frame, (0, 0), 1.5), BOX)  # a second optical low-pass
    assert len(plain.fine_texture) == image_cues.TEXTURE_BINS and abs(sum(plain.fine_texture) - 1) < 1e-9
    fine_shift = np.abs(np.subtract(dotted.fine_texture, plain.fine_texture)).sum()
    coarse_shift = np.abs(np.subtract(dotted.texture[:10], plain.texture[:10])).sum()  # the 64 px luma bins
    assert fine_shift > 2 * coarse_shift and fine_shift > 0.1
    assert dotted.fine_contrast > plain.fine_contrast > blurred.fine_contrast


def test_fine_cues_are_fusion_features_but_not_summary_scores(faces):
    values = image_cues.measure(_face_frame(faces), BOX).as_dict()
    assert set(image_cues.FINE_NAMES) <= set(values) and set(image_cues.FINE_NAMES) <= set(FEATURES)
    assert "fine_contrast" in FEATURES and "fine_texture" not in values
    assert all(name.startswith("texture_") for name in image_cues.FINE_NAMES)  # left out of the signed summary
    tiny = image_cues.measure(_face_frame(faces), (10.0, 10.0, 20.0, 20.0))  # too small for a skin patch
    assert tiny.fine_contrast == 0.0 and sum(tiny.fine_texture) == 0.0

"""Occlusion of the face (mask, sunglasses or an eye bar, a hand) from the frame and the five points.

No model of its own: the face is warped to a fixed layout (eyes, nose and mouth corners at known
places) and each region is compared with the face's own texture and skin, so the judgement
adapts to the image's sharpness, skin tone and light. Three measures, 0 (uncovered) .. 1:

* ``eyes_occlusion``: the eye patches lack an eye's structure (eyelids, iris, lashes: their
  texture is well above the face's average) and are not skin: dark, tinted or mirrored lenses,
  a bar. The less covered eye counts, so one eye hidden by hair does not count as sunglasses.
* ``mouth_occlusion``: share of nose, mouth and chin whose colour is neither skin (any tone) nor
  close to this face's visible skin: cloth of any colour but skin's.
* ``face_occlusion``: the mouth is skin-coloured yet has lost its lips' horizontal edges: a hand
  (or skin-toned cloth) over it. A hand that leaves eyes and mouth visible is not measured.

On a grey (infrared) face the eyes are judged by texture alone, any cover of the mouth (mask or
hand: without colour they look alike) counts as ``mouth_occlusion`` and ``face_occlusion`` is NaN.
"""
from __future__ import annotations

import math

import cv2
import numpy as np

from appliance.vision.alignment import similarity_transform
from appliance.vision.types import Face

OCCLUSION_MEASURES = ("eyes_occlusion", "mouth_occlusion", "face_occlusion")
OCCLUSION_CODES = ("occluded_eyes", "occluded_mouth", "occluded_face")
SIZE = 128  # the canonical canvas; eyes 40 px apart
LAYOUT = np.array([[44.0, 48.0], [84.0, 48.0], [64.0, 71.0], [47.4, 94.0], [80.6, 94.0]])
GREY_CHROMA = 4.0  # chroma of the skin's median colour (8-bit Lab) below which the face is taken as grey
GREY_EYE_TEXTURE = 0.8  # on a grey face, eye texture (x the face's mean) from which an eye counts as uncovered
EYE_UNCOVERED = 2.0  # eye texture (x the face's mean) + skin share at which an eye patch counts as uncovered
SKIN_DISTANCE = 14.0  # Lab distance beyond which a colour is not this face's skin
LIGHTNESS_WEIGHT = 0.35  # how much lightness counts in that distance (shading changes it a lot)
SKIN_HUE = (8.0, 95.0)  # hue angle (degrees from +a* towards +b*) of human skin of every tone, olive too
SKIN_MIN_CHROMA = 6.0  # below this a colour is grey/white/black, whatever its hue


def _ellipse(centre: tuple[int, int], axes: tuple[int, int]) -> np.ndarray:
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    cv2.ellipse(canvas, centre, axes, 0, 0, 360, 255, -1)
    return canvas > 0


def _rect(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    canvas = np.zeros((SIZE, SIZE), bool)
    canvas[y0:y1, x0:x1] = True
    return canvas


# Regions of the canonical face (see LAYOUT): where each measure looks.
REGIONS = {
    "eye_left": _ellipse((44, 48), (9, 4)),  # the eye opening: lids, iris, lashes
    "eye_right": _ellipse((84, 48), (9, 4)),
    # forehead above the brows, between the eyes, under the eyes: rarely covered by a mask
    "skin": _rect(44, 16, 84, 30) | _rect(58, 40, 70, 56) | _rect(28, 60, 42, 70) | _rect(86, 60, 100, 70),
    "lower": _ellipse((64, 100), (24, 16)) | _rect(56, 64, 72, 82),  # nose, mouth and chin
    "mouth": _ellipse((64, 94), (17, 7)),
    "inner": _rect(30, 20, 98, 118),  # the face without hair and ears: the texture reference
}


def canonical_face(frame_bgr: np.ndarray, face: Face) -> np.ndarray:
    """The face warped so eyes, nose and mouth corners sit on ``LAYOUT`` (SIZE x SIZE, BGR)."""
    matrix = similarity_transform(face.five_points, LAYOUT)
    if frame_bgr.ndim == 2:
        frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    return cv2.warpAffine(frame_bgr, matrix, (SIZE, SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _relative(energy: np.ndarray, region: np.ndarray) -> float:
    """Mean of ``energy`` in ``region`` over its mean on the inner face (1 = average texture)."""
    return float(energy[region].mean()) / max(float(energy[REGIONS["inner"]].mean()), 1e-3)


def measures(canonical_bgr: np.ndarray) -> dict[str, float]:
    """The three occlusion measures of one canonical face crop."""
    lab = cv2.cvtColor(canonical_bgr, cv2.COLOR_BGR2LAB).astype(np.float32)
    grey = cv2.cvtColor(canonical_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    texture = np.abs(cv2.Laplacian(grey, cv2.CV_32F))
    horizontal_edges = np.abs(cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    a, b = lab[..., 1] - 128.0, lab[..., 2] - 128.0
    reference = np.median(lab[REGIONS["skin"]], axis=0)
    colour = math.hypot(reference[1] - 128.0, reference[2] - 128.0) >= GREY_CHROMA
    hue = np.degrees(np.arctan2(b, a))
    skin_like = (hue >= SKIN_HUE[0]) & (hue <= SKIN_HUE[1]) & (np.hypot(a, b) >= SKIN_MIN_CHROMA)
    covers = []
    for name in ("eye_left", "eye_right"):
        eye_texture = _relative(texture, REGIONS[name])
        if colour:  # a closed lid is flat too, but skin
            cover = (EYE_UNCOVERED - eye_texture - skin_like[REGIONS[name]].mean()) / EYE_UNCOVERED
        else:  # grey: texture alone; clear glasses and closed lids keep more than a lens or a bar
            cover = 1.0 - eye_texture / GREY_EYE_TEXTURE
        covers.append(float(np.clip(cover, 0.0, 1.0)))
    eyes = min(covers)
    mouth = REGIONS["mouth"]
    lips_lost = float(np.clip(1.0 - _relative(horizontal_edges, mouth), 0.0, 1.0))
    if not colour:  # grey: a mask and a hand look alike; both hide the lips' edges
        return {"eyes_occlusion": eyes, "mouth_occlusion": lips_lost, "face_occlusion": math.nan}
    values = {"eyes_occlusion": eyes}
    distance = np.sqrt(
        (LIGHTNESS_WEIGHT * (lab[..., 0] - reference[0])) ** 2
        + (lab[..., 1] - reference[1]) ** 2 + (lab[..., 2] - reference[2]) ** 2
    )
    values["mouth_occlusion"] = float(((distance > SKIN_DISTANCE) & ~skin_like)[REGIONS["lower"]].mean())
    values["face_occlusion"] = float(skin_like[mouth].mean()) * lips_lost
    return values


def occlusion_measures(frame_bgr: np.ndarray | None, face: Face) -> dict[str, float]:
    """The occlusion measures of ``face`` in its frame; NaN (no verdict) without a frame."""
    if frame_bgr is None or frame_bgr.size == 0:
        return dict.fromkeys(OCCLUSION_MEASURES, math.nan)
    return measures(canonical_face(frame_bgr, face))

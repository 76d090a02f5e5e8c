"""Motion cues over a short burst of frames (pure image geometry, no models).

A photo or a screen is a plane: whatever way it is moved, one homography maps the image
points of the first frame onto every later frame. A real head turning shows parallax (the
nose moves against the cheeks and the contour), which a homography cannot explain. Points
are tracked by optical flow on the face texture, not taken from the landmarker: the
landmark model fits a 3-D face prior to whatever it sees, so its points follow a tilted
photo as if a head had turned (measured: homography/similarity residual 0.35-0.65 for
tilted synthetic prints, no better than real heads).

The cue is decisive only when the face moved *out of plane* enough to tell: still faces, and
faces that only slide, scale or roll in the image plane, are "inconclusive" and left to the
passive cues. Its thresholds could not be set on real bona fide video (none is available
here); they are set from the tracking noise of synthetic planar bursts and must be checked
with the camera calibration (docs/liveness.md).

Micro-motion: a live face changes expression (blinks, mouth, brows); the blendshape range
over the burst records it (noisy on its own: the landmarker jitters on prints too).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from appliance.vision.types import Face

MAX_POINTS = 150
MIN_POINTS = 12
MIN_OUT_OF_PLANE = 0.04  # median similarity residual (/ inter-eye) needed to decide
PLANAR_RATIO = 0.3  # homography / similarity residual below this: a plane
BLINK_RISE = 0.25  # eye closure above the burst's most open frame that counts as closed
ACTIVITY_SHAPES = ("eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "smileLeft", "smileRight", "browInnerUp")
LK_WINDOW, LK_LEVELS = (15, 15), 3


@dataclass(frozen=True)
class MotionEvidence:
    frames: int
    tracked_points: int
    out_of_plane: float  # median residual after the best 2-D similarity, / inter-eye
    homography_residual: float  # median residual after the best homography, / inter-eye
    planar_ratio: float  # homography / similarity residual (1 = the plane explains nothing)
    activity: float  # largest blendshape range over the burst
    blink: bool
    verdict: str  # "flat" | "parallax" | "inconclusive"

    def as_dict(self) -> dict:
        return dict(vars(self))


def _grey(bgr: np.ndarray) -> np.ndarray:
    return bgr if bgr.ndim == 2 else cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)


def track(frames: list[np.ndarray], face: Face) -> tuple[np.ndarray, np.ndarray]:
    """Face-texture points of the first frame and where they are in the last (chained LK)."""
    first = _grey(frames[0])
    mask = np.zeros_like(first)
    outline = face.mesh[:, :2] if face.mesh is not None else face.five_points
    cv2.fillConvexPoly(mask, cv2.convexHull(outline.astype(np.int32)), 255)
    mask = cv2.erode(mask, np.ones((5, 5), np.uint8))
    points = cv2.goodFeaturesToTrack(first, MAX_POINTS, 0.01, 4, mask=mask)
    if points is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)
    alive = np.ones(len(points), dtype=bool)
    previous, current = first, points
    for frame in frames[1:]:
        grey = _grey(frame)
        current, status, _ = cv2.calcOpticalFlowPyrLK(previous, grey, current, None, winSize=LK_WINDOW,
                                                      maxLevel=LK_LEVELS)
        alive &= status[:, 0] == 1
        previous = grey
    return points[alive, 0], current[alive, 0]


def residuals(source: np.ndarray, target: np.ndarray) -> tuple[float, float]:
    """(similarity, homography) median residuals in pixels, robust (LMedS) fits."""
    similarity, _ = cv2.estimateAffinePartial2D(source, target, method=cv2.LMEDS)
    homography, _ = cv2.findHomography(source, target, cv2.LMEDS)
    if similarity is None or homography is None:
        return 0.0, 0.0
    sim_fit = source @ similarity[:, :2].T + similarity[:, 2]
    hom_fit = cv2.perspectiveTransform(source[None], homography)[0]
    return (float(np.median(np.linalg.norm(sim_fit - target, axis=1))),
            float(np.median(np.linalg.norm(hom_fit - target, axis=1))))


def blendshape_motion(faces: list[Face]) -> tuple[float, bool]:
    """(activity, blink): largest blendshape range; eyes open -> closed -> open."""
    activity = 0.0
    for name in ACTIVITY_SHAPES:
        values = [f.blendshapes[name] for f in faces if name in f.blendshapes]
        if values:
            activity = max(activity, max(values) - min(values))
    closure = [(f.blendshapes.get("eyeBlinkLeft", 0.0) + f.blendshapes.get("eyeBlinkRight", 0.0)) / 2 for f in faces]
    if not closure:
        return activity, False
    base = min(closure)
    closed = [i for i, value in enumerate(closure) if value - base >= BLINK_RISE]
    reopened = lambda part: bool(part) and min(part) - base <= BLINK_RISE / 2  # noqa: E731
    blink = bool(closed) and reopened(closure[: closed[0]]) and reopened(closure[closed[-1] + 1:])
    return activity, blink


def analyse(frames: list[np.ndarray], faces: list[Face]) -> MotionEvidence:
    """Motion evidence of the subject over a burst; ``faces[i]`` is the subject in ``frames[i]``."""
    activity, blink = blendshape_motion(faces)
    # frames of different sizes are not one scene (a camera mode change, a replayed folder of
    # stills): there is no motion to measure, and optical flow cannot compare them
    if len(frames) < 2 or len({frame.shape[:2] for frame in frames}) > 1:
        return MotionEvidence(len(frames), 0, 0.0, 0.0, 1.0, activity, blink, "inconclusive")
    source, target = track(frames, faces[0])
    if len(source) < MIN_POINTS:
        return MotionEvidence(len(frames), len(source), 0.0, 0.0, 1.0, activity, blink, "inconclusive")
    scale = max(faces[0].inter_eye_px, 1.0)
    similarity, homography = (value / scale for value in residuals(source, target))
    ratio = homography / similarity if similarity > 0 else 1.0
    if similarity < MIN_OUT_OF_PLANE:
        verdict = "inconclusive"
    else:
        verdict = "flat" if ratio < PLANAR_RATIO else "parallax"
    return MotionEvidence(len(frames), len(source), similarity, homography, ratio, activity, blink, verdict)

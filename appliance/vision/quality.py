"""Face image quality (ISO/IEC 29794-5 style measures) and the accept/reject judgement.

Each measure is computed once; a profile (enrollment strict, verification lenient) decides.
Every rejection carries a machine-readable code and a short guidance string for the person
at the door, so the kiosk can say what to change.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from appliance.config import QualityProfile
from appliance.vision.occlusion import occlusion_measures
from appliance.vision.types import Detection, Face

CLIP_LOW, CLIP_HIGH = 8, 247  # grey levels treated as crushed shadows / blown highlights
# Eye-aspect-ratio points of the MediaPipe mesh (outer, inner corners; two upper/lower pairs).
EYE_RINGS = {
    "left": (33, 133, (160, 144), (158, 153)),
    "right": (263, 362, (387, 373), (385, 380)),
}
EAR_OPEN = 0.28  # typical open-eye aspect ratio, used to turn EAR into a closure value


@dataclass(frozen=True)
class QualityIssue:
    code: str
    guidance: str
    measure: str
    value: float
    limit: float


@dataclass(frozen=True)
class QualityReport:
    measures: dict[str, float]
    issues: tuple[QualityIssue, ...]
    score: float  # 0..100, higher is better; used to choose the best frame of a burst

    @property
    def passed(self) -> bool:
        return not self.issues

    @property
    def codes(self) -> list[str]:
        return [issue.code for issue in self.issues]


NO_FACE = QualityIssue("no_face", "step in front of the camera", "faces", 0.0, 1.0)


def _geometric_closure(mesh: np.ndarray) -> float:
    """Closure from the mesh eye aspect ratio (height / width) of the more closed eye."""
    closures = []
    for outer, inner, *pairs in EYE_RINGS.values():
        width = np.linalg.norm(mesh[outer, :2] - mesh[inner, :2])
        height = np.mean([np.linalg.norm(mesh[a, :2] - mesh[b, :2]) for a, b in pairs])
        closures.append(float(np.clip(1.0 - height / max(width, 1e-6) / EAR_OPEN, 0.0, 1.0)))
    return max(closures)


def eye_closure(face: Face) -> float:
    """0 = both eyes wide open, 1 = closed; the more closed eye counts.

    The mean of two independent estimates: the learned eyeBlink blendshapes and the mesh
    eye aspect ratio (each alone confuses squints and smiles more often). NaN when the
    landmarks have no eye contour (detector-only faces).
    """
    estimates = []
    if face.blendshapes:
        estimates.append(max(face.blendshapes.get("eyeBlinkLeft", 0.0), face.blendshapes.get("eyeBlinkRight", 0.0)))
    if face.mesh is not None:
        estimates.append(_geometric_closure(face.mesh))
    return float(np.mean(estimates)) if estimates else math.nan


def landmarks_in_frame(face: Face, frame_size: tuple[int, int]) -> float:
    width, height = frame_size
    points = face.mesh[:, :2] if face.mesh is not None else face.five_points
    inside = (points[:, 0] >= 0) & (points[:, 0] < width) & (points[:, 1] >= 0) & (points[:, 1] < height)
    return float(inside.mean())


def photometric_measures(aligned_bgr: np.ndarray) -> dict[str, float]:
    """Sharpness, brightness, contrast and clipping on the aligned crop's inner face."""
    grey = cv2.cvtColor(aligned_bgr, cv2.COLOR_BGR2GRAY) if aligned_bgr.ndim == 3 else aligned_bgr
    h, w = grey.shape
    inner = grey[int(h * 0.2) : int(h * 0.9), int(w * 0.15) : int(w * 0.85)]
    # scale to a fixed size so sharpness does not depend on the crop layout
    inner = cv2.resize(inner, (64, 64), interpolation=cv2.INTER_AREA)
    laplacian = cv2.Laplacian(inner, cv2.CV_64F)
    return {
        "sharpness": float(laplacian.var()),
        "brightness": float(inner.mean()),
        "contrast": float(inner.std()),
        "clipped_fraction": float(((inner <= CLIP_LOW) | (inner >= CLIP_HIGH)).mean()),
    }


def measure(detection: Detection, aligned_bgr: np.ndarray, frame_bgr: np.ndarray | None = None) -> dict[str, float]:
    """Every measure of the subject; the occlusion ones need the frame (NaN, no verdict, without)."""
    face = detection.subject
    assert face is not None, "measure() needs a detection with a subject"
    pose = face.pose
    subject_side = math.sqrt(face.area)
    others = [f for f in detection.others if math.sqrt(f.area) >= 0.5 * subject_side]
    values = {
        "inter_eye_px": face.inter_eye_px,
        "yaw_deg": pose.yaw if pose else math.nan,
        "pitch_deg": pose.pitch if pose else math.nan,
        "roll_deg": pose.roll if pose else math.nan,
        "eye_closure": eye_closure(face),
        "landmarks_in_frame": landmarks_in_frame(face, detection.frame_size),
        "other_faces": float(len(others)),
        "detector_score": face.score,
    }
    values.update(photometric_measures(aligned_bgr))
    values.update(occlusion_measures(frame_bgr, face))
    return values


# (measure, code, guidance, comparison, profile field); "max" fails above the limit.
RULES = (
    ("inter_eye_px", "face_too_small", "move closer", "min", "min_inter_eye_px"),
    ("yaw_deg", "head_turned", "look at the camera", "absmax", "max_yaw_deg"),
    ("pitch_deg", "head_tilted", "look straight ahead", "absmax", "max_pitch_deg"),
    ("roll_deg", "head_rolled", "keep your head upright", "absmax", "max_roll_deg"),
    ("eyes_occlusion", "occluded_eyes", "Please remove your sunglasses", "max", "max_eyes_occlusion"),
    ("mouth_occlusion", "occluded_mouth", "Please remove your mask", "max", "max_mouth_occlusion"),
    ("face_occlusion", "occluded_face", "Please keep your hands away from your face", "max", "max_face_occlusion"),
    ("eye_closure", "eyes_closed", "open your eyes", "max", "max_eye_closure"),
    ("landmarks_in_frame", "face_cut_off", "move to the centre of the screen", "min", "min_landmarks_in_frame"),
    ("other_faces", "several_faces", "one person at a time, please", "max", "max_other_faces"),
    ("sharpness", "blurred", "hold still", "min", "min_sharpness"),
    ("brightness", "too_dark", "more light on your face", "min", "min_brightness"),
    ("brightness", "too_bright", "avoid strong light behind or on you", "max", "max_brightness"),
    ("contrast", "low_contrast", "more light on your face", "min", "min_contrast"),
    ("clipped_fraction", "badly_exposed", "avoid strong light behind or on you", "max", "max_clipped_fraction"),
    ("utility", "low_utility", "look at the camera in good light", "min", "min_utility"),
)


def judge(values: dict[str, float], profile: QualityProfile) -> QualityReport:
    issues = []
    for name, code, guidance, comparison, limit_name in RULES:
        value = values.get(name, math.nan)
        if math.isnan(value):
            continue  # not measurable with these landmarks: no verdict either way
        limit = float(getattr(profile, limit_name))
        failed = {
            "min": value < limit,
            "max": value > limit,
            "absmax": abs(value) > limit,
        }[comparison]
        if failed:
            issues.append(QualityIssue(code, guidance, name, value, limit))
    return QualityReport(measures=values, issues=tuple(issues), score=quality_score(values, profile))


def quality_score(values: dict[str, float], profile: QualityProfile) -> float:
    """A 0..100 utility used only to rank frames of one burst against each other."""

    def ramp(value: float, good: float) -> float:
        return 1.0 if math.isnan(value) else float(np.clip(value / good, 0.0, 1.0))

    utility = ramp(values.get("utility", math.nan), 1.0)
    size = ramp(values["inter_eye_px"], 2 * profile.min_inter_eye_px)
    angles = [values[k] for k in ("yaw_deg", "pitch_deg", "roll_deg")]
    frontal = 1.0 if any(map(math.isnan, angles)) else math.cos(math.radians(min(80.0, max(map(abs, angles)))))
    sharp = ramp(values["sharpness"], 3 * profile.min_sharpness)
    closure = values["eye_closure"]
    eyes = 1.0 if math.isnan(closure) else 1.0 - min(1.0, closure)
    exposure = 1.0 - min(1.0, values["clipped_fraction"])
    return 100.0 * utility * size * frontal * sharp * eyes * exposure


def best_frame(reports: list[QualityReport]) -> int | None:
    """Index of the best frame of a burst: passing frames first, then by score."""
    if not reports:
        return None
    return max(range(len(reports)), key=lambda i: (reports[i].passed, -len(reports[i].issues), reports[i].score))

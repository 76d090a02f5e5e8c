"""Typed results of the vision stages (in the spirit of uniface's result classes)."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class HeadPose:
    """Head rotation in degrees: yaw (left/right), pitch (up/down), roll (in-plane)."""

    yaw: float
    pitch: float
    roll: float


@dataclass(frozen=True)
class Face:
    """One face in a frame, in frame pixel coordinates.

    ``five_points`` follow the ArcFace order as seen in the image: eye on the left of the
    image, eye on the right, nose tip, mouth corner on the left, mouth corner on the right.
    """

    box: tuple[float, float, float, float]  # x, y, width, height
    five_points: np.ndarray  # (5, 2) float32
    score: float
    mesh: np.ndarray | None = None  # (478, 3) x, y in px, z relative
    blendshapes: dict[str, float] = field(default_factory=dict)
    pose: HeadPose | None = None

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    @property
    def inter_eye_px(self) -> float:
        return float(np.linalg.norm(self.five_points[1] - self.five_points[0]))


@dataclass(frozen=True)
class Detection:
    """All faces found in a frame, with the chosen subject first among equals."""

    faces: tuple[Face, ...]
    frame_size: tuple[int, int]  # width, height
    subject_index: int | None

    @property
    def subject(self) -> Face | None:
        return None if self.subject_index is None else self.faces[self.subject_index]

    @property
    def others(self) -> tuple[Face, ...]:
        return tuple(f for i, f in enumerate(self.faces) if i != self.subject_index)

"""Geometry helpers: subject choice, head pose from a rotation matrix or from 5 points."""
from __future__ import annotations

import math

import numpy as np

from appliance.vision.types import Face, HeadPose


def pose_from_rotation(matrix: np.ndarray) -> HeadPose:
    """Euler angles (Z-Y-X) of the rotation part of MediaPipe's facial transformation matrix."""
    r = np.asarray(matrix, dtype=np.float64)[:3, :3]
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, -r[2, 0]))))
    pitch = math.degrees(math.atan2(r[2, 1], r[2, 2]))
    roll = math.degrees(math.atan2(r[1, 0], r[0, 0]))
    return HeadPose(yaw=yaw, pitch=pitch, roll=roll)


def pose_from_five_points(points: np.ndarray) -> HeadPose:
    """A rough pose when only 5 points exist (detector output): roll from the eye line,
    yaw from the nose offset between the eyes, pitch from the nose height between eyes and mouth."""
    left_eye, right_eye, nose, mouth_left, mouth_right = np.asarray(points, dtype=np.float64)
    eye_vec = right_eye - left_eye
    roll = math.degrees(math.atan2(eye_vec[1], eye_vec[0]))
    eye_mid = (left_eye + right_eye) / 2
    mouth_mid = (mouth_left + mouth_right) / 2
    half = max(np.linalg.norm(eye_vec) / 2, 1e-6)
    # project the nose onto the eye axis: 0 when frontal, +-1 at the eye
    offset = float(np.dot(nose - eye_mid, eye_vec / (2 * half)) / half)
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, offset))))
    span = max(np.linalg.norm(mouth_mid - eye_mid), 1e-6)
    height = float(np.dot(nose - eye_mid, (mouth_mid - eye_mid) / span) / span)
    # the nose tip sits about 0.55 of the way from eyes to mouth in a frontal face
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, (height - 0.55) * 2.5))))
    return HeadPose(yaw=yaw, pitch=pitch, roll=roll)


def choose_subject(faces: list[Face] | tuple[Face, ...], frame_size: tuple[int, int]) -> int | None:
    """The person at the door: the largest face, ties broken towards the frame centre."""
    if not faces:
        return None
    width, height = frame_size
    centre = np.array([width / 2, height / 2])
    diagonal = math.hypot(width, height)

    def merit(face: Face) -> float:
        x, y, w, h = face.box
        distance = np.linalg.norm(np.array([x + w / 2, y + h / 2]) - centre) / diagonal
        return math.sqrt(max(face.area, 1.0)) * (1.0 - 0.5 * distance)

    return int(max(range(len(faces)), key=lambda i: merit(faces[i])))

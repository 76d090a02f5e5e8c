"""MediaPipe FaceLandmarker: 478-point mesh, blendshapes and head-pose matrix per face."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.inference.native import native_stderr_silenced
from appliance.vision.geometry import pose_from_rotation
from appliance.vision.types import Face

# Mesh indices giving the ArcFace 5-point order (image-left eye first).
EYE_LEFT_IMAGE = (33, 133)  # outer, inner corner of the eye on the left of the image
EYE_RIGHT_IMAGE = (263, 362)
NOSE_TIP = 1
MOUTH_LEFT_IMAGE, MOUTH_RIGHT_IMAGE = 61, 291


def five_points_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """Eye centres from the eye corners (steadier than the iris, which follows the gaze)."""
    return np.array(
        [
            mesh[list(EYE_LEFT_IMAGE), :2].mean(axis=0),
            mesh[list(EYE_RIGHT_IMAGE), :2].mean(axis=0),
            mesh[NOSE_TIP, :2],
            mesh[MOUTH_LEFT_IMAGE, :2],
            mesh[MOUTH_RIGHT_IMAGE, :2],
        ],
        dtype=np.float32,
    )


def box_from_points(points: np.ndarray, width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0 = points[:, 0].min(), points[:, 1].min()
    x1, y1 = points[:, 0].max(), points[:, 1].max()
    return (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


class MediaPipeLandmarker:
    """Runs FaceLandmarker in IMAGE mode on RGB frames."""

    def __init__(self, model_file: Path, max_faces: int = 4, min_confidence: float = 0.5):
        try:
            import mediapipe as mp
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as exc:  # pragma: no cover - mediapipe is a core dependency
            raise ApplianceError(ErrorCode.DEPENDENCY_MISSING, f"mediapipe: {exc}") from None
        self._mp = mp
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(model_file)),
            running_mode=vision.RunningMode.IMAGE,
            num_faces=max_faces,
            min_face_detection_confidence=min_confidence,
            min_face_presence_confidence=min_confidence,
            output_face_blendshapes=True,
            output_facial_transformation_matrixes=True,
        )
        with native_stderr_silenced():
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
            # the first inference initialises the delegates (and logs); do it here, not on a visitor
            self.detect(np.zeros((64, 64, 3), dtype=np.uint8))

    def detect(self, rgb: np.ndarray) -> list[Face]:
        height, width = rgb.shape[:2]
        image = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(rgb))
        result = self._landmarker.detect(image)
        faces = []
        for index, landmarks in enumerate(result.face_landmarks):
            mesh = np.array([[p.x * width, p.y * height, p.z * width] for p in landmarks], dtype=np.float32)
            blend = {}
            if result.face_blendshapes:
                blend = {c.category_name: float(c.score) for c in result.face_blendshapes[index]}
            pose = None
            if result.facial_transformation_matrixes:
                pose = pose_from_rotation(np.asarray(result.facial_transformation_matrixes[index]))
            faces.append(
                Face(
                    box=box_from_points(mesh, width, height),
                    five_points=five_points_from_mesh(mesh),
                    score=1.0,
                    mesh=mesh,
                    blendshapes=blend,
                    pose=pose,
                )
            )
        return faces

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

    def __del__(self) -> None:  # mediapipe's own finaliser fails at interpreter exit
        try:
            self.close()
        except Exception:  # noqa: BLE001 - nothing useful to do during shutdown
            pass

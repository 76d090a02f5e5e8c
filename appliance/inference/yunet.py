"""OpenCV Zoo YuNet detector through ``cv2.FaceDetectorYN``: boxes and 5 points."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from appliance.vision.geometry import pose_from_five_points
from appliance.vision.types import Face


class YuNetDetector:
    def __init__(self, model_file: Path, score_threshold: float = 0.6, nms_threshold: float = 0.3, top_k: int = 50):
        self._detector = cv2.FaceDetectorYN.create(
            str(model_file), "", (320, 320), score_threshold, nms_threshold, top_k
        )

    def detect(self, bgr: np.ndarray) -> list[Face]:
        height, width = bgr.shape[:2]
        self._detector.setInputSize((width, height))
        _, rows = self._detector.detect(bgr)
        faces = []
        for row in [] if rows is None else rows:
            points = row[4:14].reshape(5, 2).astype(np.float32)
            # YuNet gives right eye, left eye, nose, right and left mouth corner of the person;
            # reorder to image-left first as the ArcFace layout expects.
            eyes = sorted(points[:2].tolist())
            mouth = sorted(points[3:5].tolist())
            five = np.array([eyes[0], eyes[1], points[2].tolist(), mouth[0], mouth[1]], dtype=np.float32)
            faces.append(
                Face(
                    box=tuple(float(v) for v in row[:4]),
                    five_points=five,
                    score=float(row[14]),
                    pose=pose_from_five_points(five),
                )
            )
        return faces

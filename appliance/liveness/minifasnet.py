"""MiniFASNet V2 + V1SE (Silent-Face, Apache-2.0) on ONNX Runtime: the learned passive cue.

The two networks see the face at two context scales (box x2.7 and x4.0): the wider crop
lets them see paper edges, bezels and hands. Crops follow the reference implementation
(box scaled about its centre, clamped to the frame, shifted inside it) because the scores
shift with the face box; the box here is MediaPipe's mesh box, so the threshold is
calibrated on this pipeline's boxes, not taken from the paper.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.inference.providers import create_session, session_options
from appliance.packs import ModelPack

INPUT_SIZE = 80
DEFAULT_SCALES = (2.7, 4.0)
LIVE_CLASS = 1


@dataclass(frozen=True)
class ModelScores:
    live: float  # mean live probability of the two networks
    per_model: tuple[float, ...]  # live probability of V2, V1SE


def scaled_box(
    frame_size: tuple[int, int], box: tuple[float, float, float, float], scale: float
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) inclusive: ``box`` scaled about its centre, kept inside the frame."""
    width, height = frame_size
    x, y, w, h = box
    w, h = max(w, 1.0), max(h, 1.0)
    scale = min((height - 1) / h, (width - 1) / w, scale)
    new_w, new_h = w * scale, h * scale
    cx, cy = x + w / 2, y + h / 2
    x0, y0, x1, y1 = cx - new_w / 2, cy - new_h / 2, cx + new_w / 2, cy + new_h / 2
    if x0 < 0:
        x1 -= x0
        x0 = 0
    if y0 < 0:
        y1 -= y0
        y0 = 0
    if x1 > width - 1:
        x0 -= x1 - width + 1
        x1 = width - 1
    if y1 > height - 1:
        y0 -= y1 - height + 1
        y1 = height - 1
    return int(max(0, x0)), int(max(0, y0)), int(x1), int(y1)


def crop(bgr: np.ndarray, box: tuple[float, float, float, float], scale: float) -> np.ndarray:
    x0, y0, x1, y1 = scaled_box((bgr.shape[1], bgr.shape[0]), box, scale)
    return cv2.resize(bgr[y0 : y1 + 1, x0 : x1 + 1], (INPUT_SIZE, INPUT_SIZE))


class MiniFASNet:
    """Runs the converted two-network graph; one call scores one face box."""

    def __init__(self, pack: ModelPack, model_file: Path, threads: int = 1):
        if pack.kind != "liveness" or pack.runtime != "onnxruntime":
            raise ApplianceError(ErrorCode.PACK_INVALID, f"{pack.label} is not an ONNX liveness pack")
        options = session_options(threads)
        self.pack = pack
        self.scales = tuple(float(s) for s in pack.input.get("scales", DEFAULT_SCALES))
        self._live = int(pack.input.get("live_class", LIVE_CLASS))
        self._session = create_session(model_file, options, pack)  # the manifest's preferred provider
        self._inputs = [i.name for i in self._session.get_inputs()]

    def score(self, bgr: np.ndarray, box: tuple[float, float, float, float]) -> ModelScores:
        feeds = {}
        for name, scale in zip(self._inputs, self.scales):
            patch = crop(bgr, box, scale).astype(np.float32)  # raw 0-255 BGR, as trained
            feeds[name] = np.ascontiguousarray(patch.transpose(2, 0, 1)[None])
        softmax = self._session.run(None, feeds)[0][0]  # (models, classes)
        per_model = tuple(float(p[self._live]) for p in softmax)
        return ModelScores(float(np.mean(per_model)), per_model)

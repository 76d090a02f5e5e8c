"""Template extraction backends: ONNX Runtime (ArcFace-style packs) and dlib ResNet."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.inference.providers import create_session, session_options
from appliance.packs import ModelPack
from appliance.vision.alignment import align
from appliance.vision.templates import normalise
from appliance.vision.types import Face

# dlib's 5-point shape order, as MediaPipe mesh indices: right-of-image eye corners,
# left-of-image eye corners, bottom of the nose.
DLIB_FIVE_FROM_MESH = (263, 362, 33, 133, 2)


class Embedder(Protocol):
    """What the pipeline needs from a template extractor; ``create_embedder`` returns one per
    pack runtime (a new runtime implements these two calls)."""

    pack: ModelPack

    def aligned_crop(self, bgr: np.ndarray, face: Face) -> np.ndarray: ...

    def embed_crops(self, crops: list[np.ndarray], flip_fusion: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(unit templates, raw feature norms); the norm of an un-normalised ArcFace-style
        feature grows with how recognisable the face is, so it serves as a utility score."""
        ...


class OnnxEmbedder:
    """ArcFace-style embedder: 5-point alignment, (x - mean) / std, NCHW float32."""

    def __init__(self, pack: ModelPack, model_file: Path, threads: int = 2):
        self.pack = pack
        # With flip fusion and two or more threads, the crop and its mirror run as two
        # concurrent batch-1 inferences (one thread each): measured here ~17 ms for both,
        # against ~21 ms for one batch of 2 on 2 intra-op threads (small late feature maps
        # parallelise poorly inside an operator).
        self._parallel_flip = threads >= 2
        options = session_options(max(1, threads // 2) if self._parallel_flip else threads)
        self._session = create_session(model_file, options, pack)  # the manifest's preferred provider
        self._input = self._session.get_inputs()[0].name
        self._layout = pack.input.get("alignment", "arcface-112")
        self._mean = float(pack.input.get("mean", 127.5))
        self._std = float(pack.input.get("std", 127.5))
        self._rgb = pack.input.get("colour", "RGB") == "RGB"
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="embed") if self._parallel_flip else None

    def aligned_crop(self, bgr: np.ndarray, face: Face) -> np.ndarray:
        return align(bgr, face.five_points, self._layout)

    def embed_crops(self, crops: list[np.ndarray], flip_fusion: bool = True) -> tuple[np.ndarray, np.ndarray]:
        if not crops:
            return np.zeros((0, self.pack.embedding_size or 0), dtype=np.float32), np.zeros(0, dtype=np.float32)
        batch = np.stack(crops).astype(np.float32)
        if self._rgb:
            batch = batch[..., ::-1]
        if flip_fusion:
            batch = np.concatenate([batch, batch[:, :, ::-1]])
        tensor = np.ascontiguousarray(((batch - self._mean) / self._std).transpose(0, 3, 1, 2))
        if flip_fusion and self._pool is not None:
            count = len(crops)
            halves = self._pool.map(lambda part: self._session.run(None, {self._input: part})[0],
                                    (tensor[:count], tensor[count:]))
            features = np.concatenate(list(halves))
        else:
            features = self._session.run(None, {self._input: tensor})[0]
        norms = np.linalg.norm(features, axis=1)
        if flip_fusion:
            count = len(crops)
            features = features[:count] + features[count:]
            norms = (norms[:count] + norms[count:]) / 2
        return normalise(features), norms.astype(np.float32)


class DlibEmbedder:
    """dlib ResNet descriptor; dlib aligns to its own 150x150 chip from 5 landmarks."""

    CHIP_SIZE, CHIP_PADDING = 150, 0.25

    def __init__(self, pack: ModelPack, model_file: Path, threads: int = 2):
        try:
            import dlib
        except ImportError:
            raise ApplianceError(
                ErrorCode.DEPENDENCY_MISSING, "the dlib pack needs dlib: pip install 'face-appliance[dlib]'"
            ) from None
        self._dlib = dlib
        self.pack = pack
        self._model = dlib.face_recognition_model_v1(str(model_file))

    def _shape(self, face: Face):
        dlib = self._dlib
        if face.mesh is not None:
            points = face.mesh[list(DLIB_FIVE_FROM_MESH), :2]
        else:  # detector 5 points: eye centres stand in for both corners
            p = face.five_points
            points = np.array([p[1], p[1], p[0], p[0], p[2]])
        x, y, w, h = face.box
        rect = dlib.rectangle(int(x), int(y), int(x + w), int(y + h))
        return dlib.full_object_detection(rect, [dlib.point(int(round(px)), int(round(py))) for px, py in points])

    def aligned_crop(self, bgr: np.ndarray, face: Face) -> np.ndarray:
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        chip = self._dlib.get_face_chip(rgb, self._shape(face), size=self.CHIP_SIZE, padding=self.CHIP_PADDING)
        return np.ascontiguousarray(chip[..., ::-1])

    def embed_crops(self, crops: list[np.ndarray], flip_fusion: bool = True) -> tuple[np.ndarray, np.ndarray]:
        vectors = []
        for crop in crops:
            rgb = np.ascontiguousarray(crop[..., ::-1])
            vector = np.array(self._model.compute_face_descriptor(rgb))
            if flip_fusion:
                vector = vector + np.array(self._model.compute_face_descriptor(np.ascontiguousarray(rgb[:, ::-1])))
            vectors.append(vector)
        # dlib descriptors are not norm-calibrated: no utility score (NaN)
        return normalise(np.array(vectors).reshape(len(crops), -1)), np.full(len(crops), np.nan, np.float32)


def create_embedder(pack: ModelPack, model_file: Path, threads: int = 2) -> Embedder:
    if pack.kind != "embedding":
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{pack.label} is a {pack.kind} pack, not an embedding pack")
    if pack.runtime == "onnxruntime":
        return OnnxEmbedder(pack, model_file, threads)
    if pack.runtime == "dlib":
        return DlibEmbedder(pack, model_file, threads)
    raise ApplianceError(ErrorCode.PACK_INVALID, f"{pack.label}: no embedder for runtime {pack.runtime}")

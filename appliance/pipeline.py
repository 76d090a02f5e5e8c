"""The face pipeline: detect -> landmarks -> align -> quality -> template.

One object owns the model runtimes (loaded on first use, not at import) and measures each
stage's latency, so the edge daemon, the CLI, the evaluation and the benchmark run the very
same code path.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from appliance.config import Config, QualityProfile, registry_for, threshold_for
from appliance.errors import ApplianceError, ErrorCode
from appliance.inference.embedder import create_embedder
from appliance.inference.landmarker import MediaPipeLandmarker
from appliance.inference.yunet import YuNetDetector
from appliance.packs import ModelPack, PackRegistry
from appliance.vision import quality
from appliance.vision.geometry import choose_subject
from appliance.vision.quality import NO_FACE, QualityReport
from appliance.vision.templates import Template
from appliance.vision.types import Detection, Face

PAD_FRACTION = 0.4  # border added when a tightly cropped face defeats the detector
CROP_MARGIN = 0.6  # margin around a detector box before running the landmarker on it
STAGES = ("landmarks", "alignment", "quality", "embedding")


@dataclass(frozen=True)
class FaceAnalysis:
    detection: Detection
    aligned: np.ndarray | None  # the embedder's canonical crop of the subject
    quality: QualityReport
    timings_ms: dict[str, float] = field(default_factory=dict)

    @property
    def face(self) -> Face | None:
        return self.detection.subject


@dataclass(frozen=True)
class Extraction:
    analysis: FaceAnalysis  # re-judged with the template utility
    template: Template

    @property
    def utility(self) -> float:
        return self.analysis.quality.measures["utility"]


def _shift(face: Face, dx: float, dy: float) -> Face:
    offset2 = np.array([dx, dy], dtype=np.float32)
    mesh = None
    if face.mesh is not None:
        mesh = face.mesh.copy()
        mesh[:, :2] += offset2
    x, y, w, h = face.box
    return replace(face, box=(x + dx, y + dy, w, h), five_points=face.five_points + offset2, mesh=mesh)


class FacePipeline:
    def __init__(self, config: Config, registry: PackRegistry | None = None, embedder_pack: str | None = None):
        self.config = config
        self.registry = registry or registry_for(config)
        self.embedder_pack: ModelPack = self.registry.get(embedder_pack or config.models.embedder)
        self._landmarker: MediaPipeLandmarker | None = None
        self._detector: YuNetDetector | None = None
        self._detector_loaded = False
        self._embedder = None

    # -- model runtimes, loaded on first use -------------------------------------------
    @property
    def landmarker(self) -> MediaPipeLandmarker:
        if self._landmarker is None:
            pack = self.registry.get(self.config.models.landmarker)
            self._landmarker = MediaPipeLandmarker(self.registry.model_file(pack), self.config.runtime.max_faces)
        return self._landmarker

    @property
    def detector(self) -> YuNetDetector | None:
        """YuNet, when configured as detector or fallback and its file is present."""
        if not self._detector_loaded:
            self._detector_loaded = True
            pack_id = self.config.models.fallback_detector
            if pack_id:
                pack = self.registry.get(pack_id)
                try:
                    model_file = self.registry.model_file(pack)
                except ApplianceError:
                    if self.config.models.detector == "yunet":
                        raise
                    return None
                self._detector = YuNetDetector(
                    model_file, pack.input.get("score_threshold", 0.6), pack.input.get("nms_threshold", 0.3)
                )
        return self._detector

    @property
    def embedder(self):
        if self._embedder is None:
            pack = self.embedder_pack
            self._embedder = create_embedder(pack, self.registry.model_file(pack), self.config.runtime.threads)
        return self._embedder

    def load(self) -> None:
        """Load every model now (services call this at start, before reporting ready)."""
        _ = self.landmarker, self.detector, self.embedder

    @property
    def threshold(self) -> float:
        pack = self.embedder_pack
        return threshold_for(self.config, pack.id, pack.recommended_threshold)

    # -- stages --------------------------------------------------------------------------
    def _landmarks_padded(self, rgb: np.ndarray) -> list[Face]:
        height, width = rgb.shape[:2]
        pad = int(PAD_FRACTION * max(height, width))
        padded = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        return [_shift(f, -pad, -pad) for f in self.landmarker.detect(padded)]

    def _landmarks_in_box(self, rgb: np.ndarray, face: Face) -> Face:
        """Refine a detector face with the mesh found in a crop around it."""
        height, width = rgb.shape[:2]
        x, y, w, h = face.box
        margin = CROP_MARGIN * max(w, h)
        x0, y0 = int(max(0, x - margin)), int(max(0, y - margin))
        x1, y1 = int(min(width, x + w + margin)), int(min(height, y + h + margin))
        found = self._landmarks_padded(rgb[y0:y1, x0:x1])
        if not found:
            return face
        best = max(found, key=lambda f: f.area)
        return replace(_shift(best, x0, y0), score=face.score)

    def detect(self, bgr: np.ndarray) -> Detection:
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        faces: list[Face] = []
        if self.config.models.detector == "mediapipe":
            faces = self.landmarker.detect(rgb) or self._landmarks_padded(rgb)
        if not faces and self.detector is not None:
            faces = [self._landmarks_in_box(rgb, f) for f in self.detector.detect(bgr)]
        size = (bgr.shape[1], bgr.shape[0])
        return Detection(tuple(faces), size, choose_subject(faces, size))

    def analyze(self, bgr: np.ndarray, profile: QualityProfile | None = None) -> FaceAnalysis:
        """Detection, alignment and quality of the subject; no template yet."""
        profile = profile or self.config.quality_verification
        timings: dict[str, float] = {}
        start = time.perf_counter()
        detection = self.detect(bgr)
        timings["landmarks"] = (time.perf_counter() - start) * 1000
        if detection.subject is None:
            report = QualityReport({"faces": 0.0}, (NO_FACE,), 0.0)
            return FaceAnalysis(detection, None, report, timings)
        start = time.perf_counter()
        aligned = self.embedder.aligned_crop(bgr, detection.subject)
        timings["alignment"] = (time.perf_counter() - start) * 1000
        start = time.perf_counter()
        report = quality.judge(quality.measure(detection, aligned, bgr), profile)
        timings["quality"] = (time.perf_counter() - start) * 1000
        return FaceAnalysis(detection, aligned, report, timings)

    def extract(self, analyses: list[FaceAnalysis], profile: QualityProfile | None = None) -> list[Extraction]:
        """Templates for analyses that found a face, batched through the embedder.

        Each analysis comes back re-judged with the template's utility added to its
        measures, under ``profile`` (default: the verification profile).
        """
        profile = profile or self.config.quality_verification
        crops = [a.aligned for a in analyses]
        if any(c is None for c in crops):
            raise ApplianceError(ErrorCode.NO_FACE, "cannot extract a template where no face was found")
        start = time.perf_counter()
        vectors, norms = self.embedder.embed_crops(crops, self.config.matching.flip_fusion)
        elapsed = (time.perf_counter() - start) * 1000 / max(1, len(analyses))
        pack = self.embedder_pack
        reference = pack.utility_reference_norm
        results = []
        for analysis, vector, norm in zip(analyses, vectors, norms):
            utility = float(norm / reference) if reference else float("nan")
            measures = {**analysis.quality.measures, "utility": utility}
            judged = replace(
                analysis,
                quality=quality.judge(measures, profile),
                timings_ms={**analysis.timings_ms, "embedding": elapsed},
            )
            results.append(Extraction(judged, Template(vector, pack.id, pack.version)))
        return results

    def template(self, bgr: np.ndarray, profile: QualityProfile | None = None) -> tuple[FaceAnalysis, Template | None]:
        """Analyse and, when a face is found, extract; the quality verdict is the caller's."""
        analysis = self.analyze(bgr, profile)
        if analysis.aligned is None:
            return analysis, None
        extraction = self.extract([analysis], profile)[0]
        return extraction.analysis, extraction.template

    def close(self) -> None:
        if self._landmarker is not None:
            self._landmarker.close()
            self._landmarker = None

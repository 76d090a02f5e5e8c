"""Run the face pipeline over a labelled dataset once; every evaluation reads the result."""
from __future__ import annotations

import logging
import sys
from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from appliance.capture.images import read_image
from appliance.errors import ApplianceError
from appliance.evaluation.datasets import Sample
from appliance.pipeline import FacePipeline

log = logging.getLogger(__name__)
BATCH = 16


@dataclass
class DatasetTemplates:
    samples: list[Sample]
    vectors: np.ndarray  # (n, d); rows of failed acquisitions are zero
    acquired: np.ndarray  # (n,) bool: a face was found and a template made
    enrollment_ok: np.ndarray  # (n,) bool: passes the enrollment quality profile
    unreadable: int

    @property
    def labels(self) -> np.ndarray:
        return np.array([s.identity for s in self.samples])


def extract_dataset(pipeline: FacePipeline, samples: list[Sample], progress: bool = True) -> DatasetTemplates:
    size = pipeline.embedder_pack.embedding_size or 0
    vectors = np.zeros((len(samples), size), dtype=np.float32)
    acquired = np.zeros(len(samples), dtype=bool)
    enrollment_ok = np.zeros(len(samples), dtype=bool)
    unreadable = 0
    pending: list[tuple[int, object]] = []

    enrollment, verification = pipeline.config.quality_enrollment, pipeline.config.quality_verification

    def flush() -> None:
        # Acquisition needs a face and a template of at least the verification profile's
        # utility; enrollment needs the whole enrollment profile to pass.
        if pending:
            for (row, _), done in zip(pending, pipeline.extract([analysis for _, analysis in pending], enrollment)):
                vectors[row] = done.template.vector
                utility = done.utility
                acquired[row] = not (utility < verification.min_utility)  # NaN: not judged
                enrollment_ok[row] = done.analysis.quality.passed
            pending.clear()

    bar = tqdm(samples, desc="templates", unit="img", disable=not progress or not sys.stderr.isatty(), leave=False)
    for row, sample in enumerate(bar):
        try:
            image = read_image(sample.path)
        except ApplianceError as exc:
            log.warning("%s", exc)
            unreadable += 1
            continue
        analysis = pipeline.analyze(image, enrollment)
        if analysis.aligned is not None:
            pending.append((row, analysis))
        if len(pending) >= BATCH:
            flush()
    flush()
    return DatasetTemplates(samples, vectors, acquired, enrollment_ok, unreadable)

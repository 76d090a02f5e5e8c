"""Aligned face crops of calibration identities, for a quantising converter (``[file.source] calibration``).

An int8 converter sets its activation ranges on real faces, aligned exactly as the pack will
see them at the door; only the calibration split's identities are used, so the split the
figures are reported on (b) never shaped the model.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from appliance import paths
from appliance.capture.images import read_image
from appliance.errors import ApplianceError, ErrorCode
from appliance.evaluation.datasets import scan_identities
from appliance.packs import ModelPack
from appliance.pipeline import FacePipeline
from appliance.vision.alignment import align

IMAGES_PER_IDENTITY = 2  # 50 identities x 2: ranges settle (99.99th percentile) and set-up stays ~5 s


def write_calibration_crops(pipeline: FacePipeline, pack: ModelPack, out: Path) -> int:
    """Save ``pack``'s calibration crops (N x H x W x 3 uint8 BGR) as ``out`` (.npy); returns N."""
    dataset = paths.shared_dir() / pack.source.calibration
    if not dataset.is_dir():
        raise ApplianceError(ErrorCode.FILE_NOT_FOUND,
                             f"{pack.label}: calibration images {dataset} not found (set APPLIANCE_SHARED_DATA)")
    layout = pack.input.get("alignment", "arcface-112")
    taken: dict[str, int] = {}
    crops = []
    for sample in scan_identities(dataset, split=pack.source.calibration_split):
        if taken.get(sample.identity, 0) >= IMAGES_PER_IDENTITY:
            continue
        bgr = read_image(sample.path)
        subject = pipeline.detect(bgr).subject
        if subject is None:
            continue
        crops.append(align(bgr, subject.five_points, layout))
        taken[sample.identity] = taken.get(sample.identity, 0) + 1
    if not crops:
        raise ApplianceError(ErrorCode.DATASET_INVALID, f"{pack.label}: no face found in {dataset}")
    np.save(out, np.stack(crops).astype(np.uint8), allow_pickle=False)
    return len(crops)

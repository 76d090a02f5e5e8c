"""Calibration crops for a quantising converter: real aligned faces of the calibration split only."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest

from appliance import paths
from appliance.errors import ApplianceError, ErrorCode
from appliance.evaluation.calibration_crops import IMAGES_PER_IDENTITY, write_calibration_crops
from appliance.packs import PackRegistry

INT8 = "w600k-mbf-int8"
IDENTITIES = 4  # split a keeps the even-index two
IMAGES_EACH = IMAGES_PER_IDENTITY + 1  # one more than is taken


def _pack_calibrated_on(folder: Path):
    pack = PackRegistry(paths.model_search_path()).get(INT8)
    return dataclasses.replace(pack, source=dataclasses.replace(pack.source, calibration=str(folder)))


def test_crops_come_from_split_a_identities_only(pipeline, faces, tmp_path: Path):
    sources = sorted(p for p in (faces / "celeba-dev").iterdir() if p.is_dir())[:IDENTITIES]
    for index, source in enumerate(sources):
        (tmp_path / "set" / f"id{index}").mkdir(parents=True)
        for image in sorted(source.glob("*.jpg"))[:IMAGES_EACH]:
            shutil.copy(image, tmp_path / "set" / f"id{index}" / image.name)
    out = tmp_path / "crops.npy"
    count = write_calibration_crops(pipeline, _pack_calibrated_on(tmp_path / "set"), out)
    crops = np.load(out, allow_pickle=False)
    assert count == len(crops) == IDENTITIES // 2 * IMAGES_PER_IDENTITY
    assert crops.shape[1:] == (112, 112, 3) and crops.dtype == np.uint8
    assert crops.std() > 0  # real pixels, not a blank fill


def test_missing_calibration_folder_is_named(pipeline, tmp_path: Path):
    with pytest.raises(ApplianceError) as error:
        write_calibration_crops(pipeline, _pack_calibrated_on(tmp_path / "absent"), tmp_path / "crops.npy")
    assert error.value.code is ErrorCode.FILE_NOT_FOUND and "calibration images" in str(error.value)

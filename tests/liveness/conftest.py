"""Liveness fixtures: one checker on the real MiniFASNet pack and the repo's calibration."""
from __future__ import annotations

import pytest

from appliance.capture.images import read_image


@pytest.fixture(scope="session")
def checker(config, pipeline):
    from appliance.liveness.checker import LivenessChecker

    return LivenessChecker(config.liveness, pipeline.registry)


@pytest.fixture(scope="session")
def spoof_samples(shared):
    folder = shared / "data" / "spoof" / "samples"
    return {name: read_image(folder / f"{name}.jpg") for name in ("image_T1", "image_F1", "image_F2")}

"""Liveness configuration checks and loading the calibration file (fitting one: tests/evaluation)."""
from __future__ import annotations


import pytest

from appliance.config import load_config
from appliance.errors import ApplianceError, ErrorCode
from appliance.liveness.fusion import FEATURES, Calibration


@pytest.mark.parametrize("text, key", [
    ('[liveness]\nlevel = "selfie"\n', "liveness.level"),
    ("[liveness]\nchallenge_min = 3\nchallenge_max = 2\n", "liveness.challenge_min"),
    ("[liveness]\nlevels = 1\n", "liveness.levels"),
])
def test_bad_liveness_config_names_the_key(tmp_path, text, key):
    path = tmp_path / "appliance.toml"
    path.write_text(text)
    with pytest.raises(ApplianceError) as error:
        load_config(path)
    assert error.value.code is ErrorCode.CONFIG_INVALID and key in error.value.detail


def test_shipped_calibration_is_marked_synthetic(config):
    from appliance.liveness.checker import calibration_path

    calibration = Calibration.load(calibration_path(config.liveness))
    assert calibration.synthetic is True
    assert calibration.features == FEATURES
    assert 0.0 < calibration.threshold < 1.0 and 0.0 < calibration.model_floor < 0.5


def test_missing_calibration_says_what_to_run(tmp_path):
    with pytest.raises(ApplianceError) as error:
        Calibration.load(tmp_path / "none.json")
    assert error.value.code is ErrorCode.LIVENESS_UNCALIBRATED and "calibrate" in error.value.detail

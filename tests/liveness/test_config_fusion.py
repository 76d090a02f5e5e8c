"""Liveness configuration checks and the calibration file round trip."""
from __future__ import annotations

import json

import numpy as np
import pytest

from appliance.config import load_config
from appliance.errors import ApplianceError, ErrorCode
from appliance.liveness.fusion import FEATURES, Calibration, fit


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


def test_fit_separates_and_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    bona = rng.normal(0, 1, (200, len(FEATURES)))
    attack = rng.normal(0, 1, (200, len(FEATURES)))
    attack[:, 0] -= 3.0  # attacks have a low model logit
    rows = np.vstack([bona, attack])
    labels = np.r_[np.zeros(200), np.ones(200)]
    mean, scale, weights, bias = fit(rows, labels)
    calibration = Calibration(FEATURES, mean, scale, weights, bias, 0.5, 0.05, {"note": "test"}, True)
    path = tmp_path / "c.json"
    calibration.save(path)
    loaded = Calibration.load(path)
    assert loaded == calibration
    scores = loaded.live_scores(rows)
    assert np.mean(scores[:200] >= 0.5) > 0.9 and np.mean(scores[200:] < 0.5) > 0.9
    data = json.loads(path.read_text())
    data["features"] = ["made_up"] * len(FEATURES)
    path.write_text(json.dumps(data))
    with pytest.raises(ApplianceError):
        Calibration.load(path)


def test_missing_calibration_says_what_to_run(tmp_path):
    with pytest.raises(ApplianceError) as error:
        Calibration.load(tmp_path / "none.json")
    assert error.value.code is ErrorCode.LIVENESS_UNCALIBRATED and "calibrate" in error.value.detail

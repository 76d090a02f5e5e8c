"""Fitting the cue fusion (evaluation) and what the runtime loads from it (liveness.fusion)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from appliance.errors import ApplianceError
from appliance.evaluation.pad_calibration import fit
from appliance.liveness.fusion import FEATURES, Calibration


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

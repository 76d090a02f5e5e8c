"""Each liveness model alone at one bona fide rejection: thresholds from one set, rates on another."""
from __future__ import annotations

import numpy as np
import pytest

from appliance.evaluation.pad_models import ModelScores, auc, compare, markdown


def _scores(labels: list[str], values: list[float]) -> ModelScores:
    return ModelScores(labels, {"m": np.asarray(values)}, 0, {"m": [1.0] * len(values)})


def test_threshold_comes_from_the_calibration_bona_fide_and_rates_from_the_test_set():
    calibration = _scores(["bona_fide"] * 20, [i / 20 for i in range(20)])  # 5 % quantile: 0.0475
    test = _scores(["bona_fide"] * 4 + ["print"] * 4 + ["screen"] * 2,
                   [0.01, 0.5, 0.6, 0.9, 0.0, 0.02, 0.3, 0.04, 0.9, 0.01])
    result = compare(calibration, test, target=0.05)
    row = result["models"]["m"]
    assert row["threshold"] == pytest.approx(0.0475)
    assert row["bpcer"] == pytest.approx(0.25)  # 0.01 refused
    assert row["apcer"] == {"print": pytest.approx(0.25), "screen": pytest.approx(0.5)}
    assert result["species"] == ["print", "screen"]
    assert "APCER print" in markdown(result)


def test_auc_is_chance_for_equal_scores_and_one_when_bona_fide_always_score_higher():
    assert auc(np.array([0.5, 0.5]), np.array([0.5])) == pytest.approx(0.5)
    assert auc(np.array([0.9, 0.8]), np.array([0.1, 0.2])) == pytest.approx(1.0)
    assert auc(np.array([0.1]), np.array([0.9])) == pytest.approx(0.0)

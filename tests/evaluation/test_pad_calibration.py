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


def _calibration(threshold: float, grey: Calibration | None = None) -> Calibration:
    n = len(FEATURES)
    return Calibration(FEATURES, (0.0,) * n, (1.0,) * n, (0.0,) * (2 * n), 0.0, threshold, 0.01, {}, True, grey)


def test_calibrating_one_mode_keeps_the_other(tmp_path):
    from appliance.evaluation.pad_calibration import load_existing, merge_modes

    path = tmp_path / "c.json"
    assert load_existing(path) is None
    _calibration(0.4, grey=_calibration(0.7)).save(path)
    existing = load_existing(path)
    colour_only = merge_modes(existing, {"colour": _calibration(0.5)})
    assert colour_only.threshold == 0.5 and colour_only.grey.threshold == 0.7
    grey_only = merge_modes(existing, {"grey": _calibration(0.8)})
    assert grey_only.threshold == 0.4 and grey_only.grey.threshold == 0.8
    both = merge_modes(existing, {"colour": _calibration(0.6), "grey": _calibration(0.9)})
    assert (both.threshold, both.grey.threshold) == (0.6, 0.9)
    with pytest.raises(ApplianceError):
        merge_modes(None, {"grey": _calibration(0.8)})


def test_threshold_at_a_bpcer_target_is_set_out_of_fold():
    """Issue 15's operating point: the threshold refuses the asked share of bona fide, judged by
    fusions that never saw those identities."""
    from pathlib import Path

    from appliance.evaluation.pad import PadItem
    from appliance.evaluation.pad_calibration import calibrate
    from appliance.liveness.fusion import MODEL_LIVE

    rng = np.random.default_rng(1)
    items, rows = [], []
    for index in range(800):
        label = "bona_fide" if index % 2 else ("print" if index % 4 else "screen")
        values = dict(zip(FEATURES, rng.normal(0, 1, len(FEATURES))))
        for name in ("periodicity", "black_level", "fine_contrast"):  # three cues tell attacks apart
            values[name] += 0.0 if label == "bona_fide" else 2.0
        values[MODEL_LIVE] = 0.9
        items.append(PadItem(label, Path(f"id{index % 80:03d}__{index}.png"), ()))
        rows.append([values])
    calibration = calibrate(items, rows, 0.05, 0.01, True, "test", target_bpcer=0.1)
    point = calibration.operating_point
    assert point["target_bpcer"] == 0.1 and point["target_apcer"] is None
    assert 0.07 <= point["bpcer_out_of_fold"] <= 0.13
    assert max(point["apcer_out_of_fold"].values()) < 0.2
    by_apcer = calibrate(items, rows, 0.05, 0.01, True, "test")
    assert by_apcer.operating_point["target_apcer"] == 0.05 and by_apcer.threshold != calibration.threshold

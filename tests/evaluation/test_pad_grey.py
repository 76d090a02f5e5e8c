"""Grey-path calibration and its held-out tables (appliance.evaluation.pad_grey).

The rows are drawn from known distributions so the fitting, thresholding, identity split and
gate accounting can be checked against what they must give; the cue measurement itself and the
routing run on real frames in tests/liveness/test_grey_path.py.
"""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from appliance import paths
from appliance.evaluation import pad_grey
from appliance.evaluation.pad_grey import GreyItem
from appliance.evaluation.synthetic_species import is_held_out
from appliance.liveness import grey_path
from appliance.liveness.fusion import Calibration

IDENTITIES = [f"id{n:03d}" for n in range(60)]
SHIFT = {"print": ("grey_face_black", 4.0), "screen": ("periodicity", 4.0)}  # species -> (cue moved, by sigmas)


def _items(seed: int = 3, gated_bona: int = 0) -> list[GreyItem]:
    rng = np.random.default_rng(seed)
    out = []
    for number, identity in enumerate(IDENTITIES):
        for label in ("bona_fide", "bona_fide", "bona_fide", "print", "screen"):
            values = {name: float(rng.normal()) for name in grey_path.FEATURES}
            values[grey_path.NOISE] = float(rng.uniform(0.5, 1.5))
            values[grey_path.CONTEXT] = 2.0
            if label in SHIFT:
                cue, shift = SHIFT[label]
                values[cue] += shift
            elif number < gated_bona:
                values[grey_path.NOISE] = grey_path.MAX_NOISE + 1  # too dark: refused, never accepted
            source = "yale" if number % 2 else "celeba"
            out.append(GreyItem(source, label, f"{source}:{identity}", is_held_out(identity), values))
    out.append(GreyItem("yale", "bona_fide", "yale:noface", False, None))  # no face: not a row
    return out


def test_calibrate_sets_the_threshold_out_of_fold_and_reports_held_out_identities():
    calibration, rates = pad_grey.calibrate(_items(), bpcer=0.05)
    assert calibration.features == grey_path.FEATURES and calibration.model_floor == 0.0
    assert set(rates["bpcer"]) == {"celeba", "yale"}
    assert all(v <= 0.2 for v in rates["bpcer"].values())  # 5 % out of fold; small held-out sets move it
    assert all(v <= 0.25 for v in rates["apcer"].values())  # 4 sigma apart in one cue
    assert calibration.operating_point["held_out_salt"] == "pad-heldout-v1"
    held = sum(1 for i in _items() if i.held_out and i.label == "bona_fide" and i.values)
    assert sum(rates["bona_fide_held_out"].values()) == held


def test_gated_bona_fide_count_as_refused():
    _, plain = pad_grey.calibrate(_items(), bpcer=0.05)
    _, gated = pad_grey.calibrate(_items(gated_bona=20), bpcer=0.05)
    share = np.mean([v for v in gated["bona_fide_gated"].values()])
    assert share > 0.2
    assert np.mean(list(gated["bpcer"].values())) >= share  # refused by the gate = a bona fide error
    assert not any(plain["bona_fide_gated"].values())


def test_leave_one_out_keeps_the_left_out_species_out_of_fit_and_threshold():
    result = pad_grey.leave_one_out(_items(), bpcer=0.05)
    assert set(result["species"]) == {"print", "screen"}
    for left_out, row in result["species"].items():
        assert row["seen_worst_species"] != left_out
        # an unseen shift in another cue: the fusion fitted on the other species barely catches it
        assert row["unseen_apcer"] > row["seen_apcer_worst"]
    table = pad_grey.markdown(pad_grey.calibrate(_items())[1], result)
    assert "| left-out species |" in table and "BPCER yale" in table


def test_calibrate_command_rewrites_only_the_grey_section(tmp_path):
    rows = tmp_path / "rows.json"
    pad_grey.save_rows(_items(), rows)
    target = tmp_path / "liveness-calibration.json"
    shutil.copy(paths.resource("config/liveness-calibration.json"), target)
    before = json.loads(target.read_text())
    argv = ["calibrate", str(tmp_path / "no-set"), "--rows", str(rows), "--calibration", str(target)]
    assert pad_grey.main(argv) == 0
    after = json.loads(target.read_text())
    assert {k: v for k, v in after.items() if k != "grey"} == {k: v for k, v in before.items() if k != "grey"}
    loaded = Calibration.load(target)
    assert loaded.grey is not None and loaded.grey.features == grey_path.FEATURES
    assert loaded.grey.vetoed({"minifasnet_live": 0.0}) is False  # no model veto in grey


@pytest.mark.parametrize("context_gate", [True, False])
def test_evaluate_command_prints_both_tables(tmp_path, capsys, context_gate):
    rows = tmp_path / "rows.json"
    items = _items()
    items[0] = GreyItem(items[0].source, items[0].label, items[0].identity, items[0].held_out,
                        {**items[0].values, grey_path.CONTEXT: 1.0})  # a face-filling crop
    pad_grey.save_rows(items, rows)
    argv = ["evaluate", str(tmp_path / "no-set"), "--rows", str(rows), "--out", str(tmp_path / "r.json")]
    assert pad_grey.main(argv + ([] if context_gate else ["--no-context-gate"])) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["leave_one_out"]["context_gate"] is context_gate
    assert "Worst unseen species" in capsys.readouterr().out

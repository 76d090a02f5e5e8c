"""PAD evaluation (ISO/IEC 30107-3) on a small synthetic set, and its metrics on known scores."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from appliance.cli.main import main
from appliance.errors import ApplianceError
from appliance.evaluation import pad
from appliance.evaluation.synthetic_set import write_set

KEYS = {"apcer", "bpcer", "acer", "bpcer20", "bpcer100", "thresholds"}


def _scores(bona, **attacks):
    items = [pad.PadItem(pad.BONA_FIDE, None, ()) for _ in bona]
    values = list(bona)
    for species, scores in attacks.items():
        items += [pad.PadItem(species, None, ()) for _ in scores]
        values += list(scores)
    return pad.PadScores(items, np.array(values, dtype=float))


def test_metrics_on_known_scores():
    bona = np.r_[np.linspace(0.6, 1.0, 95), [0.1, 0.2, 0.3, 0.4, np.nan]]  # 4 of 99 below 0.5
    prints = np.r_[np.linspace(0.0, 0.4, 90), np.linspace(0.55, 0.9, 10)]  # 10 % accepted at 0.5
    screens = np.r_[np.linspace(0.0, 0.45, 98), [0.7, 0.8]]  # 2 % accepted
    report = pad.report(_scores(bona, print=prints, screen=screens), 0.5, None)
    assert KEYS <= set(report)
    assert report["apcer"] == {"print": pytest.approx(0.10), "screen": pytest.approx(0.02)}
    assert report["bpcer"] == pytest.approx(4 / 99)
    assert report["acer"] == pytest.approx((0.10 + 4 / 99) / 2)
    assert report["counts"]["no_face"]["bona_fide"] == 1
    # at APCER <= 5 % for every species the print threshold rules: above its 6th highest score
    t20 = report["thresholds"]["apcer_0.05"]
    assert np.count_nonzero(prints >= t20) <= 5 and np.count_nonzero(screens >= t20) <= 5
    assert report["bpcer20"] == pytest.approx(np.count_nonzero(bona[np.isfinite(bona)] < t20) / 99)
    low, high = report["detail"]["apcer"]["print"]["ci95"]
    assert low < 0.10 < high
    assert report["synthetic"] is False


def test_layout_is_checked(tmp_path):
    (tmp_path / "bona_fide").mkdir()
    with pytest.raises(ApplianceError):
        pad.scan(tmp_path)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory, faces):
    """12 bona fide celeba-dev images of split b and 6 synthetic attacks per species, plus
    one burst item to exercise frame folders."""
    source = tmp_path_factory.mktemp("src")
    for identity in sorted((faces / "celeba-dev").iterdir())[1:8:2]:
        target = source / identity.name
        target.mkdir()
        for image in sorted(identity.glob("*.jpg"))[:3]:
            shutil.copy(image, target / image.name)
    out = tmp_path_factory.mktemp("pad")
    write_set(source, out, per_species=6, seed=1)
    write_set(source, out / "bursts", per_species=1, species=("print",), seed=2, frames=4)
    shutil.move(str(next((out / "bursts" / "attack" / "print").iterdir())), out / "attack" / "print" / "burst-0")
    shutil.rmtree(out / "bursts")
    return out


def test_eval_pad_command(small_set, tmp_path, capsys):
    out = tmp_path / "report.json"
    plot = tmp_path / "det.png"
    assert main(["eval", "pad", str(small_set), "--out", str(out), "--plot", str(plot)]) == 0
    report = json.loads(out.read_text())
    assert KEYS <= set(report)
    assert report["synthetic"] is True and "SYNTHETIC" in report["note"]
    assert set(report["apcer"]) == {"print", "screen", "replay"}
    assert report["counts"]["bona_fide"] + report["counts"]["no_face"]["bona_fide"] == 12
    assert report["counts"]["attack"]["print"] + report["counts"]["no_face"]["print"] == 7  # 6 images + 1 burst
    assert all(0.0 <= v <= 1.0 for v in report["apcer"].values())
    assert report["bpcer"] <= 0.25  # real celeba faces: most are accepted
    assert max(report["apcer"].values()) <= 0.5  # and most synthetic attacks are caught
    assert plot.stat().st_size > 0
    assert "SYNTHETIC attacks" in capsys.readouterr().out


def test_calibrate_writes_a_loadable_calibration(small_set, tmp_path):
    from appliance.liveness.fusion import Calibration

    target = tmp_path / "calibration.json"
    assert main(["liveness", "calibrate", str(small_set), "--out", str(target)]) == 0
    calibration = Calibration.load(target)
    assert calibration.synthetic is True and 0.0 < calibration.threshold < 1.0
    assert calibration.operating_point["target_apcer"] == 0.05


def test_collect_writes_the_layout_from_a_frame_source(tmp_path, faces, capsys):
    """Camera-domain collection, with a folder replay standing in for the camera."""
    camera = tmp_path / "camera"
    camera.mkdir()
    for index, image in enumerate(sorted((faces / "yale" / "subject03").glob("*.png"))[:6]):
        shutil.copy(image, camera / f"{index:02d}.png")
    out = tmp_path / "captures"
    assert main(["liveness", "collect", "--source", str(camera), "--out", str(out), "--label", "attack/print",
                 "--count", "2", "--frames", "3", "--pause", "0"]) == 0
    bursts = sorted((out / "attack" / "print").iterdir())
    assert len(bursts) == 2 and all(len(list(b.glob("frame_*.png"))) == 3 for b in bursts)
    assert main(["liveness", "collect", "--source", str(camera), "--out", str(out), "--label", "selfies"]) != 0

"""Evaluation commands end to end on the shared datasets (real models, real images)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.evaluation.verification import CONTRACT_KEYS

FMR_KEYS = {"1e-2", "1e-3", "1e-4"}


def appliance(*args: str) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                            env=dict(os.environ), timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


def verification_report(tmp_path: Path, dataset: Path, *extra: str) -> dict:
    out, plot = tmp_path / "report.json", tmp_path / "det.png"
    appliance("eval", "verification", str(dataset), "--out", str(out), "--plot", str(plot), *extra)
    report = json.loads(out.read_text())
    for key in CONTRACT_KEYS:
        assert key in report
    assert set(report["fnmr_at_fmr"]) == FMR_KEYS == set(report["threshold_at_fmr"])
    assert {"pack", "version", "licence"} <= set(report["model"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return report


def test_att_orl_verification(tmp_path, faces):
    report = verification_report(tmp_path, faces / "att-orl")
    assert report["images"] == 400 and report["identities"] == 40
    assert report["genuine_pairs"] + report["impostor_pairs"] == 400 * 399 // 2
    assert report["fnmr_at_fmr"]["1e-3"] <= 0.03
    point = report["operating_points"]["1e-3"]
    low, high = point["fnmr_ci95"]
    assert low <= point["fnmr"] <= high
    assert report["model"]["pack"] == "w600k-mbf" and "non-commercial" in report["model"]["licence"]


@pytest.mark.slow
def test_celeba_dev_verification(tmp_path, faces):
    report = verification_report(tmp_path, faces / "celeba-dev")
    assert report["images"] == 2145 and report["identities"] == 100
    assert report["fta_rate"] <= 0.02
    assert report["fnmr_at_fmr"]["1e-3"] <= 0.06
    assert report["impostor_pairs"] > 1_000_000


def test_identification_and_calibration(tmp_path, faces):
    out = tmp_path / "ident.json"
    appliance("eval", "identification", str(faces / "att-orl"), "--out", str(out))
    report = json.loads(out.read_text())
    assert report["gallery_identities"] == 28 and report["non_mated_searches"] == 120
    assert report["rank1_rate"] > 0.9
    assert report["fnir_at_fpir"]["1e-2"] is not None
    assert report["fnir_at_fpir"]["1e-3"] is None  # 120 non-mated searches cannot estimate 1e-3

    config = tmp_path / "site.toml"
    config.write_text("# site\n[matching.thresholds]\n")
    result = appliance("--config", str(config), "calibrate", str(faces / "att-orl"), "--split", "a")
    assert "written to" in result.stdout
    assert "w600k-mbf = 0." in config.read_text() and "split a" in config.read_text()

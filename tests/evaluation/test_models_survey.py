"""The model survey: split-a calibration reported on split b, enrollment templates, the table."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from appliance.evaluation import models_survey, verification
from appliance.evaluation.datasets import Sample
from appliance.evaluation.runner import DatasetTemplates


def _templates(vectors: list[list[float]], labels: list[str], enrollment_ok: list[bool] | None = None):
    data = np.array(vectors, dtype=np.float32)
    data /= np.linalg.norm(data, axis=1, keepdims=True)
    samples = [Sample(label, Path(f"{label}/{i}.jpg")) for i, label in enumerate(labels)]
    ok = np.array(enrollment_ok if enrollment_ok is not None else [True] * len(labels))
    return DatasetTemplates(samples, data, np.ones(len(labels), bool), ok, 0)


def test_enrollment_template_is_the_mean_of_the_first_images_and_gating_skips_failures():
    data = _templates([[1, 0], [0, 1], [1, 1], [-1, 0]], ["p", "p", "p", "q"], [False, True, True, True])
    one = models_survey.template_protocol(data, images=1, gate=False)
    # p enrolls image 0 ([1, 0]); probes 1 and 2 score 0 and 0.707 against it; q has no probe
    assert sorted(np.round(one.genuine, 3)) == [0.0, 0.707]
    gated = models_survey.template_protocol(data, images=2, gate=True)
    # p enrolls images 1 and 2 (0 fails the profile) and keeps image 0 as its probe
    assert np.allclose(gated.genuine, [np.dot([1, 0], [0.383, 0.924])], atol=1e-3)
    assert len(gated.impostor) == 0  # q has no probe left, so it enrolls no template
    empty = models_survey.template_protocol(_templates([[1, 0]], ["p"], [False]), images=1, gate=True)
    assert len(empty.genuine) == len(empty.impostor) == 0


def test_thresholds_come_from_the_calibration_split():
    rng = np.random.default_rng(1)
    calibration = verification.VerificationScores(rng.normal(0.8, 0.05, 500), rng.normal(0.0, 0.1, 5000))
    report = verification.VerificationScores(rng.normal(0.7, 0.05, 500), rng.normal(0.2, 0.1, 5000))
    rates = models_survey.calibrated_rates(calibration, report)
    # the report split's impostors score higher: the threshold set on split a lets more through
    assert rates["1e-2"]["fmr"] > 1e-2 * 5
    assert rates["1e-4"] is None  # 5,000 impostor pairs cannot set a 1e-4 point


def test_table_shows_the_chain_and_its_caveat():
    point = {"fnmr": 0.1731, "fmr": 3.7e-3}
    link = {"licence": "CC0-1.0 / public domain (author's grant)", "source": "s", "commercial": "yes", "note": ""}
    row = {"pack": "p", "size_mb": 22.5, "ms_per_face": {"1": 40.0, "2": None}, "fta_rate": 0.0, "fte_rate": 0.14,
           "eer": 0.0574, "calibrated_on_a": {"1e-2": point, "1e-3": point, "1e-4": None}, "commercial_use": True,
           "chain": {"code": link, "weights": link, "training_data": {**link, "licence": "none stated: VGG Face",
                                                                    "commercial": "unclear"}},
           "chain_verdict": "unclear"}
    line = models_survey.markdown_table({"packs": [row]}).splitlines()[-1]
    assert "| 17.31 % | 17.31 % | n/a | 3.7e-03 |" in line and "| 40.0 | n/a |" in line
    assert "weights: CC0-1.0 (yes); data: none stated (unclear)" in line and "yes (chain: unclear)" in line


def test_eval_models_writes_the_table(tmp_path: Path, faces: Path):
    dataset = tmp_path / "faces"
    for identity in sorted(p for p in (faces / "celeba-dev").iterdir() if p.is_dir())[:4]:
        (dataset / identity.name).mkdir(parents=True)
        for image in sorted(identity.glob("*.jpg"))[:3]:
            (dataset / identity.name / image.name).symlink_to(image)
    out = tmp_path / "report"
    subprocess.run([sys.executable, "-m", "appliance", "eval", "models", str(dataset), "--packs", "w600k-mbf",
                    "--out", str(out)], check=True, capture_output=True, text=True)
    result = json.loads((out / "models.json").read_text())
    row = result["packs"][0]
    assert row["pack"] == "w600k-mbf" and not row["commercial_use"] and row["chain_verdict"] == "no"
    assert row["ms_per_face"]["1"] > 0 and row["ms_per_face"]["2"] > 0 and row["size_mb"] > 1
    assert row["genuine_pairs"] == 6 and result["template_ablation"] == {}
    assert "| w600k-mbf |" in (out / "models.md").read_text()

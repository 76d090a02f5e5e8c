"""Evaluation commands end to end on the shared datasets (real models, real images).

Every command of the module starts at once, in its own process (``started``), and each test
waits for its own: one command's single-threaded stretches (model loading, face detection)
leave the other core to the rest, so the module takes about the longest command, not the sum."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.errors import ErrorCode
from appliance.evaluation.verification import CONTRACT_KEYS

FMR_KEYS = {"1e-2", "1e-3", "1e-4"}
COMMAND_TIMEOUT_S = 900
ATT_ORL, CELEBA, IDENTIFICATION, CALIBRATION = "att-orl", "celeba-dev", "identification", "calibration"
TOO_FEW = "calibration-too-few"  # 2 identities x 3 images: 9 impostor pairs, 1,000 needed at FMR 1e-3
ONE_IDENTITY = "one-identity"  # 3 images of one person: no impostor pair, so no EER
# which test reads which command: only the commands of the selected tests are started
NEEDED_BY = {"test_att_orl_verification": (ATT_ORL,), "test_celeba_dev_verification": (CELEBA,),
             "test_identification_and_calibration": (IDENTIFICATION, CALIBRATION),
             "test_calibration_refuses_too_few_impostor_pairs": (TOO_FEW,),
             "test_a_rate_nothing_estimates_is_null_in_strict_json": (ONE_IDENTITY,)}


class Started:
    """One ``appliance`` command running in the background (its output to files, so a full pipe
    never stalls it before its test reads it); ``result`` waits for it."""

    def __init__(self, folder: Path, *args: str):
        self.stdout, self.stderr = folder / "stdout.txt", folder / "stderr.txt"
        with self.stdout.open("w") as out, self.stderr.open("w") as err:
            self.process = subprocess.Popen([sys.executable, "-m", "appliance", *args], stdout=out, stderr=err,
                                            text=True, env=dict(os.environ))

    def result(self, expect: int = 0) -> subprocess.CompletedProcess:
        self.process.wait(timeout=COMMAND_TIMEOUT_S)
        stdout, stderr = self.stdout.read_text(), self.stderr.read_text()
        assert self.process.returncode == expect, stderr[-2000:]
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, stdout, stderr)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


def _verification(folder: Path, dataset: Path) -> tuple[str, ...]:
    return ("eval", "verification", str(dataset), "--out", str(folder / "report.json"), "--plot",
            str(folder / "det.png"))


@pytest.fixture(scope="module")
def started(request, tmp_path_factory, faces) -> dict:
    selected = {item.originalname for item in request.session.items if getattr(item, "module", None) is request.module}
    wanted = {command for test in selected for command in NEEDED_BY.get(test, ())}
    folders = {command: tmp_path_factory.mktemp(command) for command in wanted}
    for command in {CALIBRATION, TOO_FEW} & wanted:
        (folders[command] / "site.toml").write_text("# site\n[matching.thresholds]\n")
    for command, identities in ((TOO_FEW, 2), (ONE_IDENTITY, 1)):
        if command in wanted:
            for identity in sorted(p for p in (faces / "att-orl").iterdir() if p.is_dir())[:identities]:
                (folders[command] / "faces" / identity.name).mkdir(parents=True)
                for image in sorted(identity.glob("*.pgm"))[:3]:
                    (folders[command] / "faces" / identity.name / image.name).symlink_to(image)
    commands = {
        ATT_ORL: lambda: _verification(folders[ATT_ORL], faces / "att-orl"),
        CELEBA: lambda: _verification(folders[CELEBA], faces / "celeba-dev"),
        IDENTIFICATION: lambda: ("eval", "identification", str(faces / "att-orl"), "--out",
                                 str(folders[IDENTIFICATION] / "ident.json")),
        CALIBRATION: lambda: ("--config", str(folders[CALIBRATION] / "site.toml"), "calibrate",
                              str(faces / "att-orl"), "--split", "a"),
        TOO_FEW: lambda: ("--config", str(folders[TOO_FEW] / "site.toml"), "calibrate",
                          str(folders[TOO_FEW] / "faces")),
        ONE_IDENTITY: lambda: ("eval", "verification", str(folders[ONE_IDENTITY] / "faces")),
    }
    running = {}
    try:
        for command in sorted(wanted, key=list(commands).index):
            running[command] = Started(folders[command], *commands[command]())
        yield {command: (process, folders[command]) for command, process in running.items()}
    finally:
        for process in running.values():
            process.stop()


def verification_report(started: dict, command: str) -> dict:
    process, folder = started[command]
    process.result()
    out, plot = folder / "report.json", folder / "det.png"
    report = json.loads(out.read_text())
    for key in CONTRACT_KEYS:
        assert key in report
    assert set(report["fnmr_at_fmr"]) == FMR_KEYS == set(report["threshold_at_fmr"])
    assert {"pack", "version", "licence"} <= set(report["model"])
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    return report


def test_att_orl_verification(started):
    report = verification_report(started, ATT_ORL)
    assert report["images"] == 400 and report["identities"] == 40
    assert report["genuine_pairs"] + report["impostor_pairs"] == 400 * 399 // 2
    assert report["fnmr_at_fmr"]["1e-3"] <= 0.03
    point = report["operating_points"]["1e-3"]
    low, high = point["fnmr_ci95"]
    assert low <= point["fnmr"] <= high
    assert report["model"]["pack"] == "w600k-mbf" and "non-commercial" in report["model"]["licence"]


@pytest.mark.slow
def test_celeba_dev_verification(started):
    report = verification_report(started, CELEBA)
    assert report["images"] == 2145 and report["identities"] == 100
    assert report["fta_rate"] <= 0.02
    assert report["fnmr_at_fmr"]["1e-3"] <= 0.06
    assert report["impostor_pairs"] > 1_000_000


def test_identification_and_calibration(started):
    process, folder = started[IDENTIFICATION]
    process.result()
    report = json.loads((folder / "ident.json").read_text())
    assert report["gallery_identities"] == 28 and report["non_mated_searches"] == 120
    assert report["rank1_rate"] > 0.9
    assert report["fnir_at_fpir"]["1e-2"] is not None
    assert report["fnir_at_fpir"]["1e-3"] is None  # 120 non-mated searches cannot estimate 1e-3

    process, folder = started[CALIBRATION]
    result = process.result()
    config = folder / "site.toml"
    assert "written to" in result.stdout
    assert "w600k-mbf = 0." in config.read_text() and "split a" in config.read_text()


def test_calibration_refuses_too_few_impostor_pairs(started):
    """A threshold from 9 impostor pairs would be 'FMR 0 in 9', not FMR 1e-3: nothing is written."""
    process, folder = started[TOO_FEW]
    result = process.result(expect=ErrorCode.DATASET_INVALID.exit_status)
    assert "9 impostor pairs are too few to calibrate at FMR 0.001: at least 1,000 are needed" in result.stderr
    assert (folder / "site.toml").read_text() == "# site\n[matching.thresholds]\n"


def test_a_rate_nothing_estimates_is_null_in_strict_json(started):
    """No impostor pair: the EER and the FMR's interval are null; the bare NaN json.dumps writes
    by default is not JSON (jq and browsers refuse the whole report)."""
    process, _ = started[ONE_IDENTITY]

    def refuse(constant: str):
        raise AssertionError(f"{constant} in the report")

    report = json.loads(process.result().stdout, parse_constant=refuse)
    assert report["impostor_pairs"] == 0 and report["genuine_pairs"] == 3
    assert report["eer"] is None and report["fnmr_at_fmr"]["1e-3"] is None
    assert report["at_configured_threshold"]["fmr_ci95"] == [None, None]

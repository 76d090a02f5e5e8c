"""The command line: one-line errors, meaningful exit codes, no tracebacks."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from appliance.errors import ErrorCode


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    return subprocess.run(
        [sys.executable, "-m", "appliance", *args], capture_output=True, text=True, env=env, timeout=300
    )


def assert_one_line_error(result: subprocess.CompletedProcess, code: ErrorCode) -> None:
    assert result.returncode == code.exit_status != 0
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"E{code.number}" in errors[0]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    corrupt = folder / "corrupt.jpg"
    good = cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes()
    corrupt.write_bytes(good[: len(good) // 3])  # a truncated JPEG
    text = folder / "notes.png"
    text.write_text("this is not an image")
    blank = folder / "wall.png"
    cv2.imwrite(str(blank), np.full((240, 320, 3), 128, np.uint8))
    return {"corrupt": corrupt, "text": text, "blank": blank, "missing": folder / "nope.jpg"}


@pytest.mark.parametrize(
    "name, code",
    [
        ("corrupt", ErrorCode.IMAGE_UNREADABLE),
        ("text", ErrorCode.IMAGE_UNREADABLE),
        ("blank", ErrorCode.NO_FACE),
        ("missing", ErrorCode.FILE_NOT_FOUND),
    ],
)
def test_bad_inputs_give_one_line_errors(bad_files, name, code):
    assert_one_line_error(run("detect", str(bad_files[name])), code)


def test_compare_blank_and_face(bad_files, faces):
    face = next((faces / "celeba-dev").iterdir()) / "000678.jpg"
    face = face if face.exists() else sorted(next((faces / "celeba-dev").iterdir()).glob("*.jpg"))[0]
    assert_one_line_error(run("compare", str(face), str(bad_files["blank"])), ErrorCode.NO_FACE)


def test_compare_verdicts_and_exit_codes(faces):
    same = sorted((faces / "att-orl" / "s5").glob("*.pgm"))
    other = faces / "att-orl" / "s9" / "1.pgm"
    yes = run("compare", str(same[0]), str(same[1]))
    assert yes.returncode == 0 and yes.stdout.strip() == "same person"
    assert "similarity" not in yes.stdout  # no score without --debug
    no = run("compare", str(same[0]), str(other), "--debug")
    assert no.returncode == 1 and no.stdout.startswith("different people") and "similarity" in no.stdout


def test_quality_json_and_guidance(faces):
    result = run("quality", str(faces / "yale" / "subject03" / "sleepy.png"), "--json")
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert not report["passed"]
    assert any(i["code"] == "eyes_closed" and i["guidance"] == "open your eyes" for i in report["issues"])


def test_models_list_shows_licences():
    result = run("models", "list")
    assert result.returncode == 0
    line = next(row for row in result.stdout.splitlines() if row.startswith("w600k-mbf"))
    assert "NO" in line and "non-commercial" in line


def test_config_check_names_a_bad_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[runtime]\nthreds = 2\n")
    result = run("--config", str(bad), "config", "check")
    assert_one_line_error(result, ErrorCode.CONFIG_INVALID)
    assert "runtime.threds" in result.stderr
    assert run("config", "check").returncode == 0

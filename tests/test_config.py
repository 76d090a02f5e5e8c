"""Typed configuration: bad keys and values name themselves; calibration keeps comments."""
from __future__ import annotations

from pathlib import Path

import pytest

from appliance.config import load_config, save_threshold, threshold_for
from appliance.errors import ApplianceError, ErrorCode


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "appliance.toml"
    path.write_text(text)
    return path


def test_default_file_loads():
    config = load_config()
    assert config.models.embedder == "w600k-mbf"
    assert config.quality_enrollment.min_inter_eye_px > config.quality_verification.min_inter_eye_px


@pytest.mark.parametrize(
    "text, key",
    [
        ("[models]\nembeder = 'x'\n", "models.embeder"),
        ("[runtime]\nthreads = 'two'\n", "runtime.threads"),
        ("[models]\ndetector = 'haar'\n", "models.detector"),
        ("[quality_enrollment]\nmin_inter_eye_px = true\n", "quality_enrollment.min_inter_eye_px"),
        ("[matching.thresholds]\nw600k-mbf = 3.0\n", "matching.thresholds.w600k-mbf"),
        ("[models\n", "appliance.toml"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, text: str, key: str):
    with pytest.raises(ApplianceError) as error:
        load_config(write(tmp_path, text))
    assert error.value.code is ErrorCode.CONFIG_INVALID
    assert key in str(error.value)


def test_save_threshold_keeps_comments_and_is_used(tmp_path: Path):
    path = write(tmp_path, "# site config\n[runtime]\nthreads = 1 # small Pi\n")
    save_threshold(path, "w600k-mbf", 0.3123456789, "calibrated here")
    text = path.read_text()
    assert "# site config" in text and "# small Pi" in text and "calibrated here" in text
    config = load_config(path)
    assert threshold_for(config, "w600k-mbf", 0.25) == pytest.approx(0.312346)
    assert threshold_for(config, "other", 0.25) == 0.25
    with pytest.raises(ApplianceError):
        threshold_for(config, "other", None)

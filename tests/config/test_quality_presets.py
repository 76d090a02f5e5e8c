"""Named quality profiles: the ISO/IEC 19794-5 enrollment preset meets the compliance rows
F-QA-2 and F-QA-3 as the compliance report judges them; a file's own keys win."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from appliance.compliance.checks import CHECKS, config_part
from appliance.compliance.requirements import MET, NOT_MET, load_requirements
from appliance.config import Config, QualityProfile, load_config, validate
from appliance.config.quality_presets import APPLIANCE_ENROLLMENT, ISO_19794_5_ENROLLMENT, PRESETS, expand_presets
from appliance.config.tables import quality_preset
from appliance.errors import ApplianceError, ErrorCode

STANDARD_ROWS = ("F-QA-2", "F-QA-3")  # enrollment eye distance and pose (ISO/IEC 19794-5:2011)


def judged(config: Config) -> dict[str, str]:
    rows = {r.id: r for r in load_requirements(frozenset(CHECKS)).rows}
    return {rid: config_part(rows[rid], SimpleNamespace(config=config)).status for rid in STANDARD_ROWS}


def test_the_iso_preset_meets_the_standard_rows_and_the_old_profile_does_not():
    iso = Config(quality_enrollment=quality_preset(ISO_19794_5_ENROLLMENT))
    assert judged(iso) == dict.fromkeys(STANDARD_ROWS, MET)
    old = Config(quality_enrollment=quality_preset(APPLIANCE_ENROLLMENT))
    assert judged(old) == dict.fromkeys(STANDARD_ROWS, NOT_MET)
    assert quality_preset(APPLIANCE_ENROLLMENT) == QualityProfile(preset=APPLIANCE_ENROLLMENT)  # the old defaults


def test_a_file_selects_a_preset_and_its_own_keys_win(tmp_path):
    path = tmp_path / "appliance.toml"
    path.write_text('[quality_enrollment]\npreset = "iso19794-5-enrollment"\nmin_inter_eye_px = 120.0\n')
    profile = load_config(path).quality_enrollment
    assert profile.preset == ISO_19794_5_ENROLLMENT and profile.min_inter_eye_px == 120.0
    assert (profile.max_yaw_deg, profile.max_pitch_deg, profile.max_roll_deg) == (5.0, 5.0, 8.0)
    assert profile.min_sharpness == QualityProfile().min_sharpness  # keys no preset names keep the table default
    assert validate(load_config(path)).quality_enrollment == profile  # expansion is idempotent


def test_an_unknown_preset_is_refused_with_the_names(tmp_path):
    path = tmp_path / "appliance.toml"
    path.write_text('[quality_enrollment]\npreset = "iso"\n')
    with pytest.raises(ApplianceError) as error:
        load_config(path)
    assert error.value.code is ErrorCode.CONFIG_INVALID
    assert error.value.detail.startswith("quality_enrollment.preset:") and ISO_19794_5_ENROLLMENT in error.value.detail


def test_expansion_leaves_other_tables_and_unnamed_profiles_alone():
    data = {"quality_verification": {"min_inter_eye_px": 20.0}, "models": {"embedder": "x"}}
    assert expand_presets(data) == data
    assert set(PRESETS) == {ISO_19794_5_ENROLLMENT, APPLIANCE_ENROLLMENT}

"""Named quality profiles: ``[quality_enrollment] preset = "iso19794-5-enrollment"``.

A preset fills the keys of a ``QualityProfile`` table the file leaves out; a key the file
sets wins over the preset's. Two presets:

* ``iso19794-5-enrollment`` - the enrollment image requirements the standard cites
  (``/work/shared/spec/requirements.md`` F-QA-2 and F-QA-3): inter-eye distance at least
  90 px (ISO/IEC 19794-5:2011, full-frontal image; 120 px preferred), yaw and pitch within
  5 degrees and roll within 8 (ISO/IEC 19794-5:2011 clause 7.2.2, the ICAO portrait pose).
  A kiosk camera must deliver it: see ``docs/enrollment.md`` "Camera resolution".
* ``appliance-enrollment`` - the looser profile the project shipped before (30 px, yaw and
  pitch 30, roll 25), kept by name so evaluations can compare the two (``appliance eval
  transaction`` reports the failure-to-enrol rate under each).

Pure dictionaries: ``tables`` builds the profile; this module imports no table.
"""
from __future__ import annotations

from typing import Any

ISO_19794_5_ENROLLMENT = "iso19794-5-enrollment"
APPLIANCE_ENROLLMENT = "appliance-enrollment"
PRESET_KEY = "preset"
PROFILE_SECTIONS = ("quality_enrollment", "quality_verification")

# ISO/IEC 19794-5:2011: full-frontal minimum inter-eye distance, and the pose of clause 7.2.2
ISO_MIN_INTER_EYE_PX = 90.0
ISO_MAX_YAW_DEG = 5.0
ISO_MAX_PITCH_DEG = 5.0
ISO_MAX_ROLL_DEG = 8.0

PRESETS: dict[str, dict[str, float]] = {
    ISO_19794_5_ENROLLMENT: {
        "min_inter_eye_px": ISO_MIN_INTER_EYE_PX, "max_yaw_deg": ISO_MAX_YAW_DEG,
        "max_pitch_deg": ISO_MAX_PITCH_DEG, "max_roll_deg": ISO_MAX_ROLL_DEG,
    },
    APPLIANCE_ENROLLMENT: {"min_inter_eye_px": 30.0, "max_yaw_deg": 30.0, "max_pitch_deg": 30.0,
                           "max_roll_deg": 25.0},
}
PRESET_NAMES = tuple(PRESETS)


def expand_presets(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` (a parsed file) with each profile section's preset values under its own keys.

    An unknown preset name is left for the table's check to refuse with the allowed names."""
    out = dict(data)
    for section in PROFILE_SECTIONS:
        table = out.get(section)
        if isinstance(table, dict) and table.get(PRESET_KEY) in PRESETS:
            out[section] = {**PRESETS[table[PRESET_KEY]], **table}
    return out

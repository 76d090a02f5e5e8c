"""Typed configuration: bad keys and values name themselves; every key has a type, bounds where
they apply and a description; calibration keeps comments."""
from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

import pytest

from appliance.config import (
    Config,
    DeviceConfig,
    LivenessConfig,
    RuntimeConfig,
    load_config,
    save_threshold,
    schema,
    threshold_for,
    validate,
    with_overrides,
)
from appliance.errors import ApplianceError, ErrorCode
from diskkit import fill, small_disk


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "appliance.toml"
    path.write_text(text)
    return path


def refused(tmp_path: Path, text: str) -> str:
    with pytest.raises(ApplianceError) as error:
        load_config(write(tmp_path, text))
    assert error.value.code is ErrorCode.CONFIG_INVALID
    return error.value.detail


def test_default_file_loads():
    config = load_config()
    assert config.models.embedder == "w600k-mbf"
    assert config.quality_enrollment.min_inter_eye_px > config.quality_verification.min_inter_eye_px


def test_the_defaults_are_valid_and_an_empty_file_gives_them(tmp_path: Path):
    assert validate(Config()) == Config()
    assert dataclasses.replace(load_config(write(tmp_path, "")), source=None) == Config()


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
    assert key in refused(tmp_path, text)


@pytest.mark.parametrize("text, message", [
    # types: strict, never converted
    ("[runtime]\nthreads = 'two'\n", "runtime.threads: expected an integer, got 'two'"),
    ("[runtime]\nthreads = 2.0\n", "runtime.threads: expected an integer, got 2.0"),
    ("[device]\nfps = '5'\n", "device.fps: expected a number, got '5'"),
    ("[matching]\nflip_fusion = 1\n", "matching.flip_fusion: expected true or false, got 1"),
    ("[ops]\nbroker_host = 3\n", "ops.broker_host: expected a string, got 3"),
    ("[models]\nsearch_path = 'a'\n", "models.search_path: expected a list"),
    ("[models]\nsearch_path = ['a', 1]\n", "models.search_path[1]: expected a string, got 1"),
    ("runtime = 3\n", "runtime: expected a table, got int"),
    ("[security]\nroles = ['x']\n", "security.roles: [security.roles] was removed: roles belong to appliance "
                                     "accounts now, not to OS users"),
    # bounds
    ("[runtime]\nthreads = 0\n", "runtime.threads: must be between 1 and 64, got 0"),
    ("[runtime]\nthreads = 65\n", "runtime.threads: must be between 1 and 64, got 65"),
    ("[runtime]\nmax_faces = 0\n", "runtime.max_faces: must be at least 1, got 0"),
    ("[ops]\nbroker_port = 70000\n", "ops.broker_port: must be between 1 and 65535"),
    ("[ops]\nsession_idle_s = 0\n", "ops.session_idle_s: must be positive, got 0"),
    ("[ops]\nbackup_keep = 0\n", "ops.backup_keep: must be at least 1"),
    ("[security]\naudit_retention_days = 30\n", "security.audit_retention_days: must be at least 1096, got 30"),
    ("[security]\nreplay_window_s = -1.0\n", "security.replay_window_s: must be positive"),
    ("[offline]\nsync_wait_ms = -1\n", "offline.sync_wait_ms: must not be negative, got -1"),
    ("[matcher]\nrequest_gather_ms = 250.0\n", "matcher.request_gather_ms: must be between 0.0 and 100.0"),
    ("[offline]\noutbox_window = 0\n", "offline.outbox_window: must be at least 1"),
    ("[offline]\ndigest_every_s = 0\n", "offline.digest_every_s: must be positive"),
    ("[device]\nfps = -1\n", "device.fps: must not be negative, got -1"),
    ("[liveness]\nburst_frames = 0\n", "liveness.burst_frames: must be at least 1"),
    ("[liveness]\nchallenge_max = 4\n", "liveness.challenge_max: must be between 1 and 3, got 4"),
    ("[liveness]\nchallenge_step_timeout_s = 0\n", "liveness.challenge_step_timeout_s: must be positive"),
    ("[matching.thresholds]\nw600k-mbf = -1.5\n", "matching.thresholds.w600k-mbf: must be between -1.0 and 1.0"),
    ("[quality_enrollment]\nmax_eye_closure = 1.5\n",
     "quality_enrollment.max_eye_closure: must be between 0.0 and 1.0"),
    # allowed values
    ("[models]\ndetector = 'haar'\n", "models.detector: 'haar' is not one of ('mediapipe', 'yunet')"),
    ("[liveness]\nlevel = 'paranoid'\n", "liveness.level: 'paranoid' is not one of ('off', 'passive', "
                                         "'passive+motion', 'passive+stepup', 'active')"),
    ("[offline]\nmode = 'sometimes'\n", "offline.mode: 'sometimes' is not one of ('central', 'local', 'local-first')"),
    ("[security]\nkey_provider = 'vault'\n", "security.key_provider: 'vault' is not one of ('file', 'env')"),
    ("[security.roles]\nbob = 'operator'\n", "security.roles: [security.roles] was removed"),
    ("[ops]\nlog_level = 'loud'\n", "ops.log_level: 'loud' is not one of ('debug', 'info', 'warning', 'error', "),
    ("[device]\nname = 'door one'\n", "device.name: 'door one' is not a valid identity"),
    ("[matcher]\nname = ''\n", "matcher.name: '' is not a valid identity"),
    ("[device]\nsource = '  '\n", "device.source: empty: give picamera2"),
    # rules joining two keys name the first
    ("[liveness]\nchallenge_min = 3\nchallenge_max = 2\n",
     "liveness.challenge_min: need 1 <= challenge_min <= challenge_max <= 3"),
    ("[quality_verification]\nmin_brightness = 240.0\n",
     "quality_verification.min_brightness: need min_brightness <= max_brightness"),
    # unknown keys name the allowed ones
    ("[device]\nrelay = 17\n",
     "device.relay: unknown key; allowed: camera_binding, cool_down_s, enroll_capture, fps, loop, name, "
     "relay_active_high, relay_pin, source"),
    ("[doors]\nx = 1\n", "doors: unknown key; allowed: access, console, device, door_io, door_mode, kiosk, "
                         "liveness, matcher, matching, models, offline, ops, "),
    # a field of Config, not a key of the file
    ("source = 'x'\n", "source: unknown key; allowed: access, console, device, "),
])
def test_the_refusal_names_the_key_and_why(tmp_path: Path, text: str, message: str):
    assert message in refused(tmp_path, text)


@pytest.mark.parametrize("write, message", [
    (lambda path: path.write_bytes(b"\x99[device]\n"), "not UTF-8 text (byte 0), so not a TOML file"),
    (lambda path: path.write_text("[device\n"), "not valid TOML"),
    (lambda path: path.mkdir(), "a folder, not a configuration file"),
])
def test_a_file_that_is_no_toml_text_is_refused_as_a_configuration(tmp_path: Path, write, message: str):
    path = tmp_path / "appliance.toml"
    write(path)
    with pytest.raises(ApplianceError) as refused_file:
        load_config(path)
    assert refused_file.value.code is ErrorCode.CONFIG_INVALID and message in str(refused_file.value)


def test_active_liveness_is_accepted(tmp_path: Path):
    assert load_config(write(tmp_path, "[liveness]\nlevel = 'active'\n")).liveness.level == "active"


@pytest.mark.parametrize("text, pin", [("", None), ("relay_pin = 17\n", 17), ("relay_pin = 0\n", 0),
                                       ("relay_pin = 40\n", 40)])
def test_relay_pin(tmp_path: Path, text: str, pin: int | None):
    assert load_config(write(tmp_path, "[device]\n" + text)).device.relay_pin == pin


@pytest.mark.parametrize("value, message", [
    ("41", "device.relay_pin: must be between 0 and 40, got 41"),
    ("-1", "device.relay_pin: must be between 0 and 40, got -1"),
    ("'17'", "device.relay_pin: expected an integer, got '17'"),
    ("true", "device.relay_pin: expected an integer, got True"),
])
def test_a_bad_relay_pin_is_refused(tmp_path: Path, value: str, message: str):
    assert message in refused(tmp_path, f"[device]\nrelay_pin = {value}\n")


def test_log_level_is_read_in_any_case(tmp_path: Path):
    assert load_config(write(tmp_path, "[ops]\nlog_level = 'INFO'\n")).ops.log_level == "info"


def test_every_key_is_described_and_typed():
    described = schema()
    sections = described["properties"]
    assert "source" not in sections  # set by load_config, not a key of the file
    assert set(sections) == {f.name for f in dataclasses.fields(Config)} - {"source"}
    for name, section in sections.items():
        assert section.get("description"), f"[{name}] has no description"
    for table, spec in described["$defs"].items():
        assert spec["additionalProperties"] is False, table
        for key, prop in spec["properties"].items():
            assert prop.get("description", "").strip(), f"{table}.{key} has no description"
            assert "type" in prop or "anyOf" in prop or "enum" in prop, f"{table}.{key} has no type"


def test_bounds_and_allowed_values_are_in_the_schema():
    defs = schema()["$defs"]
    assert (defs["RuntimeConfig"]["properties"]["threads"]["minimum"],
            defs["RuntimeConfig"]["properties"]["threads"]["maximum"]) == (1, 64)
    relay = defs["DeviceConfig"]["properties"]["relay_pin"]
    assert relay["description"] == "BCM pin of the door relay; unset: no relay (the actuator logs)"
    assert {"type": "integer", "minimum": 0, "maximum": 40} in [
        {k: v for k, v in option.items() if k in ("type", "minimum", "maximum")} for option in relay["anyOf"]]
    assert defs["LivenessConfig"]["properties"]["level"]["enum"] == [
        "off", "passive", "passive+motion", "passive+stepup", "active"]
    assert defs["SecurityConfig"]["properties"]["audit_retention_days"]["minimum"] == 1096


def test_code_builds_sections_freely_and_validate_checks_them():
    # constructors and dataclasses.replace check nothing (code passes trusted values); reading a
    # file, a flag or validate() checks everything with the same messages
    config = dataclasses.replace(Config(), runtime=RuntimeConfig(threads=0))
    with pytest.raises(ApplianceError) as error:
        validate(config)
    assert error.value.detail.startswith("runtime.threads: must be between 1 and 64")
    live = dataclasses.replace(LivenessConfig(), challenge_min=3, challenge_max=1)
    with pytest.raises(ApplianceError) as error:
        validate(dataclasses.replace(Config(), liveness=live))
    assert error.value.detail.startswith("liveness.challenge_min: need")


def test_flags_are_checked_like_the_file(tmp_path: Path):
    config = load_config(write(tmp_path, "[device]\nname = 'door-1'\n"))
    assert with_overrides(config, device={"name": None, "fps": None}) is config
    changed = with_overrides(config, device={"source": "/frames", "fps": 5}, liveness={"level": "active"})
    assert (changed.device, changed.liveness.level, changed.source) == (
        DeviceConfig(name="door-1", source="/frames", fps=5.0), "active", config.source)
    assert isinstance(changed.device.fps, float)
    for sections, message in [
        ({"device": {"fps": -2.0}}, "device.fps: must not be negative"),
        ({"device": {"name": "no spaces"}}, "device.name: 'no spaces' is not a valid identity"),
        ({"liveness": {"level": "strict"}}, "liveness.level: 'strict' is not one of"),
        ({"offline": {"mode": "never"}}, "offline.mode: 'never' is not one of"),
        ({"matcher": {"name": "-x"}}, "matcher.name: '-x' is not a valid identity"),
    ]:
        with pytest.raises(ApplianceError) as error:
            with_overrides(config, **sections)
        assert error.value.code is ErrorCode.CONFIG_INVALID and message in error.value.detail


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


def test_save_threshold_keeps_the_mode_and_a_full_disk_changes_nothing(tmp_path: Path):
    """The owner's mode stays (a config file may be 0640 root:appliance); a disk that cannot
    take the new file is E213 and the old file is whole, with no temporary file beside it."""
    folder = tmp_path / "etc"
    with small_disk(folder, 256 * 1024):
        path = write(folder, "[runtime]\nthreads = 1\n")
        path.chmod(0o640)
        save_threshold(path, "w600k-mbf", 0.31, "calibrated here")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640
        before = path.read_bytes()
        filler = fill(folder)
        with pytest.raises(ApplianceError) as refused:
            save_threshold(path, "w600k-mbf", 0.29, "calibrated again")
        assert refused.value.code is ErrorCode.STORE_UNWRITABLE
        assert path.read_bytes() == before and sorted(p.name for p in folder.iterdir()) == [path.name, filler.name]

"""The [ops] section and APPLIANCE__SECTION__KEY overrides, checked like the file."""
from __future__ import annotations

import pytest

from appliance.config import apply_env_overrides, load_config
from appliance.errors import ApplianceError, ErrorCode


def _config(tmp_path, text=""):
    path = tmp_path / "appliance.toml"
    path.write_text(text)
    return path


def test_environment_overrides_the_file(tmp_path, monkeypatch):
    path = _config(tmp_path, "[ops]\nbroker_host = 'matcher-1.site'\nbroker_port = 8883\n")
    monkeypatch.setenv("APPLIANCE__OPS__BROKER_PORT", "18883")
    monkeypatch.setenv("APPLIANCE__RUNTIME__THREADS", "3")
    config = load_config(path)
    assert (config.ops.broker_host, config.ops.broker_port, config.runtime.threads) == ("matcher-1.site", 18883, 3)


@pytest.mark.parametrize("name, value, message", [
    ("APPLIANCE__OPS__BROKER_PORT", "eighty", "ops.broker_port: expected an integer"),
    ("APPLIANCE__OPS__LOG_FORMAT", "xml", "ops.log_format: 'xml' is not one of ('json', 'text')"),
    ("APPLIANCE__OPS__NO_SUCH_KEY", "1", "ops.no_such_key: unknown key; allowed:"),
    ("APPLIANCE__OPS", "1", "APPLIANCE__OPS: use APPLIANCE__<SECTION>__<KEY>"),
    ("APPLIANCE__OPS__BROKER_PORT", "0", "ops.broker_port: must be between 1 and 65535, got 0"),
    ("APPLIANCE__OPS__WIPE_CONFIRM_S", "0.5", "ops.wipe_confirm_s: must be between 1 and 300, got 0.5"),
    ("APPLIANCE__RUNTIME__THREADS", "2.5", "runtime.threads: expected an integer, got 2.5"),
    ("APPLIANCE__DEVICE__RELAY_PIN", "99", "device.relay_pin: must be between 0 and 40, got 99"),
    ("APPLIANCE__DEVICE__RELAY_PIN", "none", "device.relay_pin: expected an integer, got 'none'"),
    ("APPLIANCE__LIVENESS__CHALLENGE_MAX", "0", "liveness.challenge_max: must be between 1 and 3, got 0"),
    ("APPLIANCE__SECURITY__ROLES__BOB", "operator", "security.roles: [security.roles] was removed: roles belong to "
                                                    "appliance accounts now"),
    ("APPLIANCE__DOORS__X", "1", "doors: unknown key; allowed: access, console, device, "),
    ("APPLIANCE__SOURCE__X", "1", "source: unknown key; allowed: access, console, device, "),
])
def test_bad_overrides_name_the_key_and_the_allowed_values(tmp_path, monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ApplianceError) as bad:
        load_config(_config(tmp_path))
    assert bad.value.code is ErrorCode.CONFIG_INVALID and message in bad.value.detail


def test_environment_sets_new_keys_and_nested_tables(tmp_path, monkeypatch):
    path = _config(tmp_path, "[liveness]\nchallenge_max = 2\n")
    monkeypatch.setenv("APPLIANCE__DEVICE__RELAY_PIN", "17")
    monkeypatch.setenv("APPLIANCE__LIVENESS__LEVEL", "active")
    monkeypatch.setenv("APPLIANCE__MATCHING__THRESHOLDS__W600K-MBF", "0.4")
    monkeypatch.setenv("APPLIANCE__OPS__LOG_LEVEL", "DEBUG")
    config = load_config(path)
    assert (config.device.relay_pin, config.liveness.level, config.liveness.challenge_max) == (17, "active", 2)
    assert config.matching.thresholds["w600k-mbf"] == 0.4 and config.ops.log_level == "debug"


def test_an_override_is_checked_with_the_file_it_joins(tmp_path, monkeypatch):
    monkeypatch.setenv("APPLIANCE__LIVENESS__CHALLENGE_MIN", "3")
    with pytest.raises(ApplianceError) as bad:
        load_config(_config(tmp_path, "[liveness]\nchallenge_max = 2\n"))
    assert bad.value.detail == "liveness.challenge_min: need 1 <= challenge_min <= challenge_max <= 3"


def test_override_values_are_toml_typed():
    merged = apply_env_overrides({"models": {"embedder": "x"}}, {
        "APPLIANCE__MODELS__SEARCH_PATH": '["/opt/packs"]', "APPLIANCE__MATCHING__FLIP_FUSION": "false",
        "APPLIANCE__MODELS__EMBEDDER": "dlib-resnet-v1", "OTHER": "ignored"})
    assert merged == {"models": {"embedder": "dlib-resnet-v1", "search_path": ["/opt/packs"]},
                      "matching": {"flip_fusion": False}}

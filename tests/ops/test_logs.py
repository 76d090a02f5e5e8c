"""Logging as the operator gets it: the real ``appliance`` command in a subprocess, ``[ops]``
log settings from a temporary config file, personal data masked by ``security.masking``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.errors import ErrorCode
from appliance.security.masking import mask_number

APPLIANCE = Path(sys.executable).parent / "appliance"  # the console script of this venv
PHONE = "13812345678"  # masking keeps the first 3 and last 4: 138****5678
CARD = "6222021234567890123"
ID_NUMBER = "110101199003077777"
SECRETS = (PHONE, CARD, ID_NUMBER)

# The real main(), with the chosen command's handler replaced by one that logs personal data
# through every kind of logger: ours, a third-party one (paho's name, propagating to the root),
# one with its own handler made before main() ran, an exception and a Python warning.
HARNESS = f"""
import logging, sys, warnings
import appliance.cli.main as cli

own = logging.getLogger("vendor.own")
own.addHandler(logging.StreamHandler(sys.stderr))
own.propagate = False

def handler(args):
    logging.getLogger("appliance.test").warning("card %s refused", "{CARD}")
    logging.getLogger("appliance.test").info("info about {PHONE}")
    logging.getLogger("paho.mqtt.client").warning("client {PHONE} refused")
    own.warning("vendor saw staff {ID_NUMBER}")
    try:
        raise ValueError("id {ID_NUMBER}")
    except ValueError:
        logging.getLogger("appliance.test").exception("failed for {PHONE}")
    warnings.warn("visitor {PHONE}")
    return 0

build = cli.build_parser
def build_parser():
    parser = build()
    parse = parser.parse_args
    def parse_args(argv=None):
        args = parse(argv)
        args.handler = handler
        return args
    parser.parse_args = parse_args
    return parser
cli.build_parser = build_parser
sys.exit(cli.main(sys.argv[1:]))
"""


def _config(tmp_path: Path, **ops) -> dict[str, str]:
    path = tmp_path / "appliance.toml"
    path.write_text("[ops]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in ops.items()))
    return {**os.environ, "APPLIANCE_CONFIG": str(path), "APPLIANCE_DATA_DIR": str(tmp_path / "data")}


def _appliance(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(APPLIANCE), *args], env=env, capture_output=True, text=True, timeout=120)


def _harness(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HARNESS, *args], env=env, capture_output=True, text=True,
                          timeout=120)


def _missing_image(tmp_path: Path) -> str:
    return str(tmp_path / PHONE / "face.jpg")  # the error names the path: personal data in a log line


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_command_writes_masked_json_lines_to_the_log_file(tmp_path):
    log_file = tmp_path / "logs" / "appliance.log"  # the folder is made
    result = _appliance(_config(tmp_path, log_file=str(log_file)), "detect", _missing_image(tmp_path))
    assert result.returncode == ErrorCode.FILE_NOT_FOUND.exit_status
    assert result.stderr.startswith("error: E101")  # the operator still sees the one-line error
    [entry] = _json_lines(log_file.read_text())
    assert entry["level"] == "error" and entry["logger"] == "appliance.cli" and entry["service"] == "appliance detect"
    assert mask_number(PHONE) in entry["message"] and PHONE not in log_file.read_text()


def test_the_level_is_honoured_and_debug_lowers_it(tmp_path):
    log_file = tmp_path / "appliance.log"
    env = _config(tmp_path, log_file=str(log_file), log_level="critical")
    assert _appliance(env, "detect", _missing_image(tmp_path)).returncode != 0
    assert log_file.read_text() == ""  # the error line is below "critical"
    assert _appliance(env, "detect", _missing_image(tmp_path), "--debug").returncode != 0
    assert [e["level"] for e in _json_lines(log_file.read_text())] == ["error"]


def test_explicit_text_format_in_the_file(tmp_path):
    log_file = tmp_path / "appliance.log"
    _appliance(_config(tmp_path, log_file=str(log_file), log_format="text"), "detect", _missing_image(tmp_path))
    [line] = log_file.read_text().splitlines()
    assert " ERROR appliance detect appliance.cli: E101 file not found" in line and mask_number(PHONE) in line
    assert PHONE not in line


def test_the_log_file_rotates(tmp_path):
    log_file = tmp_path / "appliance.log"
    env = _config(tmp_path, log_file=str(log_file), log_max_bytes=300, log_backups=1)
    for _ in range(3):  # ~250 bytes a line
        _appliance(env, "detect", _missing_image(tmp_path))
    assert sorted(p.name for p in tmp_path.glob("appliance.log*")) == ["appliance.log", "appliance.log.1"]


@pytest.mark.parametrize("where", ["under a file", "a directory"])
def test_a_log_file_that_cannot_be_opened_is_a_one_line_error(tmp_path, where):
    (tmp_path / "plain").write_text("not a folder")
    log_file = tmp_path / "plain" / "appliance.log" if where == "under a file" else tmp_path
    result = _appliance(_config(tmp_path, log_file=str(log_file)), "models", "list")
    assert result.returncode == 2 and result.stdout == ""  # the command did not run
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: E100") and "ops.log_file" in line and str(log_file) in line


def test_services_log_masked_json_on_every_path(tmp_path):
    result = _harness(_config(tmp_path), "maintenance")
    assert result.returncode == 0, result.stderr
    for secret in SECRETS:
        assert secret not in result.stderr
    lines = result.stderr.splitlines()
    assert f"vendor saw staff {mask_number(ID_NUMBER)}" in lines  # its own handler, masked too
    entries = [json.loads(line) for line in lines if line.startswith("{")]
    assert {e["service"] for e in entries} == {"appliance-maintenance"}
    by_logger = {e["logger"]: e for e in entries}
    assert by_logger["paho.mqtt.client"]["message"] == f"client {mask_number(PHONE)} refused"
    assert mask_number(ID_NUMBER) in next(e["error"] for e in entries if "error" in e)
    assert mask_number(PHONE) in by_logger["py.warnings"]["message"]
    assert "info" not in {e["level"] for e in entries}  # default level: warning


def test_commands_log_text_on_stderr_unless_the_config_says_otherwise(tmp_path):
    text = _harness(_config(tmp_path), "health")
    assert f"WARNING appliance.test: card {mask_number(CARD)} refused" in text.stderr.splitlines()
    assert mask_number(ID_NUMBER) in text.stderr and not any(s in text.stderr for s in SECRETS)
    explicit = _harness(_config(tmp_path, log_format="json", log_level="info"), "health")
    entries = [json.loads(line) for line in explicit.stderr.splitlines() if line.startswith("{")]
    assert {e["service"] for e in entries} == {"appliance health"}
    assert f"info about {mask_number(PHONE)}" in [e["message"] for e in entries]


def test_services_honour_an_explicit_text_format(tmp_path):
    result = _harness(_config(tmp_path, log_format="text"), "provision", "broker-config")
    assert f"WARNING appliance-broker-config paho.mqtt.client: client {mask_number(PHONE)} refused" \
        in result.stderr.splitlines()


def test_logs_are_masked_even_when_the_config_cannot_be_loaded(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[ops]\nlog_levle = 'info'\n")
    patch = (f"import logging, appliance.cli.common as common\nload = common.load_config\n"
             f"def load_config(path=None):\n    logging.getLogger('appliance.config').warning('reading {CARD}')\n"
             f"    return load(path)\ncommon.load_config = load_config\n")
    result = subprocess.run([sys.executable, "-c", patch + HARNESS, "--config", str(bad), "maintenance"],
                            env=dict(os.environ), capture_output=True, text=True, timeout=120)
    assert result.returncode == ErrorCode.CONFIG_INVALID.exit_status
    assert f"WARNING appliance.config: reading {mask_number(CARD)}" in result.stderr.splitlines()
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "ops.log_levle" in errors[0] and CARD not in result.stderr


def test_bad_log_settings_name_their_key(tmp_path):
    result = _appliance(_config(tmp_path, log_level="loud"), "models", "list")
    assert result.returncode == 2 and "ops.log_level: 'loud' is not one of" in result.stderr


@pytest.mark.parametrize("argv, service", [
    (["matcher", "--name", "m-1"], "appliance-matcher"), (["edge", "--device", "door-1"], "appliance-edge"),
    (["maintenance"], "appliance-maintenance"), (["provision", "broker-config"], "appliance-broker-config"),
    (["provision", "ca"], None), (["config", "check"], None), (["health"], None)])
def test_service_commands_are_told_apart_by_name(argv, service):
    from appliance.cli.main import build_parser, service_name

    assert service_name(build_parser().parse_args(argv)) == service

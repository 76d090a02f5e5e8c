"""The ops commands as an operator runs them: real processes, real stores, real sockets."""
from __future__ import annotations

import json
import logging
import os
import socket
import stat
import subprocess
import sys
import time

import pytest

from appliance.config import OpsConfig, load_config
from appliance.ops.health import EXIT, FAIL, OK, WARN, check_daemon, check_muted, overall, run_health
from appliance.ops.logs import configure_logging
from appliance.ops.notify import Watchdog, status_path
from appliance.security.keys import FileKeyProvider, ensure_keys

PASSWORD = "Correct-Horse-42-battery"


@pytest.fixture
def site(tmp_path):
    ensure_keys(FileKeyProvider(tmp_path / "data" / "keys"))
    config = tmp_path / "appliance.toml"
    config.write_text("[ops]\nbroker_port = 1\n")
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(tmp_path / "data"), "APPLIANCE_CONFIG": str(config)}
    return tmp_path, env


def _run(env, *args, stdin=""):
    return subprocess.run([sys.executable, "-m", "appliance", *args], input=stdin, env=env,
                          capture_output=True, text=True, timeout=60)


def test_bootstrap_prints_nothing_secret(site):
    tmp_path, env = site
    refused = _run(env, "admin", "bootstrap", "--account", "sec-admin", "--password-file", "-", stdin=PASSWORD + "\n")
    assert refused.returncode != 0 and "--secret-out" in refused.stderr  # stdout is a pipe here
    secret_file = tmp_path / "totp.txt"
    done = _run(env, "admin", "bootstrap", "--account", "sec-admin", "--password-file", "-",
                "--secret-out", str(secret_file), stdin=PASSWORD + "\n")
    assert done.returncode == 0, done.stderr
    secret = secret_file.read_text().split()[0]
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    for output in (done.stdout, done.stderr, refused.stdout, refused.stderr):
        assert secret not in output and PASSWORD not in output
    again = _run(env, "admin", "bootstrap", "--account", "other", "--password-file", "-",
                 "--secret-out", str(tmp_path / "x"), stdin=PASSWORD + "\n")
    assert again.returncode != 0 and "bootstrap runs once" in again.stderr


def test_health_reports_for_monitoring(site, monkeypatch):
    tmp_path, env = site
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(tmp_path / "data"))
    config = load_config(tmp_path / "appliance.toml")
    checks = {c.name: c for c in run_health(config, "edge", tmp_path / "data", name="door-1")}
    assert checks["broker"].status == FAIL and checks["watchdog"].status == FAIL  # nothing running
    unnamed = {c.name: c for c in run_health(config, "edge", tmp_path / "data")}
    assert unnamed["config"].status == FAIL and "device.name" in unnamed["config"].detail
    assert checks["disk"].status == OK and checks["clock"].status == OK
    with socket.socket() as listener:  # a broker port that answers, and a daemon that beats
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        (tmp_path / "appliance.toml").write_text(f"[ops]\nbroker_port = {port}\n[device]\nname = \"door-1\"\n")
        config = load_config(tmp_path / "appliance.toml")
        # the daemon's own naming rule: <data>/run/edge-<device>.json
        status_file = status_path(config.ops.status_dir, tmp_path / "data", "edge", config.device.name)
        assert status_file == tmp_path / "data" / "run" / "edge-door-1.json"
        dog = Watchdog(environ={"WATCHDOG_USEC": "2000000"}, status_file=status_file)
        dog.heartbeat(model_loaded=True, model="w600k-mbf@1.0.0", cache_revision=7, cache_synced_at=time.time())
        checks = run_health(config, "edge", tmp_path / "data")
        assert overall(checks) == OK, checks
        stalled = run_health(config, "edge", tmp_path / "data", now=time.time() + 10)  # 10 s without a beat
        assert {c.name: c.status for c in stalled}["watchdog"] == FAIL
        result = _run({**env, "APPLIANCE_CONFIG": str(tmp_path / "appliance.toml")}, "health")
        assert result.returncode == EXIT[json.loads(result.stdout)["status"]] == 0, result.stdout
        dog.stopped()  # a clean stop is reported as such
        stopped = {c.name: c for c in run_health(config, "edge", tmp_path / "data")}
        assert stopped["watchdog"].status == FAIL and "stopped" in stopped["watchdog"].detail


def test_health_warns_while_a_door_is_muted_for_flooding(tmp_path):
    """The matcher's heartbeat carries the doors muted now (``Gate.muted_now``): a monitoring
    system sees a flooding door without reading the audit log."""
    status_file = tmp_path / "matcher-matcher-1.json"
    Watchdog(environ={}, status_file=status_file).heartbeat(model_loaded=True, model="w600k-mbf@1.0.0",
                                                            broker=True, muted={})
    checks = {c.name: c for c in check_daemon("matcher matcher-1", status_file, 60.0)}
    assert checks["flood"].status == OK and checks["flood"].detail == "matcher matcher-1: no door muted"
    Watchdog(environ={}, status_file=status_file).heartbeat(model_loaded=True, model="w600k-mbf@1.0.0", broker=True,
                                                            muted={f"door-{n}": 1 for n in range(6)} | {"door-b": 3})
    flood = {c.name: c for c in check_daemon("matcher matcher-1", status_file, 60.0)}["flood"]
    assert flood.status == WARN and overall([flood]) == WARN
    assert flood.detail.startswith("matcher matcher-1: 7 doors muted for flooding (alarm.message_flood in the audit "
                                   "log): door-0, door-1, door-2, door-3, door-4 and 2 more; door-b keeps flooding")
    assert check_muted("m", {"door-b": 2}).detail.endswith("flooding (alarm.message_flood in the audit log): "
                                                            "door-b (2 in a row)")
    assert check_muted("m", {"door-b": 3}).detail.endswith(  # what to do about a door that keeps at it
        "door-b (3 in a row); door-b keeps flooding, which the broker still receives: check the door, or revoke it "
        "(appliance provision revoke door-b)")
    assert "door-b and others keep flooding" in check_muted("m", {"door-b": 3, "door-c": 4}).detail


def test_health_fails_while_the_matcher_cannot_write_its_audit_log(tmp_path):
    """The heartbeat carries the audit writer's state (``GroupCommit.state``): a full disk is a
    failure a monitoring system sees before the queue fills and the doors go offline."""
    status_file = tmp_path / "matcher-matcher-1.json"
    failing = {"queued": 1200, "failing_since": time.time() - 30, "failures": 4, "error": "database or disk is full"}
    Watchdog(environ={}, status_file=status_file).heartbeat(model_loaded=True, model="w600k-mbf@1.0.0", broker=True,
                                                            audit=failing)
    audit = {c.name: c for c in check_daemon("matcher matcher-1", status_file, 60.0)}["audit"]
    assert audit.status == FAIL and overall([audit]) == FAIL
    assert "audit log not written for 30 s (4 failed commits: database or disk is full)" in audit.detail
    assert "1200 entries wait in memory: free disk space" in audit.detail
    Watchdog(environ={}, status_file=status_file).heartbeat(model_loaded=True, model="w600k-mbf@1.0.0", broker=True,
                                                            audit={**failing, "failing_since": 0.0, "queued": 3})
    audit = {c.name: c for c in check_daemon("matcher matcher-1", status_file, 60.0)}["audit"]
    assert audit.status == OK and audit.detail == "matcher matcher-1: audit log written (3 entries queued)"


def test_json_logs_are_masked_and_rotate(tmp_path):
    log_file = tmp_path / "logs" / "appliance.log"
    handler = configure_logging(OpsConfig(log_file=str(log_file), log_max_bytes=2000, log_backups=2))
    try:
        logging.getLogger("appliance.test").warning("card %s refused at door-a", "6222021234567890123",
                                                    extra={"device": "door-a"})
        for i in range(40):
            logging.getLogger("appliance.test").info("heartbeat %d", i)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
    first = json.loads(log_file.with_name("appliance.log.2").read_text().splitlines()[0])
    assert first["level"] == "warning" and first["device"] == "door-a"
    assert "6222021234567890123" not in first["message"] and first["message"].startswith("card 622")
    assert sorted(p.name for p in log_file.parent.iterdir()) == ["appliance.log", "appliance.log.1", "appliance.log.2"]

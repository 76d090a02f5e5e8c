"""The site-duty commands as an administrator runs them: accounts and tokens through the real
account store, the real key files and SQLCipher stores of a data folder."""
from __future__ import annotations

import json
import time

import numpy as np
import pytest

from appliance.cli.main import main
from appliance.config import load_config
from appliance.errors import ErrorCode
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.roles import Principal, Role
from appliance.stores.protected import ProtectedData
from appliance.vision.templates import Template, normalise
from authkit import make_token

REASON = "all doors of the plant share one matcher; works council approval of 2026-11-20"


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """``run(role, *command)`` -> (exit status, stdout) acting as an account of ``role``."""
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # no 'appliance login' session here
    config_path = tmp_path / "appliance.toml"
    config_path.write_text('[offline]\nmode = "central"\n')
    assert main(["--config", str(config_path), "keys", "init"]) == 0
    config = load_config(config_path)
    tokens = {role: make_token(tmp_path / "data", role, config=config) for role in Role}

    def run(capsys, role: Role | None, *command: str) -> tuple[int, str]:
        capsys.readouterr()
        token = ["--token", tokens[role]] if role else []
        status = main(["--config", str(config_path), *token, *command])
        return status, capsys.readouterr().out

    run.config = config
    return run


def test_matching_justify_show_revoke_from_the_command_line(cli, capsys):
    status, out = cli(capsys, Role.AUDITOR, "site", "matching", "show")
    assert status == 0 and json.loads(out) == {"configured_mode": "central", "decision": None, "effective": "local"}
    status, _ = cli(capsys, Role.SYSTEM_ADMIN, "site", "matching", "justify", "--reason", REASON)
    assert status == ErrorCode.PERMISSION_DENIED.exit_status
    status, _ = cli(capsys, Role.SECURITY_ADMIN, "site", "matching", "justify", "--reason", "needed")
    assert status == ErrorCode.CONFIG_INVALID.exit_status
    status, _ = cli(capsys, None, "site", "matching", "show")
    assert status == ErrorCode.AUTH_REQUIRED.exit_status

    status, out = cli(capsys, Role.SECURITY_ADMIN, "site", "matching", "justify", "--reason", REASON,
                      "--basis", "separate consent form SC-3")
    decision = json.loads(out)["decision"]
    assert status == 0 and decision["reason"] == REASON and decision["legal_basis"] == "separate consent form SC-3"
    assert decision["role"] == "security_administrator" and abs(decision["decided_at"] - time.time()) < 60
    status, out = cli(capsys, Role.OPERATOR, "site", "matching", "show")
    assert status == 0 and json.loads(out)["decision"] == decision and json.loads(out)["effective"] == "central"

    status, out = cli(capsys, Role.SECURITY_ADMIN, "site", "matching", "revoke")
    assert status == 0 and json.loads(out)["revoked"] == decision
    status, out = cli(capsys, Role.AUDITOR, "site", "matching", "show")
    assert json.loads(out)["decision"] is None


def test_retention_run_status_and_the_filing_counter(cli, capsys):
    with ProtectedData.from_config(cli.config) as data:
        operator = Principal("acct-op", Role.OPERATOR)
        for seed in range(2):
            subject = new_subject_id()
            data.register_person(operator, Person(subject, f"Wang {seed}", AgeBand.ADULT, Alternative.CARD))
            data.record_consent(operator, ConsentRecord(subject, ENROLL_SCOPE, "v1", time.time(), f"Wang {seed}"))
            vector = normalise(np.random.default_rng(seed).normal(size=512))
            data.enroll(operator, subject, Template(vector, "w600k-mbf", "1.0"), np.zeros(1, np.float32))

    status, out = cli(capsys, Role.AUDITOR, "retention", "status")
    assert status == 0 and json.loads(out)["last_run"] is None and json.loads(out)["overdue"] is True
    status, _ = cli(capsys, Role.AUDITOR, "retention", "run")
    assert status == ErrorCode.PERMISSION_DENIED.exit_status
    status, out = cli(capsys, Role.SYSTEM_ADMIN, "retention", "run")
    counts = json.loads(out)
    assert status == 0 and counts["door_events_pruned"] == 0 and counts["templates_expired"] == 0
    status, out = cli(capsys, Role.AUDITOR, "retention", "status")
    report = json.loads(out)
    assert report["last_run"]["counts"] == counts and report["overdue"] is False
    assert report["limits"] == {"templates": 1095, "door_events": 30, "audit": 1096, "receipts": 1096}

    status, out = cli(capsys, Role.AUDITOR, "site", "filing")
    assert status == 0 and json.loads(out)["count"] == 2 and json.loads(out)["level"] == "ok"
    assert "Wang" not in out

    # the central host's health: the three duty checks after the service checks
    status, out = cli(capsys, None, "health", "--service", "matcher", "--name", "matcher-1")
    checks = {c["name"]: c for c in json.loads(out)["checks"]}
    assert checks["matching"]["status"] == "warn" and "decide locally" in checks["matching"]["detail"]
    assert checks["filing"]["status"] == "ok" and checks["retention"]["status"] == "ok"

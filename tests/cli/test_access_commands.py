"""``appliance access`` as an administrator runs it: real accounts and tokens, the real
SQLCipher stores of a data folder, every change audited and given a revision."""
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


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """``run(role, *command)`` -> (exit status, stdout, stderr) acting as an account of ``role``."""
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    config_path = tmp_path / "appliance.toml"
    config_path.write_text('[access]\ntimezone = "Asia/Shanghai"\n')
    assert main(["--config", str(config_path), "keys", "init"]) == 0
    config = load_config(config_path)
    tokens = {role: make_token(tmp_path / "data", role, config=config) for role in Role}

    def run(capsys, role: Role, *command: str) -> tuple[int, str, str]:
        capsys.readouterr()
        status = main(["--config", str(config_path), "--token", tokens[role], "access", *command])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    run.config = config
    return run


def enrolled(config) -> str:
    operator = Principal("enroller", Role.OPERATOR)
    with ProtectedData.from_config(config) as data:
        subject = new_subject_id()
        data.register_person(operator, Person(subject, "Li Lei", AgeBand.ADULT, Alternative.CARD))
        data.record_consent(operator, ConsentRecord(subject, ENROLL_SCOPE, "v1", time.time(), "Li Lei"))
        vector = normalise(np.random.default_rng(1).normal(size=512).astype(np.float32))
        data.enroll(operator, subject, Template(vector, "w600k-mbf", "1.0"), np.zeros(1, np.float32))
    return subject


def revision(config) -> int:
    with ProtectedData.from_config(config) as data:
        return data.biometric.revision


def test_show_warns_loudly_until_a_group_exists_then_changes_are_audited_revisions(cli, capsys):
    subject = enrolled(cli.config)
    status, out, err = cli(capsys, Role.AUDITOR, "show")
    assert status == 0 and not json.loads(out)["enforced"] and "EVERY door" in err
    assert cli(capsys, Role.OPERATOR, "group", "create", "staff")[0] == ErrorCode.PERMISSION_DENIED.exit_status

    start = revision(cli.config)
    office = json.dumps({"mon": ["08:00-18:00"], "fri": ["22:00-06:00"], "holidays": "closed"})
    assert cli(capsys, Role.SECURITY_ADMIN, "group", "create", "staff", "--schedule", office)[0] == 0
    assert revision(cli.config) > start  # the first group: everyone's doors changed
    steps = [("grant", "staff", "door-a", "door-b"), ("member", "add", "staff", subject),
             ("holiday", "add", "2026-10-01", "--name", "National Day"),
             ("validity", subject, "--from", "2026-01-01T00:00", "--until", "2027-01-01T00:00"),
             ("area", "lobby", "--mode", "soft", "--entry", "door-a", "--exit", "door-b")]
    for step in steps:
        before = revision(cli.config)
        status, out, _ = cli(capsys, Role.SECURITY_ADMIN, *step)
        assert status == 0 and json.loads(out)["ok"], step
        assert revision(cli.config) > before, step  # each change reaches the doors
    status, out, err = cli(capsys, Role.AUDITOR, "show")
    view = json.loads(out)
    assert view["enforced"] and not err and view["timezone"] == "Asia/Shanghai"
    assert view["groups"] == [{"name": "staff", "schedule": {**json.loads(office), "tue": [], "wed": [], "thu": [],
                                                              "sat": [], "sun": [], "mon": ["08:00-18:00"]},
                               "doors": ["door-a", "door-b"], "members": 1}]
    assert view["holidays"] == {"2026-10-01": "National Day"}
    assert view["areas"] == {"lobby": {"mode": "soft", "reset_s": 43200.0,
                                       "doors": {"door-a": "entry", "door-b": "exit"}}}
    with ProtectedData.from_config(cli.config) as data:
        actions = [e.action for e in data.audit.entries()]
    for action in ("access.group.create", "access.doors.grant", "access.member.add", "access.holiday.add",
                   "access.validity.set", "access.area.set"):
        assert action in actions


@pytest.mark.parametrize("command", [("group", "create", "bad name"), ("group", "create", "g", "--schedule", "{x"),
                                     ("group", "create", "g", "--schedule", '{"mon": ["25:00-26:00"]}'),
                                     ("grant", "nosuch", "door-a"), ("holiday", "add", "2026-13-01"),
                                     ("validity", "nobody", "--until", "2027-01-01"),
                                     ("area", "hall", "--entry", "door-a", "--exit", "door-a")])
def test_bad_input_is_a_clear_error_and_changes_nothing(cli, capsys, command):
    start = revision(cli.config)
    status, out, _ = cli(capsys, Role.SECURITY_ADMIN, *command)
    assert status != 0 and revision(cli.config) == start

"""The CLI: roles come from the account of a token or session (never the OS user), and
`appliance audit verify` names tampering."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from appliance.cli.main import main
from appliance.cli.security_commands import ROTATABLE
from appliance.config import load_config
from appliance.errors import ErrorCode
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.roles import Principal, Role
from appliance.stores.claims import site_claim_key
from appliance.stores.protected import RECEIPTS_DIR, ProtectedData
from appliance.vision.templates import Template
from authkit import make_token

ENTRIES = 8
ACCOUNT_ENTRIES = 20  # more than the entries the fixture's accounts and tokens add after ENTRIES


@pytest.fixture
def node(tmp_path, monkeypatch):
    """A data directory with keys and some audit entries, then an account and API token for
    each role; ``node(role)`` gives the arguments that act as that role's account."""
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # no 'appliance login' session here
    config_path = tmp_path / "appliance.toml"
    config_path.write_text('[security]\naudit_checkpoint_every = 100\n')
    assert main(["--config", str(config_path), "keys", "init"]) == 0  # no account needed: key files only
    with ProtectedData.from_config(load_config(config_path)) as data:
        for i in range(ENTRIES):
            data.audit.append(Principal("acct-op", Role.OPERATOR), "verify", f"s-{i}", "pass")
    tokens = {role: make_token(tmp_path / "data", role, config=load_config(config_path)) for role in Role}
    return lambda role: ["--config", str(config_path), "--token", tokens[role]]


def tamper(config: list[str], *statements: str) -> None:
    with ProtectedData.from_config(load_config(__import__("pathlib").Path(config[1]))) as data:
        data.audit.conn.executescript("DROP TRIGGER entries_append_only; DROP TRIGGER entries_no_delete;")
        for sql in statements:
            data.audit.execute(sql)


SWAP = ("time", "actor", "role", "action", "object", "result", "device", "detail", "prev", "hash")


@pytest.mark.parametrize("statements, first_bad", [
    (["UPDATE entries SET result = 'fail' WHERE seq = 3"], 3),  # modified
    (["DELETE FROM entries WHERE seq = 5"], 5),  # deleted
    ([f"UPDATE entries SET seq = seq + 1 WHERE seq = {s}" for s in range(ENTRIES + ACCOUNT_ENTRIES, 5, -1)]
     + ["INSERT INTO entries SELECT 6, time, actor, role, action, 's-x', result, device, detail, prev, hash, "
        "origin_at, evidence FROM entries WHERE seq = 5"], 6),  # inserted
    (["CREATE TEMP TABLE a AS SELECT * FROM entries WHERE seq = 2",
      f"UPDATE entries SET ({', '.join(SWAP)}) = (SELECT {', '.join(SWAP)} FROM entries WHERE seq = 3) WHERE seq = 2",
      f"UPDATE entries SET ({', '.join(SWAP)}) = (SELECT {', '.join(SWAP)} FROM temp.a) WHERE seq = 3"],
     2),  # reordered
], ids=["modified", "deleted", "inserted", "reordered"])
def test_audit_verify_names_the_first_bad_entry(node, capsys, statements, first_bad):
    auditor = node(Role.AUDITOR)
    assert main([*auditor, "audit", "verify"]) == 0
    tamper(auditor, *statements)
    capsys.readouterr()
    assert main([*auditor, "audit", "verify"]) == ErrorCode.AUDIT_TAMPERED.exit_status
    assert f"first bad entry {first_bad}:" in capsys.readouterr().err


def test_export_is_for_auditors_and_masked(node, capsys, tmp_path):
    assert main([*node(Role.OPERATOR), "audit", "export"]) == ErrorCode.PERMISSION_DENIED.exit_status
    out = tmp_path / "export.json"
    assert main([*node(Role.AUDITOR), "audit", "export", "--since", "2000-01-01", "--out", str(out)]) == 0
    exported = json.loads(out.read_text())
    assert [e["action"] for e in exported].count("verify") == ENTRIES
    assert {e["action"] for e in exported} == {"verify", "account.create", "token.create"}


def test_without_a_session_or_token_nothing_is_done_whatever_the_os_user(node, monkeypatch, capsys):
    config = node(Role.AUDITOR)[:2]
    for variable in ("LOGNAME", "USER", "SUDO_USER"):
        monkeypatch.setenv(variable, "kit-security-admin")  # the security administrator's account name
    assert main([*config, "audit", "verify"]) == ErrorCode.AUTH_REQUIRED.exit_status == 34
    assert "appliance login" in capsys.readouterr().err
    assert main([*config, "--token", "apt_0123456789ab_forged", "audit", "verify"]) == 34
    assert "unknown API token" in capsys.readouterr().err


def test_key_rotation_is_for_the_security_administrator(node, capsys):
    assert main([*node(Role.SYSTEM_ADMIN), "keys", "rotate", "identity"]) == ErrorCode.PERMISSION_DENIED.exit_status
    security = node(Role.SECURITY_ADMIN)
    with ProtectedData.from_config(load_config(Path(security[1]))) as data:
        claim_key = site_claim_key(data.vault)
    for name in ROTATABLE:  # every store by its name, the template wrap key and the site's claim key
        assert main([*security, "keys", "rotate", name]) == 0, name
    assert main([*node(Role.SYSTEM_ADMIN), "store", "check"]) == 0
    output = capsys.readouterr().out
    assert "rotated identity" in output and "identity.db" in output
    assert "rotated claim: each door is told now, empties its cache and syncs it again" in output
    with ProtectedData.from_config(load_config(Path(security[1]))) as data:
        assert site_claim_key(data.vault) != claim_key
        rotations = [e.object for e in data.audit.entries() if e.action == "keys.rotate"]
    assert sorted(rotations) == sorted(ROTATABLE)


def test_subject_delete_unknown_twice_and_withdraw_through_the_cli(node, capsys, tmp_path):
    """Unknown id: E220, exit 22, nothing written. Again: E222, exit 27, the first receipt on
    stdout (a script keeps the same proof), no second receipt, no new revision."""
    security = node(Role.SECURITY_ADMIN)
    operator = Principal("acct-op", Role.OPERATOR)
    subject = new_subject_id()
    with ProtectedData.from_config(load_config(Path(security[1]))) as data:
        data.register_person(operator, Person(subject, "Li Si", AgeBand.ADULT, Alternative.CARD))
        data.record_consent(operator, ConsentRecord(subject, ENROLL_SCOPE, "v1", time.time(), "Li Si"))
        vector = np.ones(512, np.float32) / np.sqrt(512)
        data.enroll(operator, subject, Template(vector, "w600k-mbf", "1.0.0"), np.zeros(1, np.float32))
        revision = data.biometric.revision
    receipts = tmp_path / "data" / RECEIPTS_DIR
    capsys.readouterr()

    unknown = new_subject_id()
    assert main([*security, "subject", "delete", unknown]) == ErrorCode.SUBJECT_NOT_FOUND.exit_status == 22
    out, err = capsys.readouterr()
    assert out == "" and "E220" in err and unknown in err and not list(receipts.glob("*.json"))

    assert main([*security, "subject", "delete", subject]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["subject_id"] == subject and first["tombstone_revision"] == revision + 1

    for action in ("delete", "withdraw"):
        status = main([*security, "subject", action, subject])
        assert status == ErrorCode.SUBJECT_ALREADY_DELETED.exit_status == 27, action
        out, err = capsys.readouterr()
        assert "E222 subject already deleted" in err and first["receipt_id"] in err
        assert json.loads(out) == first  # stdout: the first receipt, still the proof
    assert [p.stem for p in receipts.glob("*.json")] == [first["receipt_id"]]
    with ProtectedData.from_config(load_config(Path(security[1]))) as data:
        assert data.biometric.revision == revision + 1

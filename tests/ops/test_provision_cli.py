"""`appliance provision rotate|revoke` act as an authenticated account with the device right,
on the record; nobody else changes a door's keys. Real PKI, key files and audit store."""
from __future__ import annotations

import pytest

from appliance.broker.pki import ProjectPKI
from appliance.cli.main import main
from appliance.config import load_config
from appliance.errors import ErrorCode
from appliance.security.roles import Principal, Role
from appliance.stores.protected import ProtectedData
from authkit import make_token

DOOR = "door-1"


@pytest.fixture
def site(tmp_path, monkeypatch):
    data = tmp_path / "data"
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(data))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))  # no 'appliance login' session here
    config_path = tmp_path / "appliance.toml"
    config_path.write_text("")
    for step in (("keys", "init"), ("provision", "ca"), ("provision", "broker", "--host", "localhost"),
                 ("provision", "device", DOOR)):
        assert main(["--config", str(config_path), *step]) == 0
    config = load_config(config_path)
    tokens = {role: make_token(data, role, config=config) for role in Role}

    def run(role: Role | None, *command: str) -> int:
        token = ["--token", tokens[role]] if role else []
        return main(["--config", str(config_path), *token, *command])

    run.config, run.data = config, data
    return run


def _device_entries(site) -> list[tuple[str, str, str]]:
    with ProtectedData.from_config(site.config, site.data) as data:
        auditor = Principal("test-auditor", Role.AUDITOR)
        return [(e["action"], e["object"], e["result"]) for e in data.audit.export(auditor)
                if e["action"].startswith("device.")]


def test_revoke_needs_an_account_with_the_device_right_and_is_audited(site):
    pki = ProjectPKI(site.data / "pki")
    assert site(None, "provision", "revoke", DOOR) == ErrorCode.AUTH_REQUIRED.exit_status
    assert site(Role.OPERATOR, "provision", "revoke", DOOR) == ErrorCode.PERMISSION_DENIED.exit_status
    assert site(Role.AUDITOR, "provision", "rotate", DOOR) == ErrorCode.PERMISSION_DENIED.exit_status
    assert not pki.identities()[DOOR].revoked
    assert site(Role.SYSTEM_ADMIN, "provision", "rotate", DOOR) == 0
    # revoked at once; the broker unit is not running on a test machine, so the command says the
    # restart is still owed (and exits non-zero) instead of claiming the session was cut
    status = site(Role.SECURITY_ADMIN, "provision", "revoke", DOOR)
    assert pki.identities()[DOOR].revoked
    assert status in (0, ErrorCode.BROKER_UNAVAILABLE.exit_status)
    entries = _device_entries(site)
    assert ("device.revoke", DOOR, "denied") in entries and ("device.rotate", DOOR, "denied") in entries
    assert ("device.rotate", DOOR, "ok") in entries and ("device.revoke", DOOR, "ok") in entries

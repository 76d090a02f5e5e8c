"""Who is asking, from the real ``appliance`` command: bootstrap, login with a TOTP code, roles
from the account (never from LOGNAME/USER/SUDO_USER), tokens, the audit log naming the
account, and logout ending the session on the server too. Real processes, real stores."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from appliance.config import load_config
from appliance.errors import ErrorCode
from appliance.ops import totp
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.roles import Principal, Role
from appliance.stores.protected import ProtectedData

PASSWORD = "Correct-Horse-42-battery"
CLI_TIMEOUT_S = 120
OS_USER = "alice"  # what a caller could claim through the environment
IDLE_S = 8  # short enough to wait for, long beside a CLI start (~1-2 s on a loaded machine)
IDLE_WAIT_S = 6 * CLI_TIMEOUT_S  # the idle scenario: five commands and the idle wait, at most


class Site:
    """A data folder, a config, and the command run as one OS user with its own runtime folder."""

    def __init__(self, tmp_path: Path):
        self.root = tmp_path / "data"
        self.config = tmp_path / "appliance.toml"
        self.config.write_text("[ops]\nbroker_port = 1\n")
        self.password = tmp_path / "password"
        self.password.write_text(PASSWORD + "\n")
        self.password.chmod(0o600)
        self.tmp = tmp_path

    def env(self, runtime: str, **extra: str) -> dict[str, str]:
        folder = self.tmp / runtime
        folder.mkdir(mode=0o700, exist_ok=True)
        base = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_TOKEN")}
        return {**base, "APPLIANCE_DATA_DIR": str(self.root), "APPLIANCE_CONFIG": str(self.config),
                "XDG_RUNTIME_DIR": str(folder), "LOGNAME": OS_USER, "USER": OS_USER, "SUDO_USER": OS_USER, **extra}

    def run(self, runtime: str, *args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "appliance", *args], env=self.env(runtime, **extra),
                              capture_output=True, text=True, timeout=CLI_TIMEOUT_S)

    def ok(self, runtime: str, *args: str, **extra: str) -> str:
        result = self.run(runtime, *args, **extra)
        assert result.returncode == 0, f"{args}: {result.stderr}"
        return result.stdout

    def session_file(self, runtime: str) -> Path:
        return self.tmp / runtime / "appliance" / "session"


@pytest.fixture
def site(tmp_path):
    site = Site(tmp_path)
    site.ok("setup", "keys", "init")
    return site


def _person(site: Site) -> str:
    """A registered person with consent, written through the library as the desk would."""
    subject = new_subject_id()
    desk = Principal("desk-operator", Role.OPERATOR)
    with ProtectedData.from_config(load_config(site.config), site.root) as data:
        data.register_person(desk, Person(subject, "Li Si", AgeBand.ADULT, Alternative.CARD))
        data.record_consent(desk, ConsentRecord(subject, ENROLL_SCOPE, "v1", time.time(), "Li Si"))
    return subject


def _add(site: Site, runtime: str, name: str, role: str) -> str:
    created = json.loads(site.ok(runtime, "admin", "add", name, "--role", role, "--password-file", str(site.password),
                                 "--json"))
    assert created["account"] == name and created["role"] == role
    return created["totp_secret"]


def _login(site: Site, runtime: str, name: str, secret: str) -> None:
    out = site.ok(runtime, "login", "--account", name, "--password-file", str(site.password),
                  "--totp", totp.totp(secret))
    assert f"logged in as {name}" in out
    session = site.session_file(runtime)
    assert stat.S_IMODE(session.stat().st_mode) == 0o600 and stat.S_IMODE(session.parent.stat().st_mode) == 0o700


def test_roles_come_from_the_logged_in_account_never_from_the_os_user(site):
    boot = json.loads(site.ok("admin", "admin", "bootstrap", "--account", "sec-admin",
                              "--password-file", str(site.password), "--json"))
    assert {"account", "totp_secret", "totp_uri"} <= set(boot) and boot["totp_uri"].startswith("otpauth://totp/")
    again = site.run("admin", "admin", "bootstrap", "--account", "second", "--password-file", str(site.password),
                     "--json")
    assert again.returncode == ErrorCode.ACCOUNT_REFUSED.exit_status and "runs once" in again.stderr
    subject = _person(site)

    # no session, no token: nothing happens, whatever LOGNAME/USER/SUDO_USER say
    anonymous = site.run("nobody", "subject", "delete", subject)
    assert anonymous.returncode == ErrorCode.AUTH_REQUIRED.exit_status == 34, anonymous.stderr
    assert "appliance login" in anonymous.stderr and "--token" in anonymous.stderr

    _login(site, "admin", "sec-admin", boot["totp_secret"])
    operator_secret = _add(site, "admin", "op-1", "operator")
    _add(site, "admin", "aud-1", "auditor")
    audit_token = json.loads(site.ok("admin", "admin", "token", "create", "--account", "aud-1", "--scope", "audit",
                                     "--label", "test export", "--json"))
    assert audit_token["token"].startswith("apt_")

    # an operator's session: known, but its role may not delete
    _login(site, "desk", "op-1", operator_secret)
    refused = site.run("desk", "subject", "delete", subject)
    assert refused.returncode == ErrorCode.PERMISSION_DENIED.exit_status == 25, refused.stderr
    assert "op-1 (operator) may not delete a subject" in refused.stderr
    assert site.run("desk", "admin", "list").returncode == ErrorCode.PERMISSION_DENIED.exit_status

    # the security administrator's session: it works
    receipt = json.loads(site.ok("admin", "subject", "delete", subject))
    assert receipt["subject_id"] == subject

    # the auditor's token reads the log: the account acted, not the OS user
    exported = json.loads(site.ok("nobody", "audit", "export", "--token", audit_token["token"]))
    deletes = [e for e in exported if e["action"] == "subject.delete"]
    assert [e["actor"] for e in deletes] == ["sec-admin"] and deletes[0]["result"] == "ok"
    denied = [e for e in exported if e["result"] == "denied" and e["actor"] == "op-1"]
    assert denied, "the operator's refused delete is on record under its account"
    assert OS_USER not in {e["actor"] for e in exported} and not any(e["actor"].startswith("os:") for e in exported)
    # the same token through APPLIANCE_TOKEN; its scope does not reach subjects
    assert site.run("nobody", "subject", "list", APPLIANCE_TOKEN=audit_token["token"]).returncode == 25

    # logout ends the session on the server too: the old token no longer works
    old = site.session_file("desk").read_text()
    assert site.ok("desk", "logout").strip() == "logged out" and not site.session_file("desk").exists()
    site.session_file("desk").write_text(old)
    site.session_file("desk").chmod(0o600)
    ended = site.run("desk", "subject", "list")
    assert ended.returncode == ErrorCode.SESSION_EXPIRED.exit_status, ended.stderr
    site.session_file("desk").unlink()
    assert site.run("desk", "subject", "list").returncode == ErrorCode.AUTH_REQUIRED.exit_status


def test_tokens_from_the_cli_are_scoped_listed_and_revoked(site, tmp_path):
    boot = json.loads(site.ok("admin", "admin", "bootstrap", "--account", "sec-admin",
                              "--password-file", str(site.password), "--json"))
    _login(site, "admin", "sec-admin", boot["totp_secret"])
    _add(site, "admin", "sys-1", "system_administrator")
    out = tmp_path / "maint.token"
    assert "written to" in site.ok("admin", "admin", "token", "create", "--account", "sys-1",
                                   "--scope", "maintenance", "--days", "2", "--out", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    token = out.read_text().strip()
    assert token not in site.ok("admin", "admin", "token", "list")  # listings never show a token
    (listed,) = json.loads(site.ok("admin", "admin", "token", "list", "--json"))
    assert (listed["account"], listed["scopes"], listed["revoked"]) == ("sys-1", ["maintenance"], False)
    # the file form, as the maintenance unit uses it
    checked = site.run("nobody", "store", "check", APPLIANCE_TOKEN_FILE=str(out))
    assert checked.returncode == 0, checked.stderr
    out.chmod(0o644)  # readable by others: refused, not used
    assert site.run("nobody", "store", "check", APPLIANCE_TOKEN_FILE=str(out)).returncode == 34
    out.chmod(0o600)
    # a token cannot manage tokens or accounts, and a scope outside the role adds nothing
    assert site.run("nobody", "admin", "token", "list", "--token", token).returncode == 0  # its own only
    assert site.run("nobody", "admin", "list", "--token", token).returncode == ErrorCode.PERMISSION_DENIED.exit_status
    assert site.run("nobody", "subject", "list", "--token", token).returncode == ErrorCode.PERMISSION_DENIED.exit_status
    unknown = site.run("admin", "admin", "token", "create", "--account", "sys-1", "--scope", "everything", "--json")
    assert unknown.returncode != 0 and "people:read" in unknown.stderr
    piped = site.run("admin", "admin", "token", "create", "--account", "sys-1", "--scope", "audit")
    assert piped.returncode != 0 and "pipe" in piped.stderr  # a token is not printed to a pipe unasked
    site.ok("admin", "admin", "token", "revoke", listed["token_id"])
    revoked = site.run("nobody", "store", "check", "--token", token)
    assert revoked.returncode == ErrorCode.TOKEN_INVALID.exit_status and "revoked" in revoked.stderr


def test_a_session_file_others_can_read_is_refused(site):
    boot = json.loads(site.ok("admin", "admin", "bootstrap", "--account", "sec-admin",
                              "--password-file", str(site.password), "--json"))
    _login(site, "admin", "sec-admin", boot["totp_secret"])
    site.session_file("admin").chmod(0o644)
    refused = site.run("admin", "subject", "list")
    assert refused.returncode == ErrorCode.TOKEN_INVALID.exit_status and "chmod 600" in refused.stderr


IDLE_TEST = "test_an_idle_session_ends_after_the_configured_time"


@pytest.fixture(scope="module", autouse=True)
def idle_session(request, tmp_path_factory):
    """The idle-session scenario, started in a thread of its own before the module's first test:
    its wait of IDLE_S + 1 s overlaps the other tests instead of adding to them (only when the
    idle test is selected). Its own site, its own processes; the test reads what it saw."""
    seen: dict = {}
    ours = [item for item in request.session.items if getattr(item, "module", None) is request.module]
    if not any(item.name == IDLE_TEST for item in ours):
        yield seen
        return

    def scenario() -> None:
        try:
            site = Site(tmp_path_factory.mktemp("idle"))
            site.ok("setup", "keys", "init")
            boot = json.loads(site.ok("admin", "admin", "bootstrap", "--account", "sec-admin",
                                      "--password-file", str(site.password), "--json"))
            site.config.write_text(f"[ops]\nbroker_port = 1\nsession_idle_s = {IDLE_S}\n")
            _login(site, "admin", "sec-admin", boot["totp_secret"])
            seen["active"] = site.run("admin", "subject", "list")
            time.sleep(IDLE_S + 1)
            seen["idle"] = site.run("admin", "subject", "list")
        except BaseException as exc:  # noqa: BLE001 - raised again in the test
            seen["error"] = exc

    thread = threading.Thread(target=scenario, name="idle-session", daemon=True)
    thread.start()
    seen["thread"] = thread
    yield seen
    thread.join(IDLE_WAIT_S)


def test_an_idle_session_ends_after_the_configured_time(idle_session):
    idle_session["thread"].join(IDLE_WAIT_S)
    if "error" in idle_session:
        raise idle_session["error"]
    assert idle_session["active"].returncode == 0, idle_session["active"].stderr
    idle = idle_session["idle"]
    assert idle.returncode == ErrorCode.SESSION_EXPIRED.exit_status and "inactivity" in idle.stderr

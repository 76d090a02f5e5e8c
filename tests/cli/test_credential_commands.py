"""``appliance enroll --refuse-face`` and ``appliance credential set|clear`` as real commands in a
subprocess, on a data folder of their own, acting through API tokens of real accounts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.config import load_config
from appliance.errors import ErrorCode
from appliance.matching.credentials import pin_matches
from appliance.security.roles import Principal, Role
from appliance.stores.identity import FACE_REFUSED_SCOPE
from appliance.stores.protected import ProtectedData

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from authkit import make_token  # noqa: E402

READER = Principal("test-reader", Role.OPERATOR)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("credential-cli")
    data = root / "var"
    data.mkdir()
    config = load_config()
    return {"root": root, "data": data, "operator": make_token(data, Role.OPERATOR, config=config),
            "auditor": make_token(data, Role.AUDITOR, config=config)}


def run(site: dict, *args: str, token: str = "operator") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_TOKEN")}
    env.update(APPLIANCE_DATA_DIR=str(site["data"]), XDG_RUNTIME_DIR=str(site["root"]))
    command = [sys.executable, "-m", "appliance", "--token", site[token], *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def stores(site: dict) -> ProtectedData:
    os.environ["APPLIANCE_DATA_DIR"] = str(site["data"])
    try:
        return ProtectedData.from_config(load_config())
    finally:
        del os.environ["APPLIANCE_DATA_DIR"]


def pin_file(site: dict, pin: str, mode: int = 0o600) -> Path:
    path = site["root"] / f"pin-{pin}.txt"
    path.write_text(pin + "\n", encoding="ascii")
    path.chmod(mode)
    return path


def test_a_person_refusing_face_recognition_is_registered_with_a_card_and_gets_a_pin(site):
    done = run(site, "enroll", "--refuse-face", "--name", "Li Si", "--consent-ref", "form-31", "--card", "0012345",
               "--json")
    assert done.returncode == 0, done.stderr
    subject = json.loads(done.stdout)["subject_id"]
    assert json.loads(done.stdout)["face"] == "refused"
    with_photo = run(site, "enroll", "--refuse-face", "x.jpg", "--name", "Wang Wu", "--consent-ref", "f-1",
                     "--card", "77")
    assert with_photo.returncode == ErrorCode.ENROLL_FAILED.exit_status and "takes no photos" in with_photo.stderr

    shared = pin_file(site, "7531", 0o644)
    refused = run(site, "credential", "set", subject, "--pin-file", str(shared))
    assert refused.returncode == ErrorCode.PERMISSION_DENIED.exit_status and "chmod 600" in refused.stderr
    short = run(site, "credential", "set", subject, "--pin-file", str(pin_file(site, "12")))
    assert short.returncode == ErrorCode.MESSAGE_REJECTED.exit_status and "4-12 digits" in short.stderr
    done = run(site, "credential", "set", subject, "--pin-file", str(pin_file(site, "975310")), "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["changed"] == ["pin"], done.stderr
    assert "975310" not in done.stdout + done.stderr

    data = stores(site)
    try:
        holder, pin_hash, face_refused = data.identity.card_holder(READER, "0012345")
        assert (holder, face_refused) == (subject, True) and pin_matches("975310", pin_hash)
        assert [c.scope for c in data.identity.consents(READER, subject)] == [FACE_REFUSED_SCOPE]
        assert data.biometric.rows(subject) == []  # no template, nothing captured
        actions = [(e.action, e.result) for e in data.audit.entries() if e.object == subject]
        assert ("enrollment.face_refused", "ok") in actions and ("person.credential", "set") in actions
        assert all("975310" not in str(e) and "0012345" not in str(e) for e in data.audit.entries())
    finally:
        data.close()


def test_cards_are_one_persons_and_only_an_enrolling_account_changes_them(site):
    first = json.loads(run(site, "enroll", "--refuse-face", "--name", "Zhao Liu", "--consent-ref", "f-2",
                           "--card", "C-100", "--json").stdout)["subject_id"]
    second = json.loads(run(site, "enroll", "--refuse-face", "--name", "Qian Qi", "--consent-ref", "f-3",
                            "--card", "C-200", "--json").stdout)["subject_id"]
    taken = run(site, "credential", "set", second, "--card", "C-100")
    assert taken.returncode == ErrorCode.CARD_IN_USE.exit_status and "E604" in taken.stderr
    denied = run(site, "credential", "clear", first, token="auditor")
    assert denied.returncode == ErrorCode.PERMISSION_DENIED.exit_status
    assert run(site, "credential", "clear", first, "--card").returncode == 0
    assert run(site, "credential", "set", second, "--card", "C-100").returncode == 0  # free again
    data = stores(site)
    try:
        assert data.identity.card_holder(READER, "C-100")[0] == second
        assert data.identity.card_holder(READER, "C-200") is None
    finally:
        data.close()

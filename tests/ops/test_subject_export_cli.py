"""``appliance subject export ID``: the real command, run with a real account's token over a
site folder, writes the person's data (masked) and the signed receipt, owner-only, and no
trace of anyone else; an unmasked export is the security administrator's alone."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np

from appliance.config import load_config
from appliance.errors import ErrorCode
from appliance.matcher.subject_access import AccessReceipt
from appliance.ops import totp
from appliance.matcher.sync_store import EventRecord, open_sync_store
from appliance.protocol import messages, topics
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.roles import Principal, Role
from appliance.site import Site
from appliance.stores.protected import key_provider
from appliance.vision.templates import Template
from authkit import login_session, make_token

CLI_TIMEOUT_S = 120
OPERATOR = Principal("op", Role.OPERATOR)
DIMENSION = 512


def enroll(data, name: str, card: str, seed: int) -> str:
    subject = new_subject_id()
    data.register_person(OPERATOR, Person(subject, name, AgeBand.ADULT, Alternative.CARD, card_no=card))
    data.record_consent(OPERATOR, ConsentRecord(subject, ENROLL_SCOPE, "v1", time.time(), name))
    vector = np.random.default_rng(seed).normal(size=DIMENSION).astype(np.float32)
    data.enroll(OPERATOR, subject, Template(vector / np.linalg.norm(vector), "w600k-mbf", "1.0.0"),
                np.zeros(1, np.float32))
    return subject


def run(site_folder, config_path, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(site_folder), "APPLIANCE_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "appliance", "--config", str(config_path), "subject", "export", *args],
                          capture_output=True, text=True, env=env, timeout=CLI_TIMEOUT_S)


def unmasked_by_a_security_session(root, config_path, subject: str) -> str:
    """Unmasked reading needs the security administrator's interactive session (password and
    TOTP through ``appliance login``): API tokens never carry it."""
    account, password, secret = login_session(root, Role.SECURITY_ADMIN, config=load_config(config_path))
    runtime = root / "runtime"
    runtime.mkdir(mode=0o700)
    password_file = root / "password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("APPLIANCE_TOKEN")},
           "APPLIANCE_DATA_DIR": str(root), "XDG_RUNTIME_DIR": str(runtime)}
    base = [sys.executable, "-m", "appliance", "--config", str(config_path)]
    login = subprocess.run([*base, "login", "--account", account, "--password-file", str(password_file),
                            "--totp", totp.totp(secret)], capture_output=True, text=True, env=env,
                           timeout=CLI_TIMEOUT_S)
    assert login.returncode == 0, login.stderr
    done = subprocess.run([*base, "subject", "export", subject, "--unmasked"], capture_output=True, text=True, env=env,
                          timeout=CLI_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_subject_export_writes_one_persons_data_and_a_signed_receipt(tmp_path):
    site = Site(tmp_path)
    site.provision(("door-a", "door-b"), matchers=("matcher-1",))
    config = load_config()
    data = site.protected_data(config)
    a, b = enroll(data, "Li Si", "C-1001", 1), enroll(data, "Zhou Wu", "C-2002", 2)
    store = open_sync_store(data, key_provider(config.security, tmp_path))
    now = time.time()
    events = [EventRecord(messages.new_id(), "door-a", topics.EVENT, "pass", now - 5 * i,
                          {"outcome": "accepted", "reason": "match", "subject": who})
              for i, who in enumerate((a, b, a))]
    store.record_events(events, now)
    store.close()
    public = data.node.signing.public_key()
    data.close()
    site_config = tmp_path / "site.toml"
    site_config.write_text("[security]\n")
    operator = make_token(tmp_path, Role.OPERATOR, ("people:read",), config=load_config(site_config))

    out = tmp_path / "exports" / "li-si.json"
    done = run(tmp_path, site_config, operator, a, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert os.stat(out).st_mode & 0o777 == 0o600 and "access receipt" in done.stdout
    answer = json.loads(out.read_text(encoding="utf-8"))
    export, receipt = answer["export"], AccessReceipt(**answer["receipt"])
    assert export["person"]["name"] == "L* S*" and export["person"]["card_no"] == "*-**01"
    assert [e["event_id"] for e in export["events"]["items"]] == [events[2].event_id, events[0].event_id]
    assert receipt.verify(public) and receipt.subject_id == a and receipt.counts["events"] == 2
    text = out.read_text(encoding="utf-8")
    for trace in (b, "Zhou Wu", "Z**** W*", "C-2002", "Li Si", "C-1001", events[1].event_id):
        assert trace not in text, trace

    printed = run(tmp_path, site_config, operator, a)  # to stdout
    assert printed.returncode == 0 and json.loads(printed.stdout)["export"]["subject_id"] == a
    refused = run(tmp_path, site_config, operator, a, "--unmasked")
    assert refused.returncode == ErrorCode.PERMISSION_DENIED.exit_status and refused.stdout == ""
    security = make_token(tmp_path, Role.SECURITY_ADMIN, config=load_config(site_config))
    token_refused = run(tmp_path, site_config, security, a, "--unmasked")  # no token scope reveals identities
    assert token_refused.returncode == ErrorCode.PERMISSION_DENIED.exit_status
    unmasked = unmasked_by_a_security_session(tmp_path, site_config, a)
    assert json.loads(unmasked)["export"]["person"]["name"] == "Li Si"
    missing = run(tmp_path, site_config, operator, "s-never-held")
    assert missing.returncode == ErrorCode.SUBJECT_NOT_FOUND.exit_status

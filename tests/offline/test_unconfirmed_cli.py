"""Administrators see deletions that some device has not confirmed yet."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np

from appliance.config import load_config
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.roles import Principal, Role
from appliance.site import Site
from appliance.vision.templates import Template
from authkit import make_token


def test_subject_unconfirmed_lists_deletions_not_yet_applied_everywhere(tmp_path):
    site = Site(tmp_path)
    site.provision(("door-a", "door-b"), matchers=("matcher-1",))
    config = load_config()
    data = site.protected_data(config)
    operator, security = Principal("op", Role.OPERATOR), Principal("sec", Role.SECURITY_ADMIN)
    subject = new_subject_id()
    data.register_person(operator, Person(subject, "Li Si", AgeBand.ADULT, Alternative.CARD))
    data.record_consent(operator, ConsentRecord(subject, ENROLL_SCOPE, "v1", time.time(), "Li Si"))
    vector = np.ones(512, np.float32) / np.sqrt(512)
    data.enroll(operator, subject, Template(vector, "w600k-mbf", "1.0.0"), np.zeros(1, np.float32))
    data.delete_subject(security, subject)
    data.close()
    site_config = tmp_path / "site.toml"
    site_config.write_text("[security]\n")
    token = make_token(tmp_path, Role.SECURITY_ADMIN, ("people:write",), config=load_config(site_config))
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(tmp_path), "APPLIANCE_TOKEN": token}
    result = subprocess.run([sys.executable, "-m", "appliance", "--config", str(site_config), "subject", "unconfirmed"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1, result.stderr
    assert subject in result.stdout and "door-a" in result.stdout and "door-b" in result.stdout
    assert "Li Si" not in result.stdout and "1 deletion(s) not confirmed by every one of 2 device(s)" in result.stdout

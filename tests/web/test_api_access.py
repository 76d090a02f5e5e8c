"""``/api/access`` over the real console application: the rules read by an auditor, changed by
a security administrator (audited, a new revision each), refused to an operator, bad input a
clear 4xx that changes nothing."""
from __future__ import annotations

import time

import numpy as np
import pytest

from apikit import api_config, bearer, running, tokens_for
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.keys import ensure_keys
from appliance.security.roles import Principal, Role
from appliance.stores.protected import key_provider
from appliance.vision.templates import Template

DESK = Principal("desk", Role.OPERATOR)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("api-access")
    config = api_config()
    ensure_keys(key_provider(config.security, root))
    tokens = tokens_for(root, config)
    with running(root, config) as client:
        services = client.app.state.services
        with services.stores():
            subject = new_subject_id()
            services.data.register_person(DESK, Person(subject, "Zhao Min", AgeBand.ADULT, Alternative.CARD))
            services.data.record_consent(DESK, ConsentRecord(subject, ENROLL_SCOPE, "v1", time.time(), "Zhao Min"))
            vector = np.random.default_rng(3).normal(size=512).astype(np.float32)
            services.data.enroll(DESK, subject, Template(vector / np.linalg.norm(vector), "w600k-mbf", "1.0.0"),
                                 np.zeros(1, np.float32))
        client.subject, client.tokens = subject, tokens
        yield client


def head(client) -> int:
    services = client.app.state.services
    with services.stores():
        return services.data.biometric.revision


def test_rules_are_read_changed_and_audited(site):
    auditor, admin = bearer(site.tokens[Role.AUDITOR]), bearer(site.tokens[Role.SECURITY_ADMIN])
    first = site.get("/api/access", headers=auditor).json()
    assert first["enforced"] is False and "every door" in first["warning"]
    changes = [("put", "/api/access/groups/lab", {"schedule": {"mon": ["22:00-06:00"], "holidays": "closed"}}),
               ("put", "/api/access/groups/lab/doors/door-2", None),
               ("put", f"/api/access/groups/lab/members/{site.subject}", None),
               ("put", "/api/access/holidays/2026-10-01", {"name": "National Day"}),
               ("put", f"/api/access/people/{site.subject}/validity", {"valid_until": time.time() + 86400}),
               ("put", "/api/access/areas/lab", {"mode": "hard", "entries": ["door-2"], "exits": ["door-1"]})]
    for method, path, body in changes:
        before = head(site)
        answer = site.request(method.upper(), path, headers=admin, json=body)
        assert answer.status_code == 200 and answer.json()["ok"], (path, answer.text)
        assert head(site) > before, path
    rules = site.get("/api/access", headers=auditor).json()
    assert rules["enforced"] and rules["warning"] == ""
    assert rules["groups"][0]["doors"] == ["door-2"] and rules["groups"][0]["members"] == 1
    assert rules["areas"]["lab"]["doors"] == {"door-2": "entry", "door-1": "exit"}
    assert site.delete(f"/api/access/groups/lab/members/{site.subject}", headers=admin).json()["result"] == \
        {"changed": True}
    services = site.app.state.services
    with services.stores():
        actions = {e.action for e in services.data.audit.entries()}
    assert {"access.group.create", "access.doors.grant", "access.member.add", "access.member.remove",
            "access.holiday.add", "access.validity.set", "access.area.set"} <= actions


def test_an_operator_may_read_but_not_change_and_bad_input_changes_nothing(site):
    operator, admin = bearer(site.tokens[Role.OPERATOR]), bearer(site.tokens[Role.SECURITY_ADMIN])
    assert site.get("/api/access", headers=operator).status_code == 200
    before = head(site)
    assert site.put("/api/access/groups/x", headers=operator, json={}).status_code == 403
    for path, body in (("/api/access/groups/x", {"schedule": {"mon": ["08:00-07:60"]}}),
                       ("/api/access/groups/bad%20name", {}), ("/api/access/groups/nosuch/doors/door-1", None),
                       ("/api/access/holidays/2026-02-30", {}), ("/api/access/areas/a", {"mode": "sometimes"})):
        answer = site.put(path, headers=admin, json=body)
        assert answer.status_code in (404, 422), (path, answer.status_code)
    assert head(site) == before

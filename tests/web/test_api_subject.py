"""``GET /api/people/{id}/export`` over the real console application: one person's data,
masked for the requester, no trace of anyone else, a receipt the node signed; unmasked only
in a security administrator's session; refused to roles that may not read people."""
from __future__ import annotations

import time

import numpy as np
import pytest

from apikit import api_config, bearer, provision_devices, running, tokens_for
from appliance.matcher.subject_access import AccessReceipt, export_digest
from appliance.matcher.sync_store import EventRecord
from appliance.ops import totp
from appliance.protocol import messages, topics
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.roles import Principal, Role
from appliance.vision.templates import Template
from authkit import login_session

DESK = Principal("desk", Role.OPERATOR)
NAME_A, NAME_B = "Chen Jing", "Liu Yang"


def enroll(data, name: str, card: str, seed: int) -> str:
    subject = new_subject_id()
    data.register_person(DESK, Person(subject, name, AgeBand.ADULT, Alternative.CARD, card_no=card))
    data.record_consent(DESK, ConsentRecord(subject, ENROLL_SCOPE, "v3", time.time(), name, reference="f-88"))
    vector = np.random.default_rng(seed).normal(size=512).astype(np.float32)
    data.enroll(DESK, subject, Template(vector / np.linalg.norm(vector), "w600k-mbf", "1.0.0"), np.zeros(1, np.float32))
    return subject


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("subject-export")
    config = api_config()
    provision_devices(root)
    tokens = tokens_for(root, config)
    admin = login_session(root, Role.SECURITY_ADMIN, config=config)
    with running(root, config) as client:
        services = client.app.state.services
        with services.stores():
            a, b = enroll(services.data, NAME_A, "C-5551", 1), enroll(services.data, NAME_B, "C-6662", 2)
            now = time.time()
            events = [EventRecord(messages.new_id(), door, topics.EVENT, "pass", now - i,
                                  {"outcome": "accepted", "reason": "match", "subject": who})
                      for i, (door, who) in enumerate((("door-1", a), ("door-2", b), ("door-2", a)))]
            services.sync.record_events(events, now)
            public = services.data.node.signing.public_key()
        yield client, tokens, admin, {"a": a, "b": b, "events": events, "public": public}


def test_an_operator_gets_one_persons_data_masked_with_a_signed_receipt(site):
    client, tokens, _, held = site
    answer = client.get(f"/api/people/{held['a']}/export", headers=bearer(tokens[Role.OPERATOR]))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    export, receipt = body["export"], AccessReceipt(**body["receipt"])
    assert export["person"]["name"] == "C*** J***" and export["consents"][0]["text_version"] == "v3"
    assert [e["event_id"] for e in export["events"]["items"]] == [held["events"][2].event_id,
                                                                  held["events"][0].event_id]
    assert receipt.verify(held["public"]) and receipt.digest == export_digest(export)
    for trace in (held["b"], NAME_B, "L*** Y***", "C-6662", NAME_A, "C-5551", held["events"][1].event_id):
        assert trace not in answer.text, trace


def test_unmasked_takes_a_security_administrators_session_and_others_are_refused(site):
    client, tokens, admin, held = site
    url = f"/api/people/{held['a']}/export"
    assert client.get(url, params={"unmasked": True}, headers=bearer(tokens[Role.OPERATOR])).status_code == 403
    assert client.get(url, params={"unmasked": True}, headers=bearer(tokens[Role.SECURITY_ADMIN])).status_code == 403
    assert client.get(url, headers=bearer(tokens[Role.AUDITOR])).status_code == 403
    assert client.get(url, headers=bearer(tokens[Role.SYSTEM_ADMIN])).status_code == 403
    assert client.get("/api/people/s-never-held/export", headers=bearer(tokens[Role.OPERATOR])).status_code == 404
    account, password, secret = admin
    session = client.post("/api/session", json={"account": account, "password": password,
                                                "totp": totp.totp(secret)}).json()["token"]
    client.cookies.clear()
    revealed = client.get(url, params={"unmasked": True}, headers=bearer(session))
    assert revealed.status_code == 200 and revealed.json()["export"]["person"]["name"] == NAME_A
    assert revealed.json()["receipt"]["masked"] is False
    audit = client.get("/api/audit", params={"limit": 1000}, headers=bearer(tokens[Role.AUDITOR])).json()["items"]
    exports = [(e["object"], e["result"]) for e in audit if e["action"] == "subject.export"]
    assert (held["a"], "ok") in exports and ("s-never-held", "refused") in exports
    assert any(e["action"] == "identity.reveal" and e["object"] == held["a"] and e["result"] == "ok" for e in audit)

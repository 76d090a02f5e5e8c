"""``POST /api/devices/{name}/enroll-capture`` end to end: the console application (its real
stores and accounts, API tokens from ``authkit``) asks a real ``appliance edge`` process -
real models, a folder of real face photos as its camera, ``[device] enroll_capture = true``
- over a real Mosquitto with TLS and the rendered access rules, under the console identity
of ``[console] capture_identity``; the door's answer is judged again and goes through the
enrollment desk. The site and the door are those of ``tests/transport``'s capture test."""
from __future__ import annotations

import dataclasses
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "transport"))

from apikit import BASE_URL, GENEROUS, bearer, running  # noqa: E402
from authkit import make_token  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from polling import wait_for  # noqa: E402
from test_enroll_capture_e2e import (  # noqa: E402,F401 - capture_site is a fixture used by name
    CONSOLE, DOOR, OFFLINE_DOOR, REVOKED_DOOR, capture_site,
)

from appliance.config import Config  # noqa: E402
from appliance.config import ConsoleConfig  # noqa: E402
from appliance.security.roles import Role  # noqa: E402
from appliance.web.app import create_app  # noqa: E402

ROUTE = "/api/devices/{}/enroll-capture"
PERSON = {"name": "Zhang San", "consent_ref": "form-2026-0042", "frames": 3, "timeout_s": 60.0}
OFFLINE_TIMEOUT_S = 1.0  # the client waits this plus its answer margin (5 s)
QUICK_S = 3.0  # another request while a capture is pending answers well within this


def console_config(config: Config, site, **console) -> Config:
    """The site's configuration as ``appliance console`` on that host reads it."""
    return dataclasses.replace(
        config, security=site.security(config),
        console=dataclasses.replace(ConsoleConfig(), **{**GENEROUS, "capture_identity": CONSOLE, **console}),
        ops=dataclasses.replace(config.ops, broker_host=site.broker.host, broker_port=site.broker.port))


@pytest.fixture(scope="module")
def api(capture_site, config):  # noqa: F811 - the imported fixture
    settings = console_config(config, capture_site)
    tokens = {"operator": make_token(capture_site.folder, Role.OPERATOR, config=settings),
              "reader": make_token(capture_site.folder, Role.OPERATOR, scopes=("people:read",), config=settings),
              "auditor": make_token(capture_site.folder, Role.AUDITOR, config=settings)}
    with running(capture_site.folder, settings) as client:
        yield client, tokens


def ask(client: TestClient, token: str, device: str, **fields):
    return client.post(ROUTE.format(device), json={**PERSON, **fields}, headers=bearer(token))


def audit_of(client: TestClient, token: str, action: str) -> list[dict]:
    answer = client.get("/api/audit", params={"limit": 1000}, headers=bearer(token))
    assert answer.status_code == 200, answer.text
    return [entry for entry in answer.json()["items"] if entry["action"] == action]


def test_a_door_capture_enrolls_then_finds_the_duplicate_and_a_busy_door_says_so(api):
    client, tokens = api
    operator = tokens["operator"]
    capture = client.app.state.services.capture()
    answers = {}
    first = threading.Thread(target=lambda: answers.setdefault("first", ask(client, operator, DOOR)))
    first.start()
    assert wait_for(lambda: capture.stats["requests"] >= 1, 30.0)
    busy = ask(client, operator, DOOR, consent_ref="form-2026-0043")  # while the door still captures
    first.join(120.0)
    assert busy.status_code == 409, busy.text
    assert busy.json()["device_status"] == "busy" and "busy" in busy.json()["error"]["detail"]
    enrolled = answers["first"]
    assert enrolled.status_code == 201, enrolled.text
    body = enrolled.json()
    assert body["status"] == "enrolled" and body["subject_id"] and body["images_used"] >= 1
    assert "Zhang" not in enrolled.text  # the answer names the pseudonym, never the person

    again = ask(client, operator, DOOR, name="Zhang S.", consent_ref="form-2026-0044")
    assert again.status_code == 409, again.text
    assert again.json()["status"] == "duplicate" and body["subject_id"] in again.json()["duplicate_of"]

    entries = audit_of(client, tokens["auditor"], "enrollment.capture")
    mine = [e for e in entries if e["object"] == DOOR]
    assert [e["result"] for e in mine].count("requested") == 3
    assert {"enrolled", "duplicate", "busy"} <= {e["result"] for e in mine}
    assert {e["actor"] for e in mine} == {enrolled_actor(client, operator)}
    assert any(body["subject_id"] in e.get("detail", "") for e in mine if e["result"] == "enrolled")
    assert not any("Zhang" in str(e) for e in entries)
    desk = audit_of(client, tokens["auditor"], "enrollment")
    assert any(e["object"] == body["subject_id"] and e["result"] == "ok" for e in desk)


def test_unknown_revoked_and_badly_named_doors_are_refused_clearly(api):
    client, tokens = api
    unknown = ask(client, tokens["operator"], "door-z")
    assert unknown.status_code == 409 and unknown.json()["error"]["name"] == "PKI_ERROR"
    assert "not a device of this site" in unknown.json()["error"]["detail"]
    revoked = ask(client, tokens["operator"], REVOKED_DOOR)
    assert revoked.status_code == 409 and "revoked" in revoked.json()["error"]["detail"]
    assert ask(client, tokens["operator"], "Door Z").status_code == 422  # not a device name at all
    results = {e["object"]: e["result"] for e in audit_of(client, tokens["auditor"], "enrollment.capture")}
    assert results["door-z"] == "refused" and results[REVOKED_DOOR] == "refused"


def test_an_offline_door_times_out_while_other_requests_go_on(api):
    client, tokens = api
    answers = {}
    pending = threading.Thread(target=lambda: answers.setdefault(
        "offline", ask(client, tokens["operator"], OFFLINE_DOOR, timeout_s=OFFLINE_TIMEOUT_S)))
    started = time.monotonic()
    pending.start()
    time.sleep(0.5)
    meanwhile = client.get("/api/audit", params={"limit": 5}, headers=bearer(tokens["auditor"]))
    assert meanwhile.status_code == 200 and time.monotonic() - started < QUICK_S
    assert pending.is_alive()  # the stores were free while the console waited for the door
    pending.join(30.0)
    offline = answers["offline"]
    assert offline.status_code == 504, offline.text
    assert offline.json()["error"]["name"] == "REQUEST_TIMEOUT" and offline.json()["device_status"] == "no_answer"
    refused = [e for e in audit_of(client, tokens["auditor"], "enrollment.capture") if e["object"] == OFFLINE_DOOR]
    assert [(e["result"], e.get("detail")) for e in refused][-1] == ("no_answer", "REQUEST_TIMEOUT")
    assert [e["result"] for e in refused] == ["requested", "no_answer"]


def test_without_the_enroll_scope_nothing_is_asked(api):
    client, tokens = api
    before = client.app.state.services.capture().stats["requests"]
    for token in (tokens["reader"], tokens["auditor"]):
        denied = ask(client, token, DOOR)
        assert denied.status_code == 403 and denied.json()["error"]["name"] == "PERMISSION_DENIED"
    assert client.app.state.services.capture().stats["requests"] == before
    denials = audit_of(client, tokens["auditor"], "api.denied")
    assert sum(e["object"] == ROUTE.format("{name}") for e in denials) == 2


def test_too_long_a_capture_or_an_old_notice_is_refused_before_the_door_is_asked(api):
    client, tokens = api
    before = client.app.state.services.capture().stats["requests"]
    too_long = ask(client, tokens["operator"], DOOR, timeout_s=61.0)
    assert too_long.status_code == 422 and "capture_timeout_s" in too_long.json()["error"]["detail"]
    old = ask(client, tokens["operator"], DOOR, notice_version="v0-old")
    assert old.status_code == 422 and old.json()["error"]["name"] == "CONSENT_MISSING"
    assert client.app.state.services.capture().stats["requests"] == before


def test_without_a_console_identity_the_answer_says_what_to_run(tmp_path):
    settings = dataclasses.replace(Config(), console=dataclasses.replace(ConsoleConfig(), **GENEROUS,
                                                                         capture_identity="console-9"))
    token = make_token(tmp_path, Role.OPERATOR, config=settings)
    with TestClient(create_app(settings, tmp_path), base_url=BASE_URL) as client:
        answer = ask(client, token, DOOR)
    assert answer.status_code == 409 and answer.json()["error"]["name"] == "PKI_ERROR"
    assert "appliance provision console console-9" in answer.json()["error"]["detail"]


def enrolled_actor(client: TestClient, token: str) -> str:
    """The account behind ``token`` (the audit names accounts, not tokens)."""
    services = client.app.state.services
    with services.stores():
        return services.accounts.authenticate(token).actor


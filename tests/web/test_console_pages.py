"""The console's rules without a browser: real accounts, stores and ``create_app`` over
``https://testserver`` (``apikit``), no face models but in one test (an enrollment at a door
here finds no console identity before any door or model is used); that one enrolls real
photos with the real models to see where the page says the face works.

Login refusals read the same whatever was wrong; the cookies are HttpOnly, Secure and
SameSite=Strict; every state-changing form needs the session's CSRF token; an idle session
ends; the navigation shows what the role may do and a page outside it is refused; no
template carries inline script or style (the Content-Security-Policy forbids them).
"""
from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import pytest
from starlette.requests import Request

from apikit import api_config, running
from appliance.errors import ApplianceError, ErrorCode, PartlyDone
from appliance.matcher.enrollment_types import ENROLLED, FAILED_TO_ENROL, EnrollmentOutcome, Rejection
from appliance.ops import totp
from appliance.ops.accounts import LOGIN_REFUSED, MAX_FAILURES
from appliance.security.roles import Role
from appliance.web import api_capture, console_base, console_capture, models
from appliance.web.auth import SESSION_COOKIE
from appliance.web.console_i18n import LANG_COOKIE
from appliance.web.http_errors import error_body
from authkit import login_session

TEMPLATES = Path(console_base.__file__).resolve().parent / "templates"
CSRF = re.compile(r'name="csrf" value="([^"]*)"')
NAV_LINK = re.compile(r'<nav aria-label="Console pages">(.*?)</nav>', re.S)
SEE_OTHER, UNAUTHORIZED, FORBIDDEN = 303, 401, 403
IDLE_S = 0.5
# what each role's navigation shows (the pages it may open)
NAVIGATION = {
    Role.OPERATOR: ["/people", "/enroll", "/events", "/access"],
    Role.SECURITY_ADMIN: ["/people", "/enroll", "/doors", "/events", "/access", "/audit", "/accounts"],
    Role.SYSTEM_ADMIN: ["/doors", "/events", "/access", "/audit"],
    Role.AUDITOR: ["/events", "/access", "/audit"],
}


def csrf_of(html: str) -> str:
    return CSRF.search(html).group(1)


def log_in(client, account: tuple[str, str, str]):
    name, password, secret = account
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"account": name, "password": password, "code": totp.totp(secret),
                                       "csrf": token}, follow_redirects=False)


@pytest.fixture
def console(tmp_path):
    config = api_config()
    login_session(tmp_path, Role.AUDITOR, config)  # the folder's keys and first accounts, before the app opens it
    with running(tmp_path, config) as client:
        yield client, tmp_path, config


def test_every_refused_login_reads_the_same(console):
    client, root, config = console
    name, password, secret = login_session(root, Role.OPERATOR, config)
    wrong = [("nobody", password, totp.totp(secret)), (name, password + "x", totp.totp(secret)),
             (name, password, "000000" if totp.totp(secret) != "000000" else "111111")]
    wrong += [(name, "guess", "123456")] * MAX_FAILURES  # ... until the account is locked
    texts = set()
    for who, word, code in wrong:
        token = csrf_of(client.get("/login").text)
        answer = client.post("/login", data={"account": who, "password": word, "code": code, "csrf": token})
        assert answer.status_code == UNAUTHORIZED
        texts.add(re.search(r'id="login-refused">([^<]*)<', answer.text).group(1))
    assert texts == {LOGIN_REFUSED.replace("'", "&#39;")}
    assert log_in(client, (name, password, secret)).status_code == UNAUTHORIZED  # locked: the right password too


def test_the_login_form_needs_its_own_token(console):
    client, root, config = console
    name, password, secret = login_session(root, Role.AUDITOR, config)
    client.get("/login")
    answer = client.post("/login", data={"account": name, "password": password, "code": totp.totp(secret),
                                         "csrf": "made-up"}, follow_redirects=False)
    assert answer.status_code == UNAUTHORIZED and SESSION_COOKIE not in answer.cookies


def test_cookies_and_headers(console):
    client, root, config = console
    login_page = client.get("/login")
    policy = login_page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    assert login_page.headers["x-frame-options"] == "DENY"
    assert login_page.headers["cache-control"] == "no-store"
    answer = log_in(client, login_session(root, Role.AUDITOR, config))
    assert answer.status_code == SEE_OTHER
    cookies = answer.headers.get_list("set-cookie")
    for name in (SESSION_COOKIE, console_base.CSRF_COOKIE):
        (line,) = [c for c in cookies if c.startswith(name + "=")]
        assert {"HttpOnly", "Secure", "SameSite=strict"} <= {part.strip() for part in line.split(";")}


@pytest.mark.parametrize("role", list(NAVIGATION))
def test_the_navigation_shows_what_the_role_may_do(console, role):
    client, root, config = console
    first = log_in(client, login_session(root, role, config))
    assert first.headers["location"] == "/"
    start = client.get("/", follow_redirects=False)
    assert start.headers["location"] == NAVIGATION[role][0]
    page = client.get(NAVIGATION[role][-1])  # the last needs no face models (people does)
    links = re.findall(r'href="([^"]+)"', NAV_LINK.search(page.text).group(1))
    assert links == NAVIGATION[role]
    assert role.value.replace("_", " ") in page.text  # the role badge
    for path in set(p for paths in NAVIGATION.values() for p in paths) - set(NAVIGATION[role]) - {"/people"}:
        refused = client.get(path, follow_redirects=False)
        assert refused.status_code == FORBIDDEN, path
        assert "permission denied" in refused.text


def test_state_changing_forms_need_the_sessions_token(console):
    client, root, config = console
    log_in(client, login_session(root, Role.SECURITY_ADMIN, config))
    page = client.get("/accounts")
    token = csrf_of(page.text)
    new = {"name": "desk-9", "role": "operator", "password": "Correct-Horse-Battery-77"}
    for forged in ("", "0" * len(token), token[:-1] + ("0" if token[-1] != "0" else "1")):
        answer = client.post("/accounts", data={**new, "csrf": forged})
        assert answer.status_code == FORBIDDEN and "came from elsewhere" in answer.text
    assert "desk-9" not in client.get("/accounts").text  # nothing was created

    other = client.__class__(client.app, base_url=str(client.base_url))  # another browser, its own session
    log_in(other, login_session(root, Role.SECURITY_ADMIN, config))
    theirs = csrf_of(other.get("/accounts").text)
    assert theirs != token
    assert client.post("/accounts", data={**new, "csrf": theirs}).status_code == FORBIDDEN  # bound to the session
    created = client.post("/accounts", data={**new, "csrf": token})
    assert created.status_code == 200 and 'id="totp-secret"' in created.text

    assert client.post("/logout", data={"csrf": ""}).status_code == FORBIDDEN
    assert client.get("/accounts", follow_redirects=False).status_code == 200  # still logged in
    out = client.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert out.status_code == SEE_OTHER and out.headers["location"] == console_base.LOGIN_PATH
    assert client.get("/accounts", follow_redirects=False).headers["location"].startswith(console_base.LOGIN_PATH)


def test_an_idle_session_ends(tmp_path):
    base = api_config()
    config = dataclasses.replace(base, ops=dataclasses.replace(base.ops, session_idle_s=IDLE_S))
    account = login_session(tmp_path, Role.AUDITOR, config)
    with running(tmp_path, config) as client:
        now = [time.time()]  # the accounts' clock, turned by the test: a loaded machine's slow login is not idleness
        client.app.state.services.accounts.clock = lambda: now[0]
        log_in(client, account)
        assert client.get("/audit", follow_redirects=False).status_code == 200
        now[0] += IDLE_S * 2
        ended = client.get("/audit", follow_redirects=False)
        assert ended.status_code == SEE_OTHER and "ended" in ended.headers["location"]
        assert "session ended" in client.get(ended.headers["location"]).text


def test_without_a_door_or_a_console_identity_the_enroll_page_says_what_to_do(console):
    client, root, config = console
    log_in(client, login_session(root, Role.OPERATOR, config))
    page = client.get("/enroll")
    assert "(no door is provisioned)" in page.text
    assert re.search(r'value="door"[^>]* disabled', page.text)
    answer = client.post("/enroll", data={"csrf": csrf_of(page.text), "consent_given": "true", "name": "Zhang San",
                                          "consent_ref": "F-1", "source": "door", "door": "door-1"})
    assert answer.status_code == 409 and "appliance provision console console" in answer.text
    assert "Zhang San" in answer.text  # kept in the form, for the next try
    photos = client.post("/enroll", data={"csrf": csrf_of(page.text), "consent_given": "true", "name": "Zhang San",
                                          "consent_ref": "F-1", "source": "upload"})
    assert photos.status_code == 422 and "choose the person&#39;s photos, or a door" in photos.text


@pytest.mark.parametrize("status", [*api_capture.DOOR_REFUSALS, "liveness_failed", api_capture.NO_ANSWER])
def test_every_way_a_door_capture_ends_before_the_desk_has_its_own_text(status):
    """What the route answers (``CaptureRefusal``) as the page shows it: a heading of its own."""
    code = {"liveness_failed": ErrorCode.LIVENESS_FAILED, api_capture.NO_ANSWER: ErrorCode.REQUEST_TIMEOUT}.get(
        status) or api_capture.DOOR_REFUSALS[status][0]
    body = models.CaptureRefusal(**error_body(code, "door-1 said so"), device="door-1",
                                 device_status="ok" if status == "liveness_failed" else status,
                                 guidance="what to do").model_dump()
    shown = console_capture.refusal_of(body)
    assert shown.heading == console_capture.REFUSAL_HEADINGS[status]
    assert (shown.detail, shown.guidance, shown.device) == ("door-1 said so", "what to do", "door-1")


def test_each_capture_is_listed_in_the_order_the_door_took_it():
    outcome = EnrollmentOutcome(ENROLLED, "s-1", 3, (Rejection("2", "eyes_closed", "open your eyes"),), attempts=2)
    rows = console_capture.capture_feedback("door-1", outcome)
    assert [(r["label"], r["verdict"]) for r in rows] == [("capture 1", "accepted"), ("capture 2", "rejected"),
                                                          ("capture 3", "accepted"), ("capture 4", "accepted")]
    assert (rows[1]["reason"], rows[1]["guidance"]) == ("eyes closed", "open your eyes")
    failed = EnrollmentOutcome(FAILED_TO_ENROL, "", 0, tuple(Rejection(str(n), "blur", "hold still")
                                                             for n in (1, 2)), attempts=1)
    assert [r["verdict"] for r in console_capture.capture_feedback("door-1", failed)] == \
        ["rejected", "rejected", "accepted"]


def test_no_template_has_inline_script_or_style():
    """The policy forbids them; one would silently not run in the browser."""
    for template in TEMPLATES.glob("*.html"):
        text = template.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template.name
        assert not re.search(r"\son[a-z]+\s*=", text), template.name
        assert not re.search(r"\sstyle\s*=|<style", text), template.name
        assert "javascript:" not in text, template.name


def test_the_enroll_page_warns_when_the_face_opens_no_door(console, faces):
    """A fresh site (no justification for central matching): enrolled without local-matching
    consent, the face opens no door - the result page says so in a warning box, with why and
    what to do, and the people page shows it; with the consent the face works at the doors."""
    client, root, config = console
    log_in(client, login_session(root, Role.OPERATOR, config))
    token = csrf_of(client.get("/enroll").text)

    def enroll(name: str, identity: str, **fields: str):
        files = [("images", (f.name, f.read_bytes(), "image/jpeg"))
                 for f in sorted((faces / "celeba-dev" / identity).glob("*.jpg"))[:3]]
        return client.post("/enroll", data={"csrf": token, "consent_given": "true", "name": name,
                                            "consent_ref": "F-7", "source": "upload", **fields}, files=files)

    unusable = enroll("Zhang San", "id07201")
    assert unusable.status_code == 200 and 'id="outcome-message">Enrolled as s-' in unusable.text
    box = re.search(r'<div class="notice warning" id="usable-warning" role="alert">(.*?)</div>', unusable.text, re.S)
    assert box and "this face opens no door" in box.group(1) and "no local-matching consent" in box.group(1)
    assert "appliance site matching justify" in box.group(1) and "--local-matching" in box.group(1)
    usable = enroll("Li Si", "id07206", local_matching="true", groups="lobby")
    assert usable.status_code == 200 and 'id="usable-warning"' not in usable.text
    assert re.search(r'id="usable-at">Where the face works: <strong>doors</strong>', usable.text)
    people = client.get("/people").text
    cells = re.findall(r'<td class="usable usable-(\w+)"', people)
    assert sorted(cells) == ["doors", "nowhere"]
    assert "door caches: lobby" in people and "no local-matching consent" in people


@pytest.mark.parametrize("language, nothing, partly", [
    ("en", "Nothing was saved: free disk space", "Part of it was done, as said above: free disk space"),
    ("zh_CN", "未保存任何内容", "已完成其中一部分"),
])
def test_a_full_disk_says_nothing_was_saved_only_when_nothing_was(language, nothing, partly):
    """The console's advice after E213: an erasure cut part way (``errors.PartlyDone``) did
    change something, so it is told to do it again, not that nothing was saved."""
    request = Request({"type": "http", "headers": [(b"cookie", f"{LANG_COOKIE}={language}".encode())]})
    whole = console_base.problem_text(request, ApplianceError(ErrorCode.STORE_UNWRITABLE, "identity.db: full"))
    part = console_base.problem_text(request, PartlyDone(ErrorCode.STORE_UNWRITABLE, "the erasure of s-1 is not "
                                                         "complete: templates (tombstoned) erased"))
    assert nothing in whole and partly not in whole
    assert partly in part and nothing not in part

"""Who may call what: Bearer tokens, sessions and the cookie; 401 for no or dead credentials,
403 for the wrong role or scope (audited); account management from a session only; the rate
limits. Real accounts, tokens and stores (``apikit``)."""
from __future__ import annotations

import time

import pytest

from apikit import api_config, bearer, running, tokens_for
from appliance.ops import totp
from appliance.security.roles import Role
from appliance.web.auth import SESSION_COOKIE
from authkit import login_session, make_token

# (method, path, the roles allowed): routes that need no upload or prepared data
READ_ROUTES = (
    ("GET", "/api/people", {Role.OPERATOR, Role.SECURITY_ADMIN}),
    ("GET", "/api/events", {Role.OPERATOR, Role.SECURITY_ADMIN, Role.SYSTEM_ADMIN, Role.AUDITOR}),
    ("GET", "/api/events.csv", {Role.OPERATOR, Role.SECURITY_ADMIN, Role.SYSTEM_ADMIN, Role.AUDITOR}),
    ("GET", "/api/devices", {Role.SECURITY_ADMIN, Role.SYSTEM_ADMIN}),
    ("GET", "/api/audit", {Role.AUDITOR}),
    ("POST", "/api/audit/verify", {Role.AUDITOR, Role.SECURITY_ADMIN, Role.SYSTEM_ADMIN}),
)
UNAUTHENTICATED = 401
FORBIDDEN = 403


@pytest.fixture
def site(tmp_path):
    config = api_config()
    tokens = tokens_for(tmp_path, config)
    with running(tmp_path, config) as client:
        yield client, tokens, config


@pytest.mark.parametrize("method,path,roles", READ_ROUTES)
def test_each_role_is_allowed_or_refused(site, method, path, roles):
    client, tokens, _ = site
    for role, token in tokens.items():
        answer = client.request(method, path, headers=bearer(token))
        if role in roles:
            assert answer.status_code == 200, (role, answer.text)
        else:
            assert answer.status_code == FORBIDDEN, (role, answer.text)
            assert answer.json()["error"]["name"] == "PERMISSION_DENIED"


def test_a_refused_role_is_in_the_audit_log(site):
    client, tokens, _ = site
    assert client.get("/api/people", headers=bearer(tokens[Role.AUDITOR])).status_code == FORBIDDEN
    entries = client.get("/api/audit", params={"limit": 1000}, headers=bearer(tokens[Role.AUDITOR])).json()["items"]
    denied = [e for e in entries if e["action"] == "api.denied"]
    assert denied and denied[-1]["object"] == "/api/people" and denied[-1]["result"] == "denied"


@pytest.mark.parametrize("headers,code", [
    ({}, "AUTH_REQUIRED"),
    ({"Authorization": "Bearer apt_0123456789ab_not-a-real-secret"}, "TOKEN_INVALID"),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, "TOKEN_INVALID"),
    ({"Authorization": "Bearer "}, "TOKEN_INVALID"),
    ({"Authorization": "Bearer some-session-that-never-was"}, "SESSION_EXPIRED"),
])
def test_missing_or_bad_credentials_are_401(site, headers, code):
    client, _, _ = site
    answer = client.get("/api/events", headers=headers)
    assert answer.status_code == UNAUTHENTICATED
    assert answer.json()["error"]["name"] == code
    assert answer.headers["www-authenticate"].startswith("Bearer")


def test_a_token_narrowed_by_scope_gets_only_its_scope(tmp_path):
    config = api_config()
    events_only = make_token(tmp_path, Role.OPERATOR, ("events:read",), config=config)
    with running(tmp_path, config) as client:
        assert client.get("/api/events", headers=bearer(events_only)).status_code == 200
        assert client.get("/api/people", headers=bearer(events_only)).status_code == FORBIDDEN


def _login(client, account: str, password: str, secret: str):
    return client.post("/api/session", json={"account": account, "password": password, "totp": totp.totp(secret)})


def test_session_login_bearer_cookie_and_logout(tmp_path):
    config = api_config()
    account, password, secret = login_session(tmp_path, Role.OPERATOR, config=config)
    with running(tmp_path, config) as client:
        refused = client.post("/api/session", json={"account": account, "password": "wrong", "totp": "000000"})
        assert refused.status_code == UNAUTHENTICATED and refused.json()["error"]["name"] == "LOGIN_FAILED"
        answer = _login(client, account, password, secret)
        assert answer.status_code == 200, answer.text
        session = answer.json()
        assert session["account"] == account and session["role"] == "operator"
        cookie = answer.headers["set-cookie"].lower()
        assert SESSION_COOKIE in cookie and "httponly" in cookie and "secure" in cookie and "samesite=strict" in cookie
        # the cookie alone authenticates (the client keeps it), and so does the Bearer token
        assert client.get("/api/people").status_code == 200
        # a change made with the cookie alone (what a cross-site form could send) is refused
        assert client.put("/api/people/x/groups", json={"groups": []}).status_code == FORBIDDEN
        assert client.put("/api/people/x/groups", json={"groups": []},
                          headers={"X-Requested-With": "console"}).status_code == 404
        client.cookies.clear()
        assert client.get("/api/people").status_code == UNAUTHENTICATED
        assert client.get("/api/people", headers=bearer(session["token"])).status_code == 200
        assert client.delete("/api/session", headers=bearer(session["token"])).status_code == 200
        dead = client.get("/api/people", headers=bearer(session["token"]))
        assert dead.status_code == UNAUTHENTICATED and dead.json()["error"]["name"] == "SESSION_EXPIRED"


def test_tokens_are_made_from_a_session_shown_once_and_die_when_revoked_or_expired(tmp_path):
    config = api_config()
    admin, password, secret = login_session(tmp_path, Role.SECURITY_ADMIN, config=config)
    auditor_token = make_token(tmp_path, Role.AUDITOR, config=config)
    with running(tmp_path, config) as client:
        session = bearer(_login(client, admin, password, secret).json()["token"])
        client.cookies.clear()
        # a token cannot make tokens or manage accounts: that needs a session
        assert client.post("/api/tokens", headers=bearer(auditor_token),
                           json={"account": admin, "scopes": ["audit"]}).status_code == FORBIDDEN
        assert client.get("/api/accounts", headers=bearer(auditor_token)).status_code == FORBIDDEN
        accounts = client.get("/api/accounts", headers=session).json()
        assert {a["role"] for a in accounts} >= {"security_administrator", "auditor"}
        made = client.post("/api/tokens", headers=session, json={"account": admin, "scopes": ["devices"],
                                                                 "ttl_days": 1, "label": "ci"})
        assert made.status_code == 201, made.text
        token, token_id = made.json()["token"], made.json()["token_id"]
        listed = client.get("/api/tokens", headers=session).json()
        assert token_id in {t["token_id"] for t in listed} and token not in str(listed)
        assert client.get("/api/devices", headers=bearer(token)).status_code == 200
        assert client.delete(f"/api/tokens/{token_id}", headers=session).status_code == 200
        revoked = client.get("/api/devices", headers=bearer(token))
        assert revoked.status_code == UNAUTHENTICATED and "revoked" in revoked.json()["error"]["detail"]
        short = client.post("/api/tokens", headers=session, json={"account": admin, "scopes": ["devices"],
                                                                  "ttl_days": 0.5 / 86_400})
        time.sleep(0.6)
        expired = client.get("/api/devices", headers=bearer(short.json()["token"]))
        assert expired.status_code == UNAUTHENTICATED and "expired" in expired.json()["error"]["detail"]


def test_accounts_are_created_by_a_security_administrator_session(tmp_path):
    config = api_config()
    admin, password, secret = login_session(tmp_path, Role.SECURITY_ADMIN, config=config)
    with running(tmp_path, config) as client:
        session = bearer(_login(client, admin, password, secret).json()["token"])
        made = client.post("/api/accounts", headers=session,
                           json={"name": "desk-2", "role": "operator", "password": "Amber-Kettle-Passw0rd-2026!"})
        assert made.status_code == 201, made.text
        assert made.json()["account"]["role"] == "operator" and made.json()["totp_secret"]
        again = client.post("/api/accounts", headers=session,
                            json={"name": "desk-2", "role": "operator", "password": "Amber-Kettle-Passw0rd-2026!"})
        assert again.status_code == 409
        weak = client.post("/api/accounts", headers=session, json={"name": "desk-3", "role": "operator",
                                                                    "password": "short"})
        assert weak.status_code == 422 and weak.json()["error"]["name"] == "PASSWORD_POLICY"
        bad_role = client.post("/api/accounts", headers=session, json={"name": "x", "role": "king", "password": "p"})
        assert bad_role.status_code == 422
        disabled = client.post("/api/accounts/desk-2/disable", headers=session)
        assert disabled.status_code == 200 and disabled.json()["disabled"]
        assert client.post("/api/accounts/desk-2/enable", headers=session).json()["disabled"] is False
        assert client.post("/api/accounts/desk-2/unlock", headers=session).status_code == 200
        assert client.post("/api/accounts/nobody/unlock", headers=session).status_code == 409
        assert client.post("/api/accounts/desk-2/promote", headers=session).status_code == 422


def test_rate_limit_answers_429_with_retry_after(tmp_path):
    config = api_config(requests_per_s=0.5, request_burst=3)
    token = make_token(tmp_path, Role.AUDITOR, config=config)
    with running(tmp_path, config) as client:
        codes = [client.get("/api/events", headers=bearer(token)).status_code for _ in range(5)]
        assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
        limited = client.get("/api/events", headers=bearer(token))
        assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1

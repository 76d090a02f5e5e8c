"""API tokens on real SQLCipher stores: scope narrowing, expiry, revocation, disabled accounts,
who may create them, hashing at rest, and the audit entries (the account, never the OS user)."""
from __future__ import annotations

import getpass

import pytest

from appliance.errors import ApplianceError, ErrorCode
from appliance.ops import totp
from appliance.ops.tokens import MAX_TOKEN_TTL_DAYS, SECONDS_PER_DAY, TOKEN_PREFIX
from appliance.security.consent import AgeBand, Alternative, Person
from appliance.security.roles import Permission, Role

STRONG = "Correct-Horse-42-battery"


def _session(accounts, clock, name, secret):
    clock.now += totp.STEP_S  # a fresh TOTP step for every login
    return accounts.login(name, STRONG, totp.totp(secret, clock.now))


@pytest.fixture
def admin(accounts, clock):
    secret = accounts.bootstrap("sec-admin", STRONG).totp_secret
    return accounts.principal(_session(accounts, clock, "sec-admin", secret).token)


def _account(accounts, admin, name, role):
    return accounts.create(admin, name, role, STRONG).totp_secret


def _code(error) -> ErrorCode:
    return error.value.code


def test_a_token_acts_as_its_account_narrowed_to_its_scopes(accounts, admin, data):
    _account(accounts, admin, "op-1", Role.OPERATOR)
    new = accounts.create_token(admin, "op-1", ["people:read"], 30, label="desk reports")
    assert new.token.startswith(TOKEN_PREFIX) and new.token_id in new.token and new.token not in repr(new)
    principal = accounts.authenticate(new.token)
    assert (principal.actor, principal.role, principal.scopes) == ("op-1", Role.OPERATOR, frozenset({"people:read"}))
    assert principal.can(Permission.READ_IDENTITY_MASKED)
    assert not principal.can(Permission.REGISTER_PERSON)  # the operator may; this token may not
    with pytest.raises(ApplianceError) as denied:
        data.register_person(principal, Person("s-0001", "Zhang San", AgeBand.ADULT, Alternative.CARD))
    assert _code(denied) is ErrorCode.PERMISSION_DENIED
    # a scope the role lacks adds nothing: a token never exceeds its account
    keys_token = accounts.create_token(admin, "op-1", ["keys", "people:read"], 1)
    assert not accounts.authenticate(keys_token.token).can(Permission.ROTATE_KEYS)


def test_expired_revoked_and_disabled_are_refused_and_audited(accounts, admin, clock, data):
    _account(accounts, admin, "sys-1", Role.SYSTEM_ADMIN)
    expiring = accounts.create_token(admin, "sys-1", ["maintenance"], 1)
    revoked = accounts.create_token(admin, "sys-1", ["maintenance"], 10)
    kept = accounts.create_token(admin, "sys-1", ["maintenance"], 10)
    accounts.revoke_token(admin, revoked.token_id)
    clock.now += SECONDS_PER_DAY + 1
    for token, why in ((expiring, "expired"), (revoked, "revoked")):
        with pytest.raises(ApplianceError) as refused:
            accounts.authenticate(token.token)
        assert _code(refused) is ErrorCode.TOKEN_INVALID and why in str(refused.value)
    assert accounts.authenticate(kept.token).actor == "sys-1"
    accounts.set_disabled(admin, "sys-1", True)
    with pytest.raises(ApplianceError) as disabled:
        accounts.authenticate(kept.token)
    assert _code(disabled) is ErrorCode.TOKEN_INVALID
    with pytest.raises(ApplianceError) as unknown:
        accounts.authenticate(kept.token[:-2] + "xx")
    assert _code(unknown) is ErrorCode.TOKEN_INVALID
    with pytest.raises(ApplianceError) as nothing:
        accounts.authenticate("")
    assert _code(nothing) is ErrorCode.AUTH_REQUIRED
    entries = [(e.actor, e.action, e.result, e.detail) for e in data.audit.entries() if e.action.startswith("token.")]
    assert [e[2] for e in entries if e[1] == "token.create"] == ["ok"] * 3
    assert ("sec-admin", "token.revoke", "ok", f"token {revoked.token_id}") in entries
    refused = [e for e in entries if e[1] == "token.use"]
    assert [e[0] for e in refused] == ["sys-1", "sys-1", "sys-1", "anonymous"]
    assert getpass.getuser() not in {e.actor for e in data.audit.entries()}
    assert not any(t.token in str(e) for e in data.audit.entries() for t in (expiring, revoked, kept))


def test_only_a_security_administrators_session_or_the_account_itself_creates_tokens(accounts, admin, clock):
    secret = _account(accounts, admin, "aud-1", Role.AUDITOR)
    _account(accounts, admin, "op-1", Role.OPERATOR)
    auditor = accounts.principal(_session(accounts, clock, "aud-1", secret).token)
    with pytest.raises(ApplianceError) as other:
        accounts.create_token(auditor, "op-1", ["people:read"], 1)
    assert _code(other) is ErrorCode.PERMISSION_DENIED
    own = accounts.create_token(auditor, "aud-1", ["audit"], 1)  # an account for itself
    assert [t.token_id for t in accounts.tokens(auditor)] == [own.token_id]
    # a token cannot mint tokens or manage accounts, even a security administrator's
    admin_token = accounts.authenticate(accounts.create_token(admin, "sec-admin", ["keys"], 1).token)
    for attempt in (lambda: accounts.create_token(admin_token, "sec-admin", ["keys"], 1),
                    lambda: accounts.create(admin_token, "op-2", Role.OPERATOR, STRONG),
                    lambda: accounts.set_disabled(admin_token, "op-1", True)):
        with pytest.raises(ApplianceError) as refused:
            attempt()
        assert _code(refused) is ErrorCode.PERMISSION_DENIED
    assert accounts.authenticate(own.token).actor == "aud-1"
    accounts.revoke_token(accounts.authenticate(own.token), own.token_id)  # a token may revoke itself
    with pytest.raises(ApplianceError):
        accounts.authenticate(own.token)
    assert len(accounts.tokens(admin)) == 2


@pytest.mark.parametrize("scopes, days", [([], 1), (["people:everything"], 1), (["audit"], 0),
                                          (["audit"], MAX_TOKEN_TTL_DAYS + 1), (["audit"], -1)])
def test_bad_scopes_and_lifetimes_are_refused(accounts, admin, scopes, days):
    _account(accounts, admin, "aud-1", Role.AUDITOR)
    with pytest.raises(ApplianceError):
        accounts.create_token(admin, "aud-1", scopes, days)
    assert accounts.tokens(admin) == []


def test_tokens_for_unknown_or_disabled_accounts_are_refused(accounts, admin):
    _account(accounts, admin, "aud-1", Role.AUDITOR)
    accounts.set_disabled(admin, "aud-1", True)
    for name in ("aud-1", "nobody"):
        with pytest.raises(ApplianceError) as refused:
            accounts.create_token(admin, name, ["audit"], 1)
        assert _code(refused) is ErrorCode.ACCOUNT_REFUSED


def test_tokens_and_sessions_are_stored_hashed(accounts, admin, clock, tmp_path):
    _account(accounts, admin, "aud-1", Role.AUDITOR)
    token = accounts.create_token(admin, "aud-1", ["audit"], 1)
    secret = token.token.rsplit("_", 1)[1]
    session = _session(accounts, clock, "sec-admin", accounts.store.execute(
        "SELECT totp_secret FROM accounts WHERE name = 'sec-admin'").fetchone()[0])
    accounts.authenticate(token.token)
    dump = _decrypted_dump(accounts.store)
    assert "CREATE TABLE tokens" in dump and token.token_id in dump
    assert token.token not in dump and secret not in dump and session.token not in dump
    raw = (tmp_path / "data" / "accounts.db").read_bytes()  # and the file is encrypted
    assert token.token_id.encode() not in raw and b"aud-1" not in raw


def _decrypted_dump(store) -> str:
    """Every schema line and every row of the opened (decrypted) database, as text."""
    tables = store.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall()
    return "\n".join([sql for _, sql in tables] + [repr(row) for name, _ in tables
                                                    for row in store.execute(f'SELECT * FROM "{name}"')])


def test_authenticate_takes_sessions_too(accounts, admin, clock):
    secret = _account(accounts, admin, "op-1", Role.OPERATOR)
    session = _session(accounts, clock, "op-1", secret)
    assert not session.token.startswith(TOKEN_PREFIX)
    principal = accounts.authenticate(session.token)
    assert (principal.actor, principal.scopes) == ("op-1", None)
    clock.now += accounts.idle_timeout_s + 1
    with pytest.raises(ApplianceError) as expired:
        accounts.authenticate(session.token)
    assert _code(expired) is ErrorCode.SESSION_EXPIRED

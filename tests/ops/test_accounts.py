"""Administrator accounts: Argon2id (old scrypt hashes replaced) + policy, RFC 6238 TOTP, lockout, idle sessions, audit,
and the role limits the issue names (auditor changes nothing, operator sees masked names)."""
from __future__ import annotations

import base64
import time

import pytest

from appliance.errors import ApplianceError, ErrorCode
from appliance.ops import totp
from appliance.ops.accounts import LOCKOUT_S, MAX_FAILURES
from appliance.ops import accounts as accounts_module
from appliance.ops.passwords import (
    DUMMY_HASH, check_password, hash_password, needs_rehash, password_problems, scrypt_hash,
)
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person
from appliance.security.roles import Role
from appliance.ops.accounts import Accounts, AccountStore
from diskkit import fill, small_disk

STRONG = "Correct-Horse-42-battery"


def b32(raw: bytes) -> str:
    return base64.b32encode(raw).decode().rstrip("=")


# RFC 6238 appendix B: (time, SHA1, SHA256, SHA512), 8 digits, the RFC's ASCII seeds
RFC6238 = [
    (59, "94287082", "46119246", "90693936"),
    (1111111109, "07081804", "68084774", "25091201"),
    (1111111111, "14050471", "67062674", "99943326"),
    (1234567890, "89005924", "91819424", "93441116"),
    (2000000000, "69279037", "90698825", "38618901"),
    (20000000000, "65353130", "77737706", "47863826"),
]
SEEDS = {"SHA1": b"12345678901234567890", "SHA256": b"12345678901234567890123456789012",
         "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234"}


@pytest.mark.parametrize("when, sha1, sha256, sha512", RFC6238)
def test_totp_matches_rfc6238_vectors(when, sha1, sha256, sha512):
    for algorithm, expected in (("SHA1", sha1), ("SHA256", sha256), ("SHA512", sha512)):
        assert totp.totp(b32(SEEDS[algorithm]), when, digits=8, algorithm=algorithm) == expected


def test_totp_window_and_replay():
    secret = totp.new_secret()
    now = 1_800_000_000.0
    code = totp.totp(secret, now)
    assert totp.matching_step(secret, code, now) == totp.step_at(now)
    assert totp.matching_step(secret, code, now + 30) == totp.step_at(now)  # one step of drift
    assert totp.matching_step(secret, code, now + 90) is None
    assert totp.matching_step(secret, code, now, after_step=totp.step_at(now)) is None  # used once
    assert totp.matching_step(secret, "12345", now) is None


def test_argon2id_hash_and_policy():
    stored = hash_password(STRONG)
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$") and STRONG not in stored
    assert check_password(STRONG, stored) and not check_password(STRONG + "x", stored)
    assert hash_password(STRONG) != stored  # salted
    assert not needs_rehash(stored)
    assert not check_password(STRONG, DUMMY_HASH) and not needs_rehash(DUMMY_HASH)
    assert password_problems(STRONG) == []
    assert password_problems("Short-1")  # length
    assert password_problems("alllowercaseletters")  # classes
    assert any("account name" in p for p in password_problems("Alice-Admin-2025!", "alice"))


def test_planted_or_broken_hashes_are_refused_without_work():
    huge = "$argon2id$v=19$m=4194304,t=2,p=1$AAAAAAAAAAAAAAAAAAAAAA$" + "A" * 43  # 4 GiB per check
    started = time.perf_counter()
    for stored in (huge, "$argon2id$v=19$m=19456,t=2,p=1$!!$!!", "scrypt$1048576$8$1$00$00", "plain", ""):
        assert not check_password(STRONG, stored)
    assert time.perf_counter() - started < 1.0


def test_old_scrypt_hash_verifies_and_is_replaced_at_the_next_login(accounts, clock, data):
    secret = accounts.bootstrap("sec-admin", STRONG).totp_secret
    old = scrypt_hash(STRONG)
    assert check_password(STRONG, old) and needs_rehash(old)
    _set_hash(accounts, "sec-admin", old)
    with pytest.raises(ApplianceError):  # a failed login (wrong code) keeps the old hash
        accounts.login("sec-admin", STRONG, _wrong_code(secret, clock.now))
    assert _stored_hash(accounts, "sec-admin") == old
    _login(accounts, clock, "sec-admin", secret)
    new = _stored_hash(accounts, "sec-admin")
    assert new.startswith("$argon2id$") and check_password(STRONG, new)
    clock.now += 31
    assert _login(accounts, clock, "sec-admin", secret).principal.actor == "sec-admin"  # the new hash works


def test_the_rehash_keeps_a_hash_changed_meanwhile(accounts, clock, monkeypatch):
    """The login checked the old hash; if another process replaced it before this login's
    transaction, that login must not write its rehash over the newer one (nor log in)."""
    secret = accounts.bootstrap("sec-admin", STRONG).totp_secret
    _set_hash(accounts, "sec-admin", scrypt_hash(STRONG))
    newer = hash_password("Another-Strong-Pass-77")
    real_check = accounts_module.check_password

    def check_then_change(password, stored):
        result = real_check(password, stored)
        _set_hash(accounts, "sec-admin", newer)  # a password change lands between check and decision
        return result

    monkeypatch.setattr(accounts_module, "check_password", check_then_change)
    with pytest.raises(ApplianceError):
        _login(accounts, clock, "sec-admin", secret)
    monkeypatch.undo()
    assert _stored_hash(accounts, "sec-admin") == newer


def _wrong_code(secret, now):
    valid = {totp.totp(secret, now + k * totp.STEP_S) for k in range(-2, 3)}
    return next(c for n in range(10 ** totp.DIGITS) if (c := f"{n:0{totp.DIGITS}d}") not in valid)


def _stored_hash(accounts, name):
    return accounts.store.execute("SELECT password FROM accounts WHERE name = ?", (name,)).fetchone()[0]


def _set_hash(accounts, name, stored):
    with accounts.store.transaction():
        accounts.store.execute("UPDATE accounts SET password = ? WHERE name = ?", (stored, name))


def _login(accounts, clock, name, secret, password=STRONG):
    return accounts.login(name, password, totp.totp(secret, clock.now))


def test_bootstrap_once_then_security_admin_creates_accounts(accounts, clock, data):
    first = accounts.bootstrap("sec-admin", STRONG)
    assert first.account.role is Role.SECURITY_ADMIN and first.totp_secret not in repr(first)
    with pytest.raises(ApplianceError) as again:
        accounts.bootstrap("other", STRONG)
    assert again.value.code is ErrorCode.ACCOUNT_REFUSED
    session = _login(accounts, clock, "sec-admin", first.totp_secret)
    admin = accounts.principal(session.token)
    with pytest.raises(ApplianceError) as weak:
        accounts.create(admin, "op-1", "operator", "weakpassword")
    assert weak.value.code is ErrorCode.PASSWORD_POLICY
    accounts.create(admin, "op-1", "operator", STRONG)
    clock.now += 31
    operator = accounts.principal(_login(accounts, clock, "op-1", accounts_secret(accounts, "op-1")).token)
    with pytest.raises(ApplianceError) as denied:
        accounts.create(operator, "op-2", "operator", STRONG)
    assert denied.value.code is ErrorCode.PERMISSION_DENIED
    actions = [(e.action, e.result) for e in data.audit.entries()]
    assert ("account.create", "ok") in actions and ("login", "ok") in actions
    assert ("account.create", "denied") in actions
    # no secret ends up in the audit log
    assert not any(first.totp_secret in str(e) or STRONG in str(e) for e in data.audit.entries())


def accounts_secret(accounts, name):
    return accounts.store.execute("SELECT totp_secret FROM accounts WHERE name = ?", (name,)).fetchone()[0]


def test_five_wrong_passwords_lock_the_account_for_fifteen_minutes(accounts, clock, data):
    secret = accounts.bootstrap("sec-admin", STRONG).totp_secret
    for _ in range(MAX_FAILURES):  # the caller is not told which attempt locked (tests/ops/test_account_attacks.py)
        with pytest.raises(ApplianceError) as failed:
            accounts.login("sec-admin", "Wrong-Password-99", totp.totp(secret, clock.now))
        assert failed.value.code is ErrorCode.LOGIN_FAILED
    assert accounts.get("sec-admin").locked_until >= clock.now + LOCKOUT_S
    clock.now += LOCKOUT_S - 60  # still locked: even the right password and code are refused
    with pytest.raises(ApplianceError) as locked:
        _login(accounts, clock, "sec-admin", secret)
    assert locked.value.code is ErrorCode.LOGIN_FAILED
    clock.now += 61
    with pytest.raises(ApplianceError):  # a lockout that ran out starts a new count
        accounts.login("sec-admin", "Wrong-Password-99", totp.totp(secret, clock.now))
    assert (accounts.get("sec-admin").failures, accounts.get("sec-admin").locked_until) == (1, 0)
    assert _login(accounts, clock, "sec-admin", secret).principal.role is Role.SECURITY_ADMIN
    results = [(e.action, e.result) for e in data.audit.entries() if e.object == "sec-admin"]
    assert results.count(("login", "failed")) == MAX_FAILURES + 1
    assert ("account.lock", "ok") in results and ("login", "refused") in results and results[-1] == ("login", "ok")


def test_totp_is_required(accounts, clock):
    secret = accounts.bootstrap("sec-admin", STRONG).totp_secret
    for code in ("", "000000", totp.totp(secret, clock.now - 300)):
        with pytest.raises(ApplianceError) as refused:
            accounts.login("sec-admin", STRONG, code)
        assert refused.value.code is ErrorCode.LOGIN_FAILED
    code = totp.totp(secret, clock.now)
    accounts.login("sec-admin", STRONG, code)
    with pytest.raises(ApplianceError):  # the same code cannot be replayed
        accounts.login("sec-admin", STRONG, code)


def test_unknown_account_fails_like_a_wrong_password(accounts, clock, data):
    with pytest.raises(ApplianceError) as failed:
        accounts.login("nobody", STRONG, "123456")
    assert failed.value.code is ErrorCode.LOGIN_FAILED
    assert data.audit.entries()[-1].actor == "anonymous"


def test_idle_sessions_expire(accounts, clock):
    secret = accounts.bootstrap("sec-admin", STRONG).totp_secret
    session = _login(accounts, clock, "sec-admin", secret)
    clock.now += 500
    accounts.principal(session.token)  # activity renews the idle timer
    clock.now += 500
    accounts.principal(session.token)
    clock.now += 601
    with pytest.raises(ApplianceError) as expired:
        accounts.principal(session.token)
    assert expired.value.code is ErrorCode.SESSION_EXPIRED
    with pytest.raises(ApplianceError):
        accounts.principal(session.token)  # ended for good


def test_a_full_disk_keeps_a_live_session_without_renewing_it(tmp_path, keys, data, clock):
    """Renewing the idle timer is a write: on a full disk the session stays valid (the console
    must not log everyone out, losing their forms) and ends no later than the last renewal
    written says."""
    with small_disk(tmp_path / "disk") as disk:
        store = AccountStore.open(disk / "accounts.db", keys)
        manager = Accounts(store, data.audit, idle_timeout_s=600, clock=clock)
        try:
            secret = manager.bootstrap("sec-admin", STRONG).totp_secret
            session = _login(manager, clock, "sec-admin", secret)
            store.checkpoint()  # its next write needs new room
            filler = fill(disk)
            clock.now += 500
            assert manager.principal(session.token).actor == "sec-admin"  # still logged in
            clock.now += 200  # 700 s after the last renewal written
            with pytest.raises(ApplianceError) as expired:
                manager.principal(session.token)
            assert expired.value.code is ErrorCode.SESSION_EXPIRED
            filler.unlink()
        finally:
            manager.close()


def _person(data, operator):
    person = Person("s-0001", "Zhang San", AgeBand.ADULT, Alternative.CARD, phone="13812345678")
    data.register_person(operator, person)
    data.record_consent(operator, ConsentRecord(person.subject_id, ENROLL_SCOPE, "v1", 1.0, "Zhang San"))
    return person


def _principal_for(accounts, clock, admin, name, role):
    accounts.create(admin, name, role, STRONG)
    clock.now += 31
    return accounts.principal(_login(accounts, clock, name, accounts_secret(accounts, name)).token)


def test_auditor_cannot_change_data_or_erase_the_audit_log(accounts, clock, data, tmp_path):
    secret = accounts.bootstrap("sec-admin", STRONG).totp_secret
    admin = accounts.principal(_login(accounts, clock, "sec-admin", secret).token)
    operator = _principal_for(accounts, clock, admin, "op-1", "operator")
    auditor = _principal_for(accounts, clock, admin, "aud-1", "auditor")
    person = _person(data, operator)
    before = len(data.audit.entries())
    attempts = (
        lambda: data.register_person(auditor, Person("s-0002", "Li Si", AgeBand.ADULT, Alternative.PIN)),
        lambda: data.delete_subject(auditor, person.subject_id),
        lambda: data.withdraw_consent(auditor, person.subject_id),
        lambda: data.backup(auditor, tmp_path / "bk"),
        lambda: data.restore(auditor, tmp_path / "bk"),
        lambda: data.run_retention(auditor),
        lambda: data.audit.prune(auditor, 400),
        lambda: accounts.set_disabled(auditor, "op-1", True),
    )
    for attempt in attempts:
        with pytest.raises(ApplianceError) as denied:
            attempt()
        assert denied.value.code is ErrorCode.PERMISSION_DENIED
    with pytest.raises(Exception, match="append-only|retention pruning"):  # not even with the store key
        data.audit.execute("DELETE FROM entries")
    assert data.audit.verify(auditor).ok
    assert len(data.audit.entries()) >= before
    assert data.audit.export(auditor)  # what the auditor may do


def test_operator_cannot_see_unmasked_names(accounts, clock, data):
    secret = accounts.bootstrap("sec-admin", STRONG).totp_secret
    admin = accounts.principal(_login(accounts, clock, "sec-admin", secret).token)
    operator = _principal_for(accounts, clock, admin, "op-1", "operator")
    person = _person(data, operator)
    listing = data.people(operator)
    assert listing[0]["name"] == "Z**** S**" and "12345678" not in listing[0]["phone"]
    with pytest.raises(ApplianceError) as denied:
        data.reveal(operator, person.subject_id)
    assert denied.value.code is ErrorCode.PERMISSION_DENIED
    assert (data.audit.entries()[-1].action, data.audit.entries()[-1].result) == ("identity.reveal", "denied")
    assert data.reveal(admin, person.subject_id)["name"] == "Zhang San"  # security admin may, logged

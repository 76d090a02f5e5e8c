"""Named administrator accounts bound to the data-security roles, with a second factor.

Why here and not OS accounts only: the appliance's roles (``security.roles``) must hold on
a matcher host where several people share one service user. Each account has one role;
logging in yields a :class:`~appliance.security.roles.Principal`, so every store call
checks the same permissions and writes the same audit entries as everything else.

Passwords: scrypt (standard library), a length/character-class policy. Second factor: TOTP.
Five consecutive failures lock the account for 15 minutes (even the right password is then
refused); sessions expire after an idle timeout. Every login attempt and account change
goes to the audit log. Account management belongs to the security administrator.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from appliance.errors import ApplianceError, ErrorCode
from appliance.ops import totp
from appliance.security.keys import KeyProvider
from appliance.security.roles import Principal, Role, role_named
from appliance.stores.audit import AuditLog
from appliance.stores.base import CipherStore

ACCOUNTS_DB = "accounts-db"  # key name; one key per store, like the others
ACCOUNTS_FILE = "accounts.db"
MAX_FAILURES = 5
LOCKOUT_S = 15 * 60
DEFAULT_IDLE_S = 10 * 60
MIN_PASSWORD_LEN = 12
MAX_PASSWORD_LEN = 1024  # scrypt cost is independent of length, but bound the input anyway
MIN_CHARACTER_CLASSES = 3
# scrypt at N=2^15, r=8: 32 MiB and ~0.1 s per check on a Pi 4 - slow for guessing, fine for a login
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_LEN, SALT_BYTES = 2 ** 15, 8, 1, 32, 16
SCRYPT_MAXMEM = 64 * 1024 * 1024
SESSION_TOKEN_BYTES = 32
ACCOUNT_ADMIN_ROLES = frozenset({Role.SECURITY_ADMIN})
ANONYMOUS = "anonymous"  # the actor of attempts on names that are not accounts
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def hash_password(password: str, salt: bytes | None = None, n: int = SCRYPT_N) -> str:
    salt = salt or secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=SCRYPT_MAXMEM, dklen=SCRYPT_LEN)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt" or len(password) > MAX_PASSWORD_LEN:
        return False
    actual = hashlib.scrypt(password.encode("utf-8"), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                            maxmem=SCRYPT_MAXMEM, dklen=len(digest) // 2)
    return hmac.compare_digest(actual.hex(), digest)


# a dummy hash so that unknown account names cost the same time as known ones
_DUMMY_HASH = hash_password("not-a-password", salt=b"\0" * SALT_BYTES)


def password_problems(password: str, account: str = "") -> list[str]:
    """Why a password is refused (empty when it passes the policy)."""
    problems = []
    if len(password) < MIN_PASSWORD_LEN:
        problems.append(f"at least {MIN_PASSWORD_LEN} characters")
    if len(password) > MAX_PASSWORD_LEN:
        problems.append(f"at most {MAX_PASSWORD_LEN} characters")
    classes = sum(any(test(c) for c in password) for test in
                  (str.islower, str.isupper, str.isdigit, lambda c: not c.isalnum()))
    if classes < MIN_CHARACTER_CLASSES:
        problems.append(f"characters from {MIN_CHARACTER_CLASSES} of: lower case, upper case, digits, symbols")
    if account and account.lower() in password.lower():
        problems.append("must not contain the account name")
    return problems


@dataclass(frozen=True)
class Account:
    name: str
    role: Role
    disabled: bool
    failures: int
    locked_until: float


@dataclass(frozen=True)
class Session:
    token: str  # shown to the caller once; only its hash is stored
    principal: Principal
    expires_idle_s: float


@dataclass(frozen=True)
class NewAccount:
    """What creating an account returns: the TOTP secret, to be shown once on a terminal."""

    account: Account
    totp_secret: str = ""

    def provisioning_uri(self) -> str:
        return totp.provisioning_uri(self.totp_secret, self.account.name)

    def __repr__(self) -> str:  # never print the secret by accident
        return f"NewAccount({self.account!r})"


class AccountStore(CipherStore):
    KEY_NAME = ACCOUNTS_DB
    MIGRATIONS = (
        """
        CREATE TABLE accounts (
            name TEXT PRIMARY KEY, role TEXT NOT NULL, password TEXT NOT NULL, totp_secret TEXT NOT NULL,
            last_totp_step INTEGER NOT NULL DEFAULT -1, failures INTEGER NOT NULL DEFAULT 0,
            locked_until REAL NOT NULL DEFAULT 0, disabled INTEGER NOT NULL DEFAULT 0,
            created REAL NOT NULL, created_by TEXT NOT NULL);
        CREATE TABLE sessions (
            token_hash TEXT PRIMARY KEY, name TEXT NOT NULL REFERENCES accounts ON DELETE CASCADE,
            device TEXT NOT NULL, created REAL NOT NULL, last_seen REAL NOT NULL);
        """,
    )


class Accounts:
    """Account operations over the account store, audited in ``audit``."""

    def __init__(self, store: AccountStore, audit: AuditLog, idle_timeout_s: float = DEFAULT_IDLE_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.audit = audit
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock

    @classmethod
    def open(cls, root: Path, keys: KeyProvider, audit: AuditLog, idle_timeout_s: float = DEFAULT_IDLE_S) -> "Accounts":
        return cls(AccountStore.open(Path(root) / ACCOUNTS_FILE, keys), audit, idle_timeout_s)

    # -- reading ------------------------------------------------------------------------
    def get(self, name: str) -> Account | None:
        row = self.store.execute("SELECT name, role, disabled, failures, locked_until FROM accounts WHERE name = ?",
                                 (name,)).fetchone()
        return None if row is None else Account(row[0], Role(row[1]), bool(row[2]), row[3], row[4])

    def list(self, principal: Principal) -> list[Account]:
        self._require_admin(principal, "account.list")
        names = [r[0] for r in self.store.execute("SELECT name FROM accounts ORDER BY name")]
        return [self.get(n) for n in names]

    # -- creation -----------------------------------------------------------------------
    def bootstrap(self, name: str, password: str) -> NewAccount:
        """The first account, a security administrator; refused once any account exists."""
        if self.store.execute("SELECT count(*) FROM accounts").fetchone()[0]:
            raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, "accounts exist already; bootstrap runs once")
        system = Principal(f"bootstrap:{name}", Role.SECURITY_ADMIN)
        return self._create(system, name, Role.SECURITY_ADMIN, password)

    def create(self, principal: Principal, name: str, role: Role | str, password: str) -> NewAccount:
        self._require_admin(principal, "account.create", name)
        return self._create(principal, name, role_named(role) if isinstance(role, str) else role, password)

    def _create(self, principal: Principal, name: str, role: Role, password: str) -> NewAccount:
        if not name or len(name) > 64 or set(name) - NAME_CHARS:
            raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, f"account name {name!r}: lower-case letters, digits, - _ .")
        problems = password_problems(password, name)
        if problems:
            raise ApplianceError(ErrorCode.PASSWORD_POLICY, "; ".join(problems))
        if self.get(name) is not None:
            raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, f"account {name!r} exists")
        secret = totp.new_secret()
        with self.store.transaction():
            self.store.execute(
                "INSERT INTO accounts (name, role, password, totp_secret, created, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (name, role.value, hash_password(password), secret, self.clock(), principal.actor))
        self.audit.append(principal, "account.create", name, "ok", f"role {role.value}")
        return NewAccount(self.get(name), secret)

    # -- administration -----------------------------------------------------------------
    def set_disabled(self, principal: Principal, name: str, disabled: bool) -> None:
        action = "account.disable" if disabled else "account.enable"
        self._require_admin(principal, action, name)
        self._must_exist(name)
        with self.store.transaction():
            self.store.execute("UPDATE accounts SET disabled = ? WHERE name = ?", (int(disabled), name))
            if disabled:
                self.store.execute("DELETE FROM sessions WHERE name = ?", (name,))
        self.audit.append(principal, action, name, "ok")

    def unlock(self, principal: Principal, name: str) -> None:
        self._require_admin(principal, "account.unlock", name)
        self._must_exist(name)
        with self.store.transaction():
            self.store.execute("UPDATE accounts SET failures = 0, locked_until = 0 WHERE name = ?", (name,))
        self.audit.append(principal, "account.unlock", name, "ok")

    # -- login and sessions -------------------------------------------------------------
    def login(self, name: str, password: str, code: str, device: str = "local") -> Session:
        """Password and TOTP code; either wrong counts one failure. Messages do not say which
        factor failed or whether the account exists."""
        now = self.clock()
        row = self.store.execute(
            "SELECT role, password, totp_secret, last_totp_step, failures, locked_until, disabled FROM accounts "
            "WHERE name = ?", (name,)).fetchone()
        if row is None:
            check_password(password, _DUMMY_HASH)
            self.audit.append(Principal(ANONYMOUS, Role.AUDITOR, device), "login", name, "failed", "unknown account")
            raise ApplianceError(ErrorCode.LOGIN_FAILED, "wrong account, password or code")
        role, stored, secret, last_step, failures, locked_until, disabled = row
        principal = Principal(name, Role(role), device)
        if disabled:
            self.audit.append(principal, "login", name, "refused", "account disabled")
            raise ApplianceError(ErrorCode.LOGIN_FAILED, "wrong account, password or code")
        if locked_until > now:
            self.audit.append(principal, "login", name, "refused", "account locked")
            raise ApplianceError(ErrorCode.ACCOUNT_LOCKED,
                                 f"too many failures; locked for {int(locked_until - now) // 60 + 1} more minutes")
        password_ok = check_password(password, stored)
        step = totp.matching_step(secret, code, now, last_step) if password_ok else None
        if step is None:
            failures += 1
            lock = now + LOCKOUT_S if failures >= MAX_FAILURES else 0.0
            with self.store.transaction():
                self.store.execute("UPDATE accounts SET failures = ?, locked_until = ? WHERE name = ?",
                                   (0 if lock else failures, lock, name))
            why = "password wrong" if not password_ok else "second factor wrong or reused"
            self.audit.append(principal, "login", name, "failed", f"{why}; failure {failures} of {MAX_FAILURES}")
            if lock:
                self.audit.append(principal, "account.lock", name, "ok", f"locked for {LOCKOUT_S // 60} minutes")
                raise ApplianceError(ErrorCode.ACCOUNT_LOCKED,
                                     f"{MAX_FAILURES} failures: locked for {LOCKOUT_S // 60} minutes")
            raise ApplianceError(ErrorCode.LOGIN_FAILED, "wrong account, password or code")
        token = secrets.token_urlsafe(SESSION_TOKEN_BYTES)
        with self.store.transaction():
            self.store.execute("UPDATE accounts SET failures = 0, locked_until = 0, last_totp_step = ? WHERE name = ?",
                               (step, name))
            self.store.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)",
                               (_token_hash(token), name, device, now, now))
        self.audit.append(principal, "login", name, "ok")
        return Session(token, principal, self.idle_timeout_s)

    def principal(self, token: str) -> Principal:
        """The principal of a live session; an idle one is ended (and the attempt logged)."""
        now = self.clock()
        row = self.store.execute(
            "SELECT s.name, a.role, s.device, s.last_seen, a.disabled FROM sessions s JOIN accounts a USING (name) "
            "WHERE s.token_hash = ?", (_token_hash(token),)).fetchone()
        if row is None:
            raise ApplianceError(ErrorCode.SESSION_EXPIRED, "no such session; log in again")
        name, role, device, last_seen, disabled = row
        principal = Principal(name, Role(role), device)
        if disabled or now - last_seen > self.idle_timeout_s:
            self.logout(token, reason="idle timeout" if not disabled else "account disabled")
            raise ApplianceError(ErrorCode.SESSION_EXPIRED, "session ended after inactivity; log in again")
        with self.store.transaction():
            self.store.execute("UPDATE sessions SET last_seen = ? WHERE token_hash = ?", (now, _token_hash(token)))
        return principal

    def logout(self, token: str, reason: str = "logout") -> None:
        row = self.store.execute("SELECT s.name, a.role, s.device FROM sessions s JOIN accounts a USING (name) "
                                 "WHERE s.token_hash = ?", (_token_hash(token),)).fetchone()
        if row is None:
            return
        with self.store.transaction():
            self.store.execute("DELETE FROM sessions WHERE token_hash = ?", (_token_hash(token),))
        self.audit.append(Principal(row[0], Role(row[1]), row[2]), "logout", row[0], "ok", reason)

    # -- helpers ------------------------------------------------------------------------
    def _require_admin(self, principal: Principal, action: str, obj: str = "accounts") -> None:
        if not isinstance(principal, Principal) or principal.role not in ACCOUNT_ADMIN_ROLES:
            if isinstance(principal, Principal):
                self.audit.append(principal, action, obj, "denied")
            raise ApplianceError(ErrorCode.PERMISSION_DENIED, f"only a security administrator may {action}")

    def _must_exist(self, name: str) -> None:
        if self.get(name) is None:
            raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, f"no account {name!r}")

    def close(self) -> None:
        self.store.close()


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("ascii")).hexdigest()



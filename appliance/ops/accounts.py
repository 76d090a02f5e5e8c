"""Named administrator accounts bound to the data-security roles, with a second factor.

Why here and not OS accounts only: the appliance's roles (``security.roles``) must hold on
a matcher host where several people share one service user. Each account has one role;
logging in yields a :class:`~appliance.security.roles.Principal`, so every store call
checks the same permissions and writes the same audit entries as everything else.

Passwords: Argon2id and a strength policy (``ops.passwords``); a hash from before Argon2id
(scrypt) is replaced at the account's next successful login. Second factor: TOTP. Five
consecutive failures lock the account for 15 minutes (even the right password is then
refused); sessions expire after an idle timeout. Every login attempt and account change
goes to the audit log. Account management belongs to the security administrator.
Scripts and services use API tokens instead (``ops.tokens``); :meth:`Accounts.authenticate`
takes either, so every entry point asks "who is this?" the same way.

Concurrency: guesses arrive in parallel (threads, requests, several ``appliance`` processes),
so every decision that reads the account and writes it back - counting a failure, locking,
accepting a TOTP step once, the first account of a bootstrap - is made inside one
``BEGIN IMMEDIATE`` transaction, which SQLite serialises across connections and processes.
The slow hash runs before it, so the write lock is held for milliseconds, not 0.1 s (once
per old scrypt account, its replacement hash is computed inside, after a successful login).

Enumeration: a caller learns only "login failed". An unknown name, a wrong password or code,
a locked and a disabled account give the same error and text after the same work (one
Argon2id - against :data:`~appliance.ops.passwords.DUMMY_HASH` for an unknown name - and one
committed write); the audit log records the true reason.
"""
from __future__ import annotations

import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from appliance.errors import ApplianceError, ErrorCode, skipped_if_unwritable
from appliance.ops import totp
from appliance.ops.passwords import DUMMY_HASH, check_password, hash_password, needs_rehash, password_problems
from appliance.ops.tokens import TOKEN_PREFIX, TOKENS_MIGRATION, ApiTokens, NewToken, TokenInfo, token_hash
from appliance.security.keys import KeyProvider
from appliance.security.roles import Principal, Role, role_named
from appliance.stores.audit import AuditLog
from appliance.stores.base import CipherStore

ACCOUNTS_DB = "accounts-db"  # key name; one key per store, like the others
ACCOUNTS_FILE = "accounts.db"
MAX_FAILURES = 5
LOCKOUT_S = 15 * 60
DEFAULT_IDLE_S = 10 * 60
MAX_NAME_LEN = 64
SESSION_TOKEN_BYTES = 32
SESSION_PREFIX = "ses_"  # API tokens start with ops.tokens.TOKEN_PREFIX: one look tells them apart
ACCOUNT_ADMIN_ROLES = frozenset({Role.SECURITY_ADMIN})
ANONYMOUS = "anonymous"  # the actor of attempts on names that are not accounts
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
# the one answer to every refused login, whatever the reason (the audit log has the reason)
LOGIN_REFUSED = f"wrong account, password or code (repeated failures lock an account for {LOCKOUT_S // 60} minutes)"


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
        # every refused login counts here, in the same transaction as its decision: a refusal
        # on an unknown, locked or disabled name then commits a write like a counted failure
        # does, so the time of the commit does not tell them apart either
        """
        CREATE TABLE refusals (id INTEGER PRIMARY KEY CHECK (id = 1), total INTEGER NOT NULL);
        INSERT INTO refusals VALUES (1, 0);
        """,
        TOKENS_MIGRATION,
    )


@dataclass
class _Outcome:
    """What one login attempt decided inside its transaction; audited after the commit."""

    session: "Session | None" = None
    entries: list[tuple[Principal, str, str, str, str]] = field(default_factory=list)


class Accounts:
    """Account operations over the account store, audited in ``audit``.

    One instance may be shared by threads: its writes (and the audit entries they cause)
    take an instance lock, because a SQLite connection has one transaction at a time.
    Separate instances and processes are serialised by SQLite's write lock.
    """

    def __init__(self, store: AccountStore, audit: AuditLog, idle_timeout_s: float = DEFAULT_IDLE_S,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.audit = audit
        self.idle_timeout_s = idle_timeout_s
        self.clock = clock
        self._lock = threading.RLock()
        self._tokens = ApiTokens(store, audit, self._lock, clock)

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

    def names(self, role: Role | None = None) -> list[str]:
        """Account names (of one role), for set-up tools; no principal, as they hold no personal data."""
        rows = self.store.execute("SELECT name, role FROM accounts ORDER BY created").fetchall()
        return [name for name, value in rows if role is None or value == role.value]

    def refused_logins(self) -> int:
        """Refused logins since the store was created (for monitoring: a rising count is guessing)."""
        return int(self.store.execute("SELECT total FROM refusals").fetchone()[0])

    # -- creation -----------------------------------------------------------------------
    def bootstrap(self, name: str, password: str) -> NewAccount:
        """The first account, a security administrator; refused once any account exists
        (decided in the inserting transaction, so two racing bootstraps make one account)."""
        system = Principal(f"bootstrap:{name}", Role.SECURITY_ADMIN)
        return self._create(system, name, Role.SECURITY_ADMIN, password, first=True)

    def create(self, principal: Principal, name: str, role: Role | str, password: str) -> NewAccount:
        self._require_admin(principal, "account.create", name)
        return self._create(principal, name, role_named(role) if isinstance(role, str) else role, password)

    def _create(self, principal: Principal, name: str, role: Role, password: str, first: bool = False) -> NewAccount:
        if not name or len(name) > MAX_NAME_LEN or set(name) - NAME_CHARS:
            raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, f"account name {name!r}: lower-case letters, digits, - _ .")
        problems = password_problems(password, name)
        if problems:
            raise ApplianceError(ErrorCode.PASSWORD_POLICY, "; ".join(problems))
        stored, secret = hash_password(password), totp.new_secret()  # the slow hash before the write lock
        with self._writing():
            if first and self.store.execute("SELECT count(*) FROM accounts").fetchone()[0]:
                raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, "accounts exist already; bootstrap runs once")
            if self.get(name) is not None:
                raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, f"account {name!r} exists")
            self.store.execute(
                "INSERT INTO accounts (name, role, password, totp_secret, created, created_by) "
                "VALUES (?, ?, ?, ?, ?, ?)", (name, role.value, stored, secret, self.clock(), principal.actor))
        with self._lock:
            self.audit.append(principal, "account.create", name, "ok", f"role {role.value}")
        return NewAccount(self.get(name), secret)

    # -- administration -----------------------------------------------------------------
    def set_disabled(self, principal: Principal, name: str, disabled: bool) -> None:
        action = "account.disable" if disabled else "account.enable"
        self._require_admin(principal, action, name)
        self._must_exist(name)
        with self._writing():
            self.store.execute("UPDATE accounts SET disabled = ? WHERE name = ?", (int(disabled), name))
            if disabled:
                self.store.execute("DELETE FROM sessions WHERE name = ?", (name,))
        with self._lock:
            self.audit.append(principal, action, name, "ok")

    def unlock(self, principal: Principal, name: str) -> None:
        self._require_admin(principal, "account.unlock", name)
        self._must_exist(name)
        with self._writing():
            self.store.execute("UPDATE accounts SET failures = 0, locked_until = 0 WHERE name = ?", (name,))
        with self._lock:
            self.audit.append(principal, "account.unlock", name, "ok")

    # -- login and sessions -------------------------------------------------------------
    def login(self, name: str, password: str, code: str, device: str = "local") -> Session:
        """Password and TOTP code; either wrong counts one failure. Every refusal answers
        ``LOGIN_FAILED`` with the same text (see the module docstring); the audit log says why."""
        row = self.store.execute("SELECT password FROM accounts WHERE name = ?", (name,)).fetchone()
        stored = row[0] if row is not None else DUMMY_HASH
        password_ok = check_password(password, stored)  # always one slow hash, whatever the name
        with self._lock:
            with self.store.transaction():
                outcome = self._decide(name, stored, password if password_ok else "", code, device, self.clock())
            for entry in outcome.entries:
                self.audit.append(*entry)
        if outcome.session is None:
            raise ApplianceError(ErrorCode.LOGIN_FAILED, LOGIN_REFUSED)
        return outcome.session

    def _decide(self, name: str, hashed: str, password: str, code: str, device: str, now: float) -> _Outcome:
        """The attempt's verdict from the account as it is now, inside the write transaction:
        concurrent attempts see each other's counts, locks and used TOTP steps. ``password``
        is the checked password, or "" when it was wrong."""
        password_ok = bool(password)
        row = self.store.execute(
            "SELECT role, password, totp_secret, last_totp_step, failures, locked_until, disabled FROM accounts "
            "WHERE name = ?", (name,)).fetchone()
        if row is None:
            return self._refused(Principal(ANONYMOUS, Role.AUDITOR, device), name, "failed", "unknown account")
        role, current, secret, last_step, failures, locked_until, disabled = row
        principal = Principal(name, Role(role), device)
        if disabled:
            return self._refused(principal, name, "refused", "account disabled")
        if locked_until > now:
            return self._refused(principal, name, "refused", "account locked")
        # the hash checked is still the account's (not changed meanwhile), and the code is
        # later than the last one used, as of this transaction
        step = totp.matching_step(secret, code, now, last_step) if password_ok and current == hashed else None
        if step is None:
            failures = (0 if locked_until else failures) + 1  # a lockout that ran out starts a new count
            lock = now + LOCKOUT_S if failures >= MAX_FAILURES else 0.0
            self.store.execute("UPDATE accounts SET failures = ?, locked_until = ? WHERE name = ?",
                               (failures, lock, name))
            why = "password wrong" if not password_ok else "second factor wrong or reused"
            outcome = self._refused(principal, name, "failed", f"{why}; failure {failures} of {MAX_FAILURES}")
            if lock:
                outcome.entries.append((principal, "account.lock", name, "ok", f"locked for {LOCKOUT_S // 60} minutes"))
            return outcome
        token = SESSION_PREFIX + secrets.token_urlsafe(SESSION_TOKEN_BYTES)
        self.store.execute("UPDATE accounts SET failures = 0, locked_until = 0, last_totp_step = ? WHERE name = ?",
                           (step, name))
        if needs_rehash(current):  # the hash checked is the stored one (above): replace it with today's
            self.store.execute("UPDATE accounts SET password = ? WHERE name = ? AND password = ?",
                               (hash_password(password), name, current))
        self.store.execute("INSERT INTO sessions VALUES (?, ?, ?, ?, ?)", (token_hash(token), name, device, now, now))
        return _Outcome(Session(token, principal, self.idle_timeout_s), [(principal, "login", name, "ok", "")])

    def _refused(self, principal: Principal, name: str, result: str, reason: str) -> _Outcome:
        self.store.execute("UPDATE refusals SET total = total + 1")
        return _Outcome(None, [(principal, "login", name, result, reason)])

    def principal(self, token: str) -> Principal:
        """The principal of a live session; an idle one is ended (and the attempt logged)."""
        now = self.clock()
        row = self.store.execute(
            "SELECT s.name, a.role, s.device, s.last_seen, a.disabled FROM sessions s JOIN accounts a USING (name) "
            "WHERE s.token_hash = ?", (token_hash(token),)).fetchone()
        if row is None:
            raise ApplianceError(ErrorCode.SESSION_EXPIRED, "no such session; log in again")
        name, role, device, last_seen, disabled = row
        principal = Principal(name, Role(role), device)
        if disabled or now - last_seen > self.idle_timeout_s:
            with skipped_if_unwritable():  # ended all the same; a full disk keeps the row until the next look
                self.logout(token, reason="idle timeout" if not disabled else "account disabled")
            raise ApplianceError(ErrorCode.SESSION_EXPIRED, "session ended after inactivity; log in again")
        # on a full disk the session stays valid, its idle timer not refreshed (it ends no later)
        with skipped_if_unwritable(), self._writing():
            self.store.execute("UPDATE sessions SET last_seen = ? WHERE token_hash = ?", (now, token_hash(token)))
        return principal

    def authenticate(self, secret: str, device: str = "api") -> Principal:
        """Who is asking: the principal of a session token or of an API token (``apt_...``,
        its role narrowed to the token's scopes). No secret: AUTH_REQUIRED; a dead session:
        SESSION_EXPIRED; an unknown, expired or revoked token or a disabled account's:
        TOKEN_INVALID."""
        if not secret:
            raise ApplianceError(ErrorCode.AUTH_REQUIRED, "no session or API token given: log in or pass a token")
        if secret.startswith(TOKEN_PREFIX):
            return self._tokens.authenticate(secret, device)
        return self.principal(secret)

    # -- API tokens (ops.tokens) --------------------------------------------------------
    def create_token(self, principal: Principal, account: str, scopes: Iterable[str], ttl_days: float,
                     label: str = "") -> NewToken:
        """A token for ``account`` (a security administrator's session, or the account's own)."""
        return self._tokens.create(principal, account, scopes, ttl_days, label)

    def tokens(self, principal: Principal) -> list[TokenInfo]:
        return self._tokens.list(principal)

    def revoke_token(self, principal: Principal, token_id: str) -> None:
        self._tokens.revoke(principal, token_id)

    def logout(self, token: str, reason: str = "logout") -> None:
        with self._writing():
            row = self.store.execute("SELECT s.name, a.role, s.device FROM sessions s JOIN accounts a USING (name) "
                                     "WHERE s.token_hash = ?", (token_hash(token),)).fetchone()
            if row is None:
                return
            self.store.execute("DELETE FROM sessions WHERE token_hash = ?", (token_hash(token),))
        with self._lock:
            self.audit.append(Principal(row[0], Role(row[1]), row[2]), "logout", row[0], "ok", reason)

    # -- helpers ------------------------------------------------------------------------
    @contextmanager
    def _writing(self) -> Iterator[None]:
        """One write transaction of this instance at a time (threads share its connection)."""
        with self._lock, self.store.transaction():
            yield

    def _require_admin(self, principal: Principal, action: str, obj: str = "accounts") -> None:
        """A security administrator's session: an API token (scoped) never manages accounts."""
        if not isinstance(principal, Principal) or principal.role not in ACCOUNT_ADMIN_ROLES or \
                principal.scopes is not None:
            if isinstance(principal, Principal):
                with self._lock:
                    self.audit.append(principal, action, obj, "denied")
            raise ApplianceError(ErrorCode.PERMISSION_DENIED, f"only a security administrator may {action}")

    def _must_exist(self, name: str) -> None:
        if self.get(name) is None:
            raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, f"no account {name!r}")

    def close(self) -> None:
        self.store.close()


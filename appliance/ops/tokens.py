"""API tokens: what scripts, the REST API and the nightly timer authenticate with.

A token belongs to one account and acts with that account's role narrowed to the token's
scopes (``security.roles.SCOPES``): it can never do more than its account, and a disabled
account's tokens stop working at once. A token is shown once when created
(``apt_<id>_<secret>``); the store keeps only the SHA-256 of the whole string. A plain hash is
enough here, unlike passwords: the secret is 256 random bits, so there is no dictionary to
try, and a fast hash lets every request find its token by an indexed lookup. The visible id
names the token in listings, revocations and audit entries without revealing it.

Tokens expire (at most :data:`MAX_TOKEN_TTL_DAYS` after creation) and can be revoked.
Creating, listing others' and revoking tokens is account management: it needs a security
administrator's interactive session (password and TOTP), never a token, so a leaked token
cannot mint or extend tokens. An account may also create and revoke its own, from a session.
Every creation, revocation and refused use goes to the audit log under the account's name.
"""
from __future__ import annotations

import hashlib
import secrets
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

from appliance.errors import ApplianceError, ErrorCode, skipped_if_unwritable
from appliance.security.roles import Principal, Role, scopes_named

if TYPE_CHECKING:  # only named in signatures: the CLI reads this module's limits without loading the stores
    from appliance.stores.audit import AuditLog
    from appliance.stores.base import CipherStore

TOKEN_PREFIX = "apt_"
TOKEN_ID_BYTES = 6  # 12 hex characters: unique enough to name a token, no use for guessing it
TOKEN_SECRET_BYTES = 32
DEFAULT_TOKEN_TTL_DAYS = 90.0
MAX_TOKEN_TTL_DAYS = 366.0  # a token outliving a year is a forgotten one; renew it instead
SECONDS_PER_DAY = 86_400
LAST_USED_RESOLUTION_S = 60.0  # last_used is written at most once a minute per token, not per request
MAX_LABEL_LEN = 80
ANONYMOUS = "anonymous"  # the actor of refused uses of strings that are no token
TOKEN_ADMIN_ROLES = frozenset({Role.SECURITY_ADMIN})

# the tokens table, a migration of the account store (appliance.ops.accounts.AccountStore)
TOKENS_MIGRATION = """
    CREATE TABLE tokens (
        token_id TEXT PRIMARY KEY, account TEXT NOT NULL REFERENCES accounts (name) ON DELETE CASCADE,
        token_hash TEXT NOT NULL UNIQUE, scopes TEXT NOT NULL, label TEXT NOT NULL,
        created REAL NOT NULL, created_by TEXT NOT NULL, expires REAL NOT NULL,
        revoked REAL, last_used REAL);
    """


@dataclass(frozen=True)
class NewToken:
    token: str  # shown to the caller once; only its hash is stored
    token_id: str
    expires_at: float

    def __repr__(self) -> str:  # never print the token by accident
        return f"NewToken({self.token_id!r}, expires_at={self.expires_at})"


@dataclass(frozen=True)
class TokenInfo:
    """A token as listings show it: never the token itself."""

    token_id: str
    account: str
    scopes: tuple[str, ...]
    label: str
    created: float
    created_by: str
    expires_at: float
    revoked: bool
    last_used: float | None


def token_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def token_id_of(secret: str) -> str:
    """The id part of an ``apt_<id>_<secret>`` string ("" when it has none): for audit entries."""
    head = secret[len(TOKEN_PREFIX):].split("_", 1)[0]
    return head if len(head) == 2 * TOKEN_ID_BYTES and all(c in "0123456789abcdef" for c in head) else ""


class ApiTokens:
    """Token operations on the account store; the caller (``Accounts``) shares its lock and clock."""

    def __init__(self, store: CipherStore, audit: AuditLog, lock: threading.RLock, clock: Callable[[], float]) -> None:
        self.store, self.audit, self._lock, self.clock = store, audit, lock, clock

    def create(self, principal: Principal, account: str, scopes: Iterable[str], ttl_days: float,
               label: str = "") -> NewToken:
        self._require_session(principal, "token.create", account, own=principal.actor == account)
        chosen = scopes_named(tuple(scopes))
        if not 0 < ttl_days <= MAX_TOKEN_TTL_DAYS:
            raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, f"token lifetime {ttl_days} days: "
                                                            f"more than 0, at most {MAX_TOKEN_TTL_DAYS:.0f}")
        if len(label) > MAX_LABEL_LEN or not label.isprintable():
            raise ApplianceError(ErrorCode.ACCOUNT_REFUSED,
                                 f"token label: printable, at most {MAX_LABEL_LEN} characters")
        token_id = secrets.token_hex(TOKEN_ID_BYTES)
        secret = f"{TOKEN_PREFIX}{token_id}_{secrets.token_urlsafe(TOKEN_SECRET_BYTES)}"
        now = self.clock()
        expires = now + ttl_days * SECONDS_PER_DAY
        with self._lock, self.store.transaction():
            row = self.store.execute("SELECT disabled FROM accounts WHERE name = ?", (account,)).fetchone()
            if row is None or row[0]:
                raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, f"no enabled account {account!r}")
            self.store.execute(
                "INSERT INTO tokens (token_id, account, token_hash, scopes, label, created, created_by, expires) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token_id, account, token_hash(secret), ",".join(sorted(chosen)), label, now, principal.actor, expires))
        self._audit(principal, "token.create", account, "ok", f"token {token_id} scopes {','.join(sorted(chosen))}")
        return NewToken(secret, token_id, expires)

    def list(self, principal: Principal) -> list[TokenInfo]:
        """Every token for a security administrator's session; one's own otherwise."""
        query = ("SELECT token_id, account, scopes, label, created, created_by, expires, revoked, last_used "
                 "FROM tokens")
        with self._lock:  # threads share the connection: one statement at a time
            if principal.role in TOKEN_ADMIN_ROLES and principal.scopes is None:
                rows = self.store.execute(query + " ORDER BY created").fetchall()
            else:
                rows = self.store.execute(query + " WHERE account = ? ORDER BY created", (principal.actor,)).fetchall()
        return [TokenInfo(r[0], r[1], tuple(r[2].split(",")), r[3], r[4], r[5], r[6], r[7] is not None, r[8])
                for r in rows]

    def revoke(self, principal: Principal, token_id: str) -> None:
        with self._lock:
            row = self.store.execute("SELECT account FROM tokens WHERE token_id = ?", (token_id,)).fetchone()
        own = row is not None and row[0] == principal.actor
        if not own:  # a token may revoke itself; anything else is account management
            self._require_session(principal, "token.revoke", token_id, own=False)
        if row is None:
            raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, f"no token {token_id!r}")
        with self._lock, self.store.transaction():
            self.store.execute("UPDATE tokens SET revoked = ? WHERE token_id = ? AND revoked IS NULL",
                               (self.clock(), token_id))
        self._audit(principal, "token.revoke", row[0], "ok", f"token {token_id}")

    def authenticate(self, secret: str, device: str) -> Principal:
        """The principal of a live token (role narrowed to its scopes); every refusal is audited."""
        now = self.clock()
        with self._lock:
            row = self.store.execute(
                "SELECT t.token_id, t.account, t.scopes, t.expires, t.revoked, t.last_used, a.role, a.disabled "
                "FROM tokens t JOIN accounts a ON a.name = t.account WHERE t.token_hash = ?",
                (token_hash(secret),)).fetchone()
        if row is None:
            shown = token_id_of(secret) or "unknown"
            self._audit(Principal(ANONYMOUS, Role.AUDITOR, device), "token.use", shown, "refused", "no such token")
            raise ApplianceError(ErrorCode.TOKEN_INVALID, "unknown API token")
        token_id, account, scopes, expires, revoked, last_used, role, disabled = row
        principal = Principal(account, Role(role), device, frozenset(scopes.split(",")))
        why = "token revoked" if revoked is not None else "token expired" if expires <= now else \
            "account disabled" if disabled else ""
        if why:
            self._audit(principal, "token.use", account, "refused", f"token {token_id}: {why}")
            raise ApplianceError(ErrorCode.TOKEN_INVALID, f"API token {token_id}: {why}")
        if last_used is None or now - last_used >= LAST_USED_RESOLUTION_S:
            with skipped_if_unwritable(), self._lock, self.store.transaction():  # a full disk: used, not noted
                self.store.execute("UPDATE tokens SET last_used = ? WHERE token_id = ?", (now, token_id))
        return principal

    def _require_session(self, principal: Principal, action: str, obj: str, own: bool) -> None:
        """Account management: a security administrator's (or, for ``own``, the account's)
        interactive session; a token is refused (it must not mint or manage tokens)."""
        allowed = isinstance(principal, Principal) and principal.scopes is None and (
            own or principal.role in TOKEN_ADMIN_ROLES)
        if allowed:
            return
        if isinstance(principal, Principal):
            self._audit(principal, action, obj, "denied", "needs a session" if principal.scopes is not None else "")
        raise ApplianceError(ErrorCode.PERMISSION_DENIED,
                             f"only a security administrator's session (or the account's own) may {action}")

    def _audit(self, principal: Principal, action: str, obj: str, result: str, detail: str = "") -> None:
        with self._lock:
            self.audit.append(principal, action, obj, result, detail)

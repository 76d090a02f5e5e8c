"""Accounts and API tokens for tests, made through the real account store of a data folder.

Tests that drive the CLI, the REST API or the console need someone to act as: an account
with a role, and either an API token (``make_token``) or a password and TOTP secret to log
in with (``login_session``). Both go through :class:`appliance.ops.accounts.Accounts` on the
folder's real SQLCipher files and keys, exactly as ``appliance admin`` would; nothing is
faked. The first call in a folder bootstraps a security administrator, who then creates the
accounts (account management is the security administrator's, as in production).
"""
from __future__ import annotations

import secrets
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from appliance.config import Config
from appliance.ops.accounts import ACCOUNTS_DB, Accounts
from appliance.security.keys import ensure_keys
from appliance.security.roles import PERMISSIONS, SCOPES, Principal, Role
from appliance.stores.protected import ProtectedData, key_provider

KIT_ADMIN = "kit-security-admin"
KIT_DEVICE = "authkit"
TOKEN_TTL_DAYS = 1.0  # a test's token outlives the test, not the week
NAME_BYTES = 3
PASSWORD_BYTES = 18  # random url-safe text: far beyond the strength policy's estimate
ROLE_PREFIX = {Role.SECURITY_ADMIN: "sec", Role.SYSTEM_ADMIN: "sys", Role.AUDITOR: "aud", Role.OPERATOR: "op"}


def new_password() -> str:
    """A password the policy accepts (random, with all four character classes)."""
    return f"Kit-{secrets.token_urlsafe(PASSWORD_BYTES)}-9z"


def role_scopes(role: Role) -> tuple[str, ...]:
    """Every scope that grants at least one permission of ``role``."""
    return tuple(name for name, granted in SCOPES.items() if granted & PERMISSIONS[role])


@contextmanager
def _accounts(data_root: Path, config: Config | None) -> Iterator[Accounts]:
    config = config or Config()
    keys = key_provider(config.security, data_root)
    ensure_keys(keys)
    ensure_keys(keys, (ACCOUNTS_DB,))
    with ProtectedData(data_root, keys, config.security) as data:
        accounts = Accounts.open(data_root, keys, data.audit, config.ops.session_idle_s)
        try:
            yield accounts
        finally:
            accounts.close()


def _admin(accounts: Accounts) -> Principal:
    """The folder's security administrator (bootstrapped on first use)."""
    if not accounts.names():
        accounts.bootstrap(KIT_ADMIN, new_password())
    admins = accounts.names(Role.SECURITY_ADMIN)
    assert admins, "the data folder has accounts but no security administrator"
    return Principal(KIT_ADMIN if KIT_ADMIN in admins else admins[0], Role.SECURITY_ADMIN, KIT_DEVICE)


def _new_account(accounts: Accounts, role: Role) -> tuple[str, str, str]:
    admin = _admin(accounts)
    name = f"{ROLE_PREFIX[role]}-{secrets.token_hex(NAME_BYTES)}"
    password = new_password()
    created = accounts.create(admin, name, role, password)
    return name, password, created.totp_secret


def make_token(data_root: Path, role: Role, scopes: tuple[str, ...] | None = None,
               config: Config | None = None) -> str:
    """A new account of ``role`` in ``data_root`` and an API token for it (``apt_...``);
    ``scopes`` None gives every scope the role can use."""
    with _accounts(Path(data_root), config) as accounts:
        name, _, _ = _new_account(accounts, role)
        admin = _admin(accounts)
        new = accounts.create_token(admin, name, scopes if scopes is not None else role_scopes(role),
                                    TOKEN_TTL_DAYS, label="test")
        return new.token


def login_session(data_root: Path, role: Role, config: Config | None = None) -> tuple[str, str, str]:
    """A new account of ``role``: (account, password, TOTP secret) for a real login
    (``appliance.ops.totp.totp(secret)`` gives the current code)."""
    with _accounts(Path(data_root), config) as accounts:
        return _new_account(accounts, role)

"""Account commands: ``appliance login``/``logout`` and ``appliance admin`` (accounts, tokens).

Secrets (passwords, TOTP secrets, API tokens) never go to a log, and to stdout only where
the operator asked for it: on a terminal, with ``--json`` (a script that will store them),
or into a new 0600 file (``--secret-out``, ``--out``). Passwords come from a terminal prompt
or a file (``--password-file``, ``-`` for stdin), never from the command line.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import getpass
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from appliance import json_text
from appliance.cli.arg_types import positive_float
from appliance.cli.auth import (
    CLI_DEVICE, acting_principal, open_accounts, read_secret_file, session_file, write_secret_file,
)
from appliance.cli.common import config_from, protected_data
from appliance.errors import ApplianceError, ErrorCode
from appliance.ops.tokens import DEFAULT_TOKEN_TTL_DAYS
from appliance.security.keys import ensure_keys

if TYPE_CHECKING:  # the stores load when a command runs, not for every 'appliance'
    from appliance.ops.accounts import Accounts, NewAccount
    from appliance.stores.protected import ProtectedData

STDIN_NAME = "-"
GLOBAL_OPTIONS = ("config", "debug", "token")


def register(sub: argparse._SubParsersAction) -> None:
    login = sub.add_parser("login", help="open a session for this OS user (password + TOTP); commands then act as "
                                         "that account until 'appliance logout' or the idle timeout")
    login.add_argument("--account", required=True, help="the account to log in as")
    login.add_argument("--password-file", help="read the password from this file ('-': stdin); default: prompt")
    login.add_argument("--totp", help="the current code of the account's authenticator; default: prompt")
    login.set_defaults(handler=cmd_login)
    logout = sub.add_parser("logout", help="end this OS user's session (on the server too) and remove its file")
    logout.set_defaults(handler=cmd_logout)

    admin = sub.add_parser("admin", help="accounts and API tokens (bootstrap, add, list, unlock, disable, enable, "
                                         "token); all but bootstrap need a security administrator's session")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    boot = admin_sub.add_parser("bootstrap", help="create the first security administrator (refused once any "
                                                  "account exists)")
    _account_options(boot)
    boot.add_argument("--account", required=True, help="name of the new security administrator's account")
    add = admin_sub.add_parser("add", help="create an account with a role")
    add.add_argument("name", help="the new account's name")
    add.add_argument("--role", required=True,
                     help="system_administrator | security_administrator | auditor | operator")
    _account_options(add)
    for name, helptext in (("unlock", "clear a lockout"),
                           ("disable", "disable an account: its sessions end, its tokens stop working"),
                           ("enable", "enable it again")):
        admin_sub.add_parser(name, help=helptext).add_argument("name", help="the account's name")
    admin_sub.add_parser("list", help="list accounts")
    token = admin_sub.add_parser("token", help="API tokens: create (shown once), list, revoke")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    create = token_sub.add_parser("create", help="a token for an account, narrowed to scopes, expiring")
    create.add_argument("--account", required=True, help="the account the token acts as")
    create.add_argument("--scope", action="append", required=True,
                        help="people:read, people:write, identify, events:read, devices, audit, keys, maintenance "
                             "(repeat or comma-separate)")
    create.add_argument("--days", type=positive_float, default=DEFAULT_TOKEN_TTL_DAYS, help="lifetime in days "
                                                                                            "(default %(default)s)")
    create.add_argument("--label", default="", help="what the token is for")
    create.add_argument("--json", action="store_true", help="print {token, token_id, expires_at} (the token too)")
    create.add_argument("--out", help="write the token to this new 0600 file instead of printing it")
    listing = token_sub.add_parser("list", help="tokens (never the tokens themselves)")
    listing.add_argument("--json", action="store_true",
                         help="print them as JSON (id, account, scopes, label, created, expiry, revoked, last use)")
    revoke = token_sub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id", help="the token's id, as 'admin token list' shows it")
    admin.set_defaults(handler=cmd_admin)
    _share_globals(admin, [*admin_sub.choices.values(), *token_sub.choices.values()])


def _share_globals(group: argparse.ArgumentParser, children: list[argparse.ArgumentParser]) -> None:
    """The global options (``--config``, ``--debug``, ``--token``) that the top-level command
    gave ``group`` are accepted after its subcommands' names too."""
    shared = [a for a in group._actions if a.dest in GLOBAL_OPTIONS]
    for child in children:
        for action in shared:
            child._add_action(action)


def _account_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-file", help="read the new password from this file ('-': stdin); default: prompt")
    parser.add_argument("--secret-out", help="write the TOTP secret to this new 0600 file instead of the terminal")
    parser.add_argument("--json", action="store_true",
                        help="print {account, role, totp_secret, totp_uri} as JSON: the TOTP secret goes to stdout "
                             "because you asked for it (for a script that stores it safely)")


# -- reading secrets ----------------------------------------------------------------------
def _password(path: str | None, prompt: str, confirm: bool = False) -> str:
    if path == STDIN_NAME:
        return sys.stdin.readline().rstrip("\n")
    if path:
        return read_secret_file(Path(path))
    if not sys.stdin.isatty():
        raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, "no terminal to ask for the password: use --password-file")
    password = getpass.getpass(prompt)
    if confirm and getpass.getpass("again: ") != password:
        raise ApplianceError(ErrorCode.PASSWORD_POLICY, "the two passwords differ")
    return password


def _code(given: str | None) -> str:
    if given:
        return given.strip()
    if not sys.stdin.isatty():
        raise ApplianceError(ErrorCode.LOGIN_FAILED, "no terminal to ask for the TOTP code: use --totp")
    return getpass.getpass("TOTP code: ").strip()


def _check_secret_destination(args: argparse.Namespace) -> None:
    """Checked before the account exists, so a refusal leaves nothing half-created."""
    if not (args.secret_out or args.json) and not sys.stdout.isatty():
        raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, "refusing to print a TOTP secret to a pipe or log: use a "
                                                        "terminal, --secret-out FILE or --json")
    if args.secret_out and Path(args.secret_out).exists():
        raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, f"{args.secret_out} exists; give a new file")


def _show_totp(new: NewAccount, args: argparse.Namespace) -> None:
    """The TOTP secret goes to a terminal, a new 0600 file or (asked for) JSON; never to a log."""
    if args.json:
        print(json_text.dumps({"account": new.account.name, "role": new.account.role.value,
                          "totp_secret": new.totp_secret, "totp_uri": new.provisioning_uri()}))
        return
    if args.secret_out:
        write_secret_file(Path(args.secret_out), f"{new.totp_secret}\n{new.provisioning_uri()}")
        print(f"account {new.account.name} ({new.account.role.value}) created; TOTP secret written to "
              f"{args.secret_out}")
        return
    print(f"account {new.account.name} ({new.account.role.value}) created.")
    print("Add this to an authenticator app now; it is not shown again:")
    print(f"  secret: {new.totp_secret}\n  uri:    {new.provisioning_uri()}")


# -- commands -----------------------------------------------------------------------------
def _opened(args: argparse.Namespace) -> tuple[ProtectedData, Accounts]:
    from appliance.ops.accounts import ACCOUNTS_DB, Accounts
    from appliance.stores.protected import key_provider

    config = config_from(args)
    data = protected_data(config)
    ensure_keys(key_provider(config.security, data.root), (ACCOUNTS_DB,))
    return data, Accounts.open(data.root, key_provider(config.security, data.root), data.audit,
                               config.ops.session_idle_s)


def cmd_login(args: argparse.Namespace) -> int:
    with protected_data(config_from(args)) as data:
        accounts = open_accounts(args, data)
        try:  # the stores are open before the password is read: a guess then costs only the check
            password = _password(args.password_file, f"password for {args.account}: ")
            session = accounts.login(args.account, password, _code(args.totp), device=CLI_DEVICE)
            path = session_file()
            _end_previous(accounts, path)
            write_secret_file(path, session.token, replace=True, private_folder=True)
        finally:
            accounts.close()
    minutes = session.expires_idle_s / 60
    print(f"logged in as {session.principal.actor} ({session.principal.role.value}); the session ends after "
          f"{minutes:.0f} minutes without a command, or with 'appliance logout'")
    return 0


def _end_previous(accounts: Accounts, path: Path) -> None:
    """A new login replaces this OS user's previous session, which ends on the server too."""
    try:
        accounts.logout(read_secret_file(path), reason="replaced by a new login")
    except ApplianceError:
        pass  # no readable previous session: nothing to end


def cmd_logout(args: argparse.Namespace) -> int:
    path = session_file()
    if not path.exists():
        print("no session")
        return 0

    token = read_secret_file(path)
    with protected_data(config_from(args)) as data:
        accounts = open_accounts(args, data)
        try:
            accounts.logout(token)
        finally:
            accounts.close()
    path.unlink()
    print("logged out")
    return 0


def cmd_admin(args: argparse.Namespace) -> int:
    if args.admin_command in ("bootstrap", "add"):
        _check_secret_destination(args)
    data, accounts = _opened(args)
    try:
        if args.admin_command == "bootstrap":
            password = _password(args.password_file, "password: ", confirm=True)
            _show_totp(accounts.bootstrap(args.account, password), args)
            return 0
        principal = acting_principal(args, data)
        if args.admin_command == "add":
            password = _password(args.password_file, f"password for {args.name}: ", confirm=True)
            _show_totp(accounts.create(principal, args.name, args.role, password), args)
        elif args.admin_command == "list":
            for account in accounts.list(principal):
                locked = " locked" if account.locked_until > time.time() else ""
                print(f"{account.name}\t{account.role.value}{' disabled' if account.disabled else ''}{locked}")
        elif args.admin_command == "unlock":
            accounts.unlock(principal, args.name)
        elif args.admin_command in ("disable", "enable"):
            accounts.set_disabled(principal, args.name, args.admin_command == "disable")
        else:
            return _token_command(args, accounts, principal)
        return 0
    finally:
        accounts.close()
        data.close()


def _token_command(args: argparse.Namespace, accounts: Accounts, principal) -> int:
    if args.token_command == "create":
        if args.out and Path(args.out).exists():
            raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, f"{args.out} exists; give a new file")
        if not (args.out or args.json) and not sys.stdout.isatty():
            raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, "refusing to print a token to a pipe or log: use a "
                                                            "terminal, --out FILE or --json")
        scopes = [s.strip() for value in args.scope for s in value.split(",") if s.strip()]
        new = accounts.create_token(principal, args.account, scopes, args.days, args.label)
        expires = _when(new.expires_at)
        if args.json:
            print(json_text.dumps({"token": new.token, "token_id": new.token_id, "expires_at": new.expires_at}))
        elif args.out:
            write_secret_file(Path(args.out), new.token)
            print(f"token {new.token_id} for {args.account} written to {args.out}; expires {expires}")
        else:
            print(f"token {new.token_id} for {args.account}, expires {expires}; it is not shown again:\n{new.token}")
    elif args.token_command == "list":
        tokens = accounts.tokens(principal)
        if args.json:
            print(json_text.dumps([dataclasses.asdict(t) for t in tokens]))
        for t in [] if args.json else tokens:
            state = "revoked" if t.revoked else "expired" if t.expires_at <= time.time() else "active"
            print(f"{t.token_id}\t{t.account}\t{','.join(t.scopes)}\t{state}\texpires {_when(t.expires_at)}"
                  f"\t{t.label}")
    else:
        accounts.revoke_token(principal, args.token_id)
        print(f"token {args.token_id} revoked")
    return 0


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

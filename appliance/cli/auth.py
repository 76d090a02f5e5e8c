"""Who runs a CLI command: an appliance account, by its session or an API token.

Every command that touches personal data or keys asks :func:`acting_principal`, which looks,
in this order, at ``--token``, ``$APPLIANCE_TOKEN``, the file named by
``$APPLIANCE_TOKEN_FILE`` (the systemd credential of the nightly maintenance) and the session
file that ``appliance login`` wrote for the calling OS user; with none of them the command
fails with AUTH_REQUIRED (exit 34). The OS user's name (``LOGNAME``, ``USER``, ``SUDO_USER``)
plays no part: a variable anyone can set must not choose a role.

The session file lives in the caller's runtime folder (``$XDG_RUNTIME_DIR``, else
``/run/user/<uid>``: per-user, 0700, emptied at logout from the machine), else in a 0700
per-uid folder below the data folder's ``run/``. A secret file that another OS user owns or
could read is refused: someone else's file must not make a command act as them.
"""
from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from appliance import paths
from appliance.cli.common import config_from
from appliance.errors import ApplianceError, ErrorCode
from appliance.security.roles import Principal

if TYPE_CHECKING:  # the stores load when a command authenticates, not for every 'appliance'
    from appliance.ops.accounts import Accounts
    from appliance.stores.protected import ProtectedData

TOKEN_ENV = "APPLIANCE_TOKEN"
TOKEN_FILE_ENV = "APPLIANCE_TOKEN_FILE"
RUNTIME_ENV = "XDG_RUNTIME_DIR"
SESSION_FOLDER = "appliance"
SESSION_NAME = "session"
USER_RUNTIME_ROOT = Path("/run/user")
PRIVATE_DIR_MODE = 0o700
SECRET_FILE_MODE = 0o600
GROUP_OR_OTHER = 0o077
OTHERS = 0o007
ROOT_UID = 0
MAX_SECRET_BYTES = 4096  # a token or session is ~60 characters; a bigger file is not one
CLI_DEVICE = "cli"
HOW_TO_AUTHENTICATE = ("run 'appliance login --account NAME' first, or pass --token "
                       f"(or set {TOKEN_ENV} / {TOKEN_FILE_ENV})")


def session_file() -> Path:
    """Where ``appliance login`` keeps the calling OS user's session token."""
    runtime = os.environ.get(RUNTIME_ENV)
    if runtime and Path(runtime).is_dir():
        return Path(runtime) / SESSION_FOLDER / SESSION_NAME
    user_run = USER_RUNTIME_ROOT / str(os.getuid())
    if user_run.is_dir() and os.access(user_run, os.W_OK):
        return user_run / SESSION_FOLDER / SESSION_NAME
    return paths.data_dir() / "run" / f"session-{os.getuid()}" / SESSION_NAME


def read_secret_file(path: Path, service_credential: bool = False) -> str:
    """The secret in ``path`` (one line), if the caller owns the file and nobody else can read
    it. A ``service_credential`` (``$APPLIANCE_TOKEN_FILE``) may also belong to root, as systemd's
    credential files can (it then grants the unit's user by an ACL, which shows in the group
    bits); it must still be closed to others."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ApplianceError(ErrorCode.AUTH_REQUIRED, f"{path} does not exist; {HOW_TO_AUTHENTICATE}") from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_SECRET_BYTES:
        raise ApplianceError(ErrorCode.TOKEN_INVALID, f"{path} is not a token or session file")
    owners, closed = ((os.getuid(), ROOT_UID), OTHERS) if service_credential else ((os.getuid(),), GROUP_OR_OTHER)
    if info.st_uid not in owners or info.st_mode & closed:
        raise ApplianceError(ErrorCode.TOKEN_INVALID,
                             f"refusing {path}: it must belong to you and be readable by you only (chmod 600)")
    return path.read_text(encoding="utf-8").strip()


def write_secret_file(path: Path, secret: str, replace: bool = False, private_folder: bool = False) -> None:
    """Write ``secret`` to a 0600 file (a new one unless ``replace``); with ``private_folder``
    (the session's) the folder must be the caller's and is made 0700."""
    path.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if private_folder:
        if path.parent.stat().st_uid != os.getuid():
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"{path.parent} belongs to another user")
        path.parent.chmod(PRIVATE_DIR_MODE)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if replace else os.O_EXCL)
    try:
        fd = os.open(path, flags, SECRET_FILE_MODE)
    except FileExistsError:
        raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, f"{path} exists; give a new file") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), SECRET_FILE_MODE)  # an existing file keeps its mode otherwise
        handle.write(secret + "\n")


def given_secret(args: argparse.Namespace) -> str:
    """The token or session the caller gave, in order of precedence; "" when none."""
    if getattr(args, "token", None):
        return str(args.token).strip()
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    if os.environ.get(TOKEN_FILE_ENV):
        return read_secret_file(Path(os.environ[TOKEN_FILE_ENV]), service_credential=True)
    session = session_file()
    return read_secret_file(session) if session.exists() else ""


def open_accounts(args: argparse.Namespace, data: ProtectedData) -> Accounts:
    """The account store beside ``data``, with the configured session idle timeout."""
    from appliance.ops.accounts import ACCOUNTS_DB, ACCOUNTS_FILE, Accounts
    from appliance.stores.protected import key_provider

    config = config_from(args)
    keys = key_provider(config.security, data.root)
    if not keys.exists(ACCOUNTS_DB) or not (data.root / ACCOUNTS_FILE).exists():
        raise ApplianceError(ErrorCode.AUTH_REQUIRED,
                             "no accounts yet: create the first with 'appliance admin bootstrap --account NAME'")
    return Accounts.open(data.root, keys, data.audit, config.ops.session_idle_s)


def acting_principal(args: argparse.Namespace, data: ProtectedData) -> Principal:
    """The account running this command (its role, narrowed to a token's scopes), or
    AUTH_REQUIRED / SESSION_EXPIRED / TOKEN_INVALID."""
    secret = given_secret(args)
    if not secret:
        raise ApplianceError(ErrorCode.AUTH_REQUIRED, f"no session or token: {HOW_TO_AUTHENTICATE}")
    accounts = open_accounts(args, data)
    try:
        return accounts.authenticate(secret, device=CLI_DEVICE)
    finally:
        accounts.close()

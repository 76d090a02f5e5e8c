"""Operations commands: admin, provision, backup, restore, health, update, maintenance."""
from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from pathlib import Path

from appliance import paths
from appliance.cli.common import config_from
from appliance.errors import ApplianceError, ErrorCode

SECRET_FILE_MODE = 0o600
BROKER_UNIT = "appliance-broker.service"


def register(sub: argparse._SubParsersAction) -> None:
    admin = sub.add_parser("admin", help="administrator accounts (bootstrap, add, list, unlock, disable)")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    boot = admin_sub.add_parser("bootstrap", help="create the first security administrator (once)")
    boot.add_argument("name")
    boot.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    boot.add_argument("--secret-out", help="write the TOTP secret to this new 0600 file instead of the terminal")
    for name, helptext in (("add", "create an account"), ("unlock", "clear a lockout"),
                           ("disable", "disable an account"), ("list", "list accounts")):
        cmd = admin_sub.add_parser(name, help=helptext)
        if name != "list":
            cmd.add_argument("name")
        if name == "add":
            cmd.add_argument("--role", required=True)
            cmd.add_argument("--secret-out")
        cmd.add_argument("--as", dest="login", required=True, help="your security administrator account")
    admin.set_defaults(handler=cmd_admin)

    provision = sub.add_parser("provision", help="PKI: CA, broker, devices, matchers, revocation")
    provision.add_argument("what", choices=("ca", "broker", "device", "matcher", "revoke", "rotate", "broker-config",
                                            "export", "import"),
                           help="export NAME --bundle FILE: a door's certificate and keys for its own host; "
                                "import FILE: unpack such a bundle on the door")
    provision.add_argument("name", nargs="?")
    provision.add_argument("--bundle", help="device/export: also write the device's bundle to this new file")
    provision.add_argument("--pki", help="PKI folder (default <data>/pki)")
    provision.add_argument("--group", default="default")
    provision.add_argument("--modes", default="verify", help="allowed matching modes, comma-separated")
    provision.add_argument("--host", action="append", help="broker certificate host names/addresses")
    provision.add_argument("--out", help="broker-config: output folder")
    provision.add_argument("--port", type=int, default=8883)
    provision.add_argument("--bind", default="127.0.0.1")
    provision.add_argument("--run-as", help="broker-config: the broker's user (default: the caller)")
    provision.add_argument("--copy-tls", action="store_true",
                           help="broker-config: copy CA, certificate, key and CRL into --out (owned by --run-as)")
    provision.set_defaults(handler=cmd_provision)

    backup = sub.add_parser("backup", help="encrypted, verified backup of every store")
    backup.add_argument("destination", nargs="?")
    backup.set_defaults(handler=cmd_backup)
    restore = sub.add_parser("restore", help="restore a verified backup (later deletions are kept)")
    restore.add_argument("source")
    restore.set_defaults(handler=cmd_restore)

    health = sub.add_parser("health", help="health checks for monitoring (exit 0 ok, 1 warn, 2 fail)")
    health.add_argument("--service", choices=("edge", "matcher"), default="edge")
    health.add_argument("--name", help="the service's name (default: device.name or matcher.name)")
    health.set_defaults(handler=cmd_health)

    update = sub.add_parser("update", help="install a signed model pack; self-test; roll back on failure")
    update.add_argument("package")
    update.set_defaults(handler=cmd_update)

    maintenance = sub.add_parser("maintenance", help="retention pruning and backup (the nightly timer)")
    maintenance.set_defaults(handler=cmd_maintenance)


# -- shared -------------------------------------------------------------------------------
def _system_principal(role_name: str):
    """Commands run by the service user (timer, root shell) act as the OS account's role
    from [security.roles]; unknown accounts get nothing."""
    from appliance.security.roles import Principal, role_named

    return Principal(f"os:{getpass.getuser()}", role_named(role_name), "local")


def _open(args):
    from appliance.ops.accounts import ACCOUNTS_DB, AccountStore
    from appliance.security.keys import ensure_keys
    from appliance.stores.protected import ProtectedData, key_provider

    config = config_from(args)
    root = paths.data_dir()
    keys = key_provider(config.security, root)
    ensure_keys(keys, (ACCOUNTS_DB,))
    data = ProtectedData(root, keys, config.security)
    return config, root, keys, data, AccountStore.open(root / "accounts.db", keys)


def _os_role(config) -> str:
    user = getpass.getuser()
    role = config.security.roles.get(user)
    if role is None:
        raise ApplianceError(ErrorCode.PERMISSION_DENIED, f"OS account {user!r} has no role in [security.roles]")
    return role


def _read_secret(prompt: str, from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass(prompt)


def _check_secret_destination(secret_out: str | None) -> None:
    """Checked before the account exists, so a refusal leaves nothing half-created."""
    if not secret_out and not sys.stdout.isatty():
        raise ApplianceError(ErrorCode.ACCOUNT_REFUSED,
                             "refusing to print a TOTP secret to a pipe or log: use a terminal or --secret-out FILE")
    if secret_out and Path(secret_out).exists():
        raise ApplianceError(ErrorCode.ACCOUNT_REFUSED, f"{secret_out} exists; give a new file")


def _show_totp(new, secret_out: str | None) -> None:
    """The TOTP secret goes to a terminal or a new 0600 file, never to a log or a pipe."""
    if secret_out:
        fd = os.open(secret_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_FILE_MODE)
        with os.fdopen(fd, "w") as handle:
            handle.write(f"{new.totp_secret}\n{new.provisioning_uri()}\n")
        print(f"account {new.account.name} ({new.account.role.value}) created; TOTP secret written to {secret_out}")
        return
    print(f"account {new.account.name} ({new.account.role.value}) created.")
    print("Add this to an authenticator app now; it is not shown again:")
    print(f"  secret: {new.totp_secret}\n  uri:    {new.provisioning_uri()}")


# -- admin --------------------------------------------------------------------------------
def cmd_admin(args: argparse.Namespace) -> int:
    from appliance.ops.accounts import Accounts

    config, root, keys, data, store = _open(args)
    accounts = Accounts(store, data.audit, config.ops.session_idle_s)
    try:
        if args.admin_command in ("bootstrap", "add"):
            _check_secret_destination(args.secret_out)
        if args.admin_command == "bootstrap":
            password = _read_secret("password: ", args.password_stdin)
            if not args.password_stdin and sys.stdin.isatty() and getpass.getpass("again: ") != password:
                raise ApplianceError(ErrorCode.PASSWORD_POLICY, "the two passwords differ")
            _show_totp(accounts.bootstrap(args.name, password), args.secret_out)
            return 0
        password = _read_secret(f"password for {args.login}: ", False)
        code = _read_secret("TOTP code: ", False)
        session = accounts.login(args.login, password, code, device="cli")
        principal = accounts.principal(session.token)
        try:
            if args.admin_command == "add":
                new_password = _read_secret(f"password for {args.name}: ", False)
                _show_totp(accounts.create(principal, args.name, args.role, new_password), args.secret_out)
            elif args.admin_command == "list":
                for account in accounts.list(principal):
                    locked = " locked" if account.locked_until > time.time() else ""
                    print(f"{account.name}\t{account.role.value}{' disabled' if account.disabled else ''}{locked}")
            elif args.admin_command == "unlock":
                accounts.unlock(principal, args.name)
            elif args.admin_command == "disable":
                accounts.set_disabled(principal, args.name, True)
        finally:
            accounts.logout(session.token)
        return 0
    finally:
        accounts.close()
        data.close()


# -- provisioning -------------------------------------------------------------------------
def cmd_provision(args: argparse.Namespace) -> int:
    from appliance.broker.pki import ProjectPKI
    from appliance.ops import provisioning

    pki = ProjectPKI(Path(args.pki) if args.pki else paths.data_dir() / "pki")
    if args.what == "ca":
        pki.create_ca()
        print(f"CA ready in {pki.folder}")
    elif args.what == "broker":
        pki.issue_broker(tuple(args.host) if args.host else ("localhost", "127.0.0.1", "::1"))
        print(f"broker certificate {pki.broker_cert}")
    elif args.what == "broker-config":
        from appliance.broker.config import BrokerSettings, render

        print(render(pki, Path(args.out or pki.folder.parent / "broker"),
                     BrokerSettings(port=args.port, bind_address=args.bind, run_as=args.run_as or getpass.getuser(),
                                    copy_tls=args.copy_tls)))
    elif args.what == "import":
        from appliance.ops.bundle import import_device

        if not args.name:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, "provision import needs the bundle FILE")
        device = import_device(Path(args.name), pki.folder.parent)
        print(f"device {device} provisioned in {pki.folder.parent}; set [device] name = \"{device}\"")
    else:
        if not args.name:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"provision {args.what} needs a NAME")
        from appliance.site import Site

        site = Site(pki.folder.parent)  # envelope keys and the node directory live beside the PKI
        if args.what == "device":
            identity, policy = provisioning.enroll_device(pki, args.name, args.group, tuple(args.modes.split(",")))
            site.add_device_keys(identity.name)
            print(f"device {identity.name}: {pki.cert(identity.name)} "
                  f"(group {policy.group}, modes {','.join(policy.modes)}); "
                  f"envelope keys in {site.folder / 'nodes' / identity.name}")
        if args.what in ("device", "export") and args.bundle:
            from appliance.ops.bundle import export_device

            members = export_device(site.folder, args.name, Path(args.bundle))
            print(f"bundle {args.bundle}: {len(members)} files for {args.name} (keep it secret; "
                  f"on the door: appliance provision import {Path(args.bundle).name})")
        elif args.what == "export":
            raise ApplianceError(ErrorCode.CONFIG_INVALID, "provision export needs --bundle FILE")
        if args.what == "matcher":
            print(f"matcher {pki.issue_client(args.name, 'matcher').name}: {pki.cert(args.name)}")
            site.add_matcher_keys(args.name)
        if args.what in ("device", "matcher"):
            # the broker's access rules are read at its start: a new identity fails closed until then
            print(f"restart the broker ({BROKER_UNIT}) so it grants {args.name} its rights")
        if args.what == "rotate":
            provisioning.rotate(pki, args.name)
            print(f"{args.name}: new key and certificate in {pki.cert(args.name).parent}; no restart needed")
        elif args.what == "revoke":
            provisioning.revoke_device(pki, args.name, _restart_broker_unit)
            print(f"{args.name} revoked; broker restarted so live sessions are cut")
    return 0


def _restart_broker_unit() -> None:
    import subprocess

    result = subprocess.run(["systemctl", "restart", BROKER_UNIT], capture_output=True, text=True)
    if result.returncode != 0:
        raise ApplianceError(ErrorCode.BROKER_UNAVAILABLE,
                             f"revoked, but restarting the broker failed ({result.stderr.strip()}): restart it now")


# -- backup, restore, maintenance ---------------------------------------------------------
def _backup_dir(config, root: Path) -> Path:
    return Path(config.ops.backup_dir) if config.ops.backup_dir else root / "backups"


def cmd_backup(args: argparse.Namespace) -> int:
    from appliance.ops.backup import create_backup

    config, root, keys, data, store = _open(args)
    try:
        destination = Path(args.destination) if args.destination else \
            _backup_dir(config, root) / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        manifest = create_backup(data, _system_principal(_os_role(config)), destination, keys, store)
        print(f"{destination}: {len(manifest.files)} stores, verified and signed")
        return 0
    finally:
        store.close()
        data.close()


def cmd_restore(args: argparse.Namespace) -> int:
    from appliance.ops.backup import restore_backup

    config, root, keys, data, store = _open(args)
    try:
        result = restore_backup(data, _system_principal(_os_role(config)), Path(args.source), keys, store)
        print(f"restored {', '.join(result.restored)}; kept deleted: {len(result.redeleted)} subjects")
        return 0
    finally:
        store.close()
        data.close()


def cmd_maintenance(args: argparse.Namespace) -> int:
    """Retention, then a backup, then pruning of old backups beyond ops.backup_keep."""
    import shutil

    from appliance.ops.backup import MANIFEST, create_backup

    config, root, keys, data, store = _open(args)
    try:
        principal = _system_principal(_os_role(config))
        retention = data.run_retention(principal)
        folder = _backup_dir(config, root)
        create_backup(data, principal, folder / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), keys, store)
        backups = sorted(p for p in folder.iterdir() if (p / MANIFEST).exists())
        for old in backups[:-config.ops.backup_keep]:
            shutil.rmtree(old)
        print(json.dumps({"templates_expired": retention.templates_expired,
                          "audit_entries_pruned": retention.audit_entries_pruned,
                          "backups_kept": min(len(backups), config.ops.backup_keep)}))
        return 0
    finally:
        store.close()
        data.close()


# -- health and updates -------------------------------------------------------------------
def cmd_health(args: argparse.Namespace) -> int:
    from appliance.ops.health import EXIT, report, run_health

    result = report(run_health(config_from(args), args.service, paths.data_dir(), name=args.name))
    print(json.dumps(result, indent=2))
    return EXIT[result["status"]]


def cmd_update(args: argparse.Namespace) -> int:
    from appliance.ops.selftest import default_images, embedding_selftest
    from appliance.ops.updates import apply_update, load_publisher_keys

    config = config_from(args)
    root = Path(config.ops.models_root) if config.ops.models_root else paths.data_dir() / "packs"
    images = default_images(Path(config.ops.selftest_images) if config.ops.selftest_images else None)
    release = apply_update(Path(args.package), root, load_publisher_keys(Path(config.ops.publisher_keys_dir)),
                           embedding_selftest(config, images))
    print(f"{release.label} installed, self-test passed, active")
    return 0

"""Operations commands: provision, backup, restore, health, update, maintenance.

Backup, restore, maintenance and the rotation or revocation of a device act as the account
whose session or token the caller gives (``appliance.cli.auth``); the nightly timer gives a
token with scope ``maintenance``. Accounts and logins are ``appliance.cli.account_commands``."""
from __future__ import annotations

import argparse
import getpass
import time
from pathlib import Path

from appliance import json_text, paths
from appliance.cli import arg_types
from appliance.cli.common import config_from, protected_data
from appliance.errors import ApplianceError, ErrorCode
from appliance.ops.broker_unit import BROKER_UNIT


def register(sub: argparse._SubParsersAction) -> None:
    provision = sub.add_parser("provision", help="PKI: CA, broker, devices, matchers, revocation")
    provision.add_argument("what", choices=("ca", "broker", "device", "matcher", "console", "revoke", "rotate",
                                            "broker-config", "export", "import", "bridge", "camera-bind"),
                           help="export NAME --bundle FILE: a door's certificate and keys for its own host; "
                                "import FILE: unpack such a bundle on the door; console NAME: the web console's "
                                "identity for enrollment captures at a door; bridge NAME --devices D1,D2: a site "
                                "broker's certificate on the central broker, carrying those doors; camera-bind "
                                "[NAME] [--source S]: bind the door to its camera (docs/camera-binding.md)")
    provision.add_argument("name", nargs="?",
                           help="the identity's name (device, matcher, console, bridge, export, rotate, revoke); "
                                "camera-bind: the door (default [device] name); import: the bundle FILE")
    provision.add_argument("--source", help="camera-bind: the camera (default [device] source)")
    provision.add_argument("--bundle", help="device/export: also write the device's bundle to this new file")
    provision.add_argument("--pki", help="PKI folder (default <data>/pki)")
    provision.add_argument("--group", default="default",
                           help="device: the door group it belongs to; people enrolled with --group hold "
                                "templates only on their groups' doors (default '%(default)s')")
    provision.add_argument("--modes", default="verify", help="allowed matching modes, comma-separated "
                                                             "(default %(default)s)")
    provision.add_argument("--host", action="append", help="broker certificate host names/addresses")
    provision.add_argument("--out", help="broker-config: output folder")
    provision.add_argument("--port", type=arg_types.port, default=8883,
                           help="broker-config: the broker's MQTT-over-TLS listener port (default %(default)s)")
    provision.add_argument("--bind", default="127.0.0.1",
                           help="broker-config: the address the broker listens on (default %(default)s)")
    provision.add_argument("--run-as", help="broker-config: the broker's user (default: the caller)")
    provision.add_argument("--copy-tls", action="store_true",
                           help="broker-config: copy CA, certificate, key and CRL into --out (owned by --run-as)")
    provision.add_argument("--devices", help="bridge: the doors of the bridge's site, comma-separated")
    provision.add_argument("--bridge", help="broker-config: this site broker's bridge identity "
                                             "(default: [site_bridge] name)")
    provision.add_argument("--bridge-to", help="broker-config: the central broker, HOST[:PORT]")
    provision.set_defaults(handler=cmd_provision)

    backup = sub.add_parser("backup", help="encrypted, verified backup of every store")
    backup.add_argument("destination", nargs="?",
                        help="folder for the backup (default: one named by the UTC time in ops.backup_dir, "
                             "else <data>/backups)")
    backup.set_defaults(handler=cmd_backup)
    restore = sub.add_parser("restore", help="restore a verified backup (later deletions are kept)")
    restore.add_argument("source", help="folder of a backup written by 'appliance backup'")
    restore.set_defaults(handler=cmd_restore)

    health = sub.add_parser("health", help="health checks for monitoring (exit 0 ok, 1 warn, 2 fail)")
    health.add_argument("--service", choices=("edge", "matcher"), default="edge",
                        help="edge: a door's daemon; matcher: the matcher and the site's data duties "
                             "(default %(default)s)")
    health.add_argument("--name", help="the service's name (default: device.name or matcher.name)")
    health.set_defaults(handler=cmd_health)

    update = sub.add_parser("update", help="install a signed model pack; self-test; roll back on failure")
    update.add_argument("package", nargs="?", help="update package: a tar of RELEASE.json, RELEASE.sig and "
                                                   "payload/, signed by a trusted publisher key")
    update.add_argument("--resume", action="store_true",
                        help="instead: finish updates cut short (power cut, killed): self-test, confirm or roll "
                             "back (the edge daemon and the console do this themselves when they start)")
    update.set_defaults(handler=cmd_update)

    maintenance = sub.add_parser("maintenance", help="retention pruning and backup (the nightly timer)")
    maintenance.set_defaults(handler=cmd_maintenance)


# -- shared -------------------------------------------------------------------------------
def _open(args):
    """Configuration, data folder, keys, the protected data, the account store (backed up with
    the rest) and the account running the command (its session or token: appliance.cli.auth)."""
    from appliance.cli.auth import acting_principal
    from appliance.ops.accounts import ACCOUNTS_DB, ACCOUNTS_FILE, AccountStore
    from appliance.security.keys import ensure_keys
    from appliance.stores.protected import ProtectedData, key_provider

    config = config_from(args)
    root = paths.data_dir()
    keys = key_provider(config.security, root)
    ensure_keys(keys, (ACCOUNTS_DB,))
    data = ProtectedData(root, keys, config.security)
    try:
        principal = acting_principal(args, data)
    except BaseException:
        data.close()
        raise
    return config, root, keys, data, AccountStore.open(root / ACCOUNTS_FILE, keys), principal


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
        from appliance.broker.bridge import BridgeSettings
        from appliance.broker.config import BrokerSettings, render

        if bool(args.bridge) != bool(args.bridge_to):
            raise ApplianceError(ErrorCode.CONFIG_INVALID, "broker-config: --bridge and --bridge-to go together")
        bridge = BridgeSettings.parse(args.bridge, args.bridge_to) if args.bridge else \
            BridgeSettings.from_config(config_from(args).site_bridge)
        print(render(pki, Path(args.out or pki.folder.parent / "broker"),
                     BrokerSettings(port=args.port, bind_address=args.bind, run_as=args.run_as or getpass.getuser(),
                                    copy_tls=args.copy_tls, bridge=bridge)))
    elif args.what == "bridge":
        from appliance.broker.bridge import provision_bridge

        devices = tuple(d for d in (args.devices or "").split(",") if d)
        if not args.name or not devices:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, "provision bridge needs a NAME and --devices D1,D2")
        identity = provision_bridge(pki, args.name, devices)
        print(f"bridge {identity.name}: {pki.cert(identity.name)} carries {', '.join(sorted(set(devices)))}; "
              f"restart the central broker ({BROKER_UNIT}) so it grants the bridge its rights")
    elif args.what == "camera-bind":
        from appliance.capture.camera_identity import bind_source
        from appliance.capture.sources import open_source

        config = config_from(args)
        device = args.name or config.device.name
        if not device:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, "provision camera-bind needs a NAME or [device] name")
        source = open_source(args.source or config.device.source)
        try:
            binding = bind_source(source)
        finally:
            source.close()
        where = binding.save(pki.folder.parent / "nodes" / device)
        print(f"{device}: bound to {binding.identity.card or binding.identity.kind} (threshold "
              f"{binding.threshold:.4f}) in {where}; set [device] camera_binding = \"enforce\"")
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
        if args.what == "console":
            from appliance.matcher.capture_client import provision_console

            provision_console(pki, site.directory, site.central_keys(), args.name)
            print(f"console {args.name}: {pki.cert(args.name)} (asks doors for enrollment captures)")
        if args.what in ("device", "matcher", "console"):
            # the broker's access rules are read at its start: a new identity fails closed until then
            print(f"restart the broker ({BROKER_UNIT}) so it grants {args.name} its rights")
        if args.what in ("rotate", "revoke"):
            return _change_device(args, pki)
    return 0


def _change_device(args: argparse.Namespace, pki) -> int:
    """Rotate or revoke a device's keys as an authenticated account with MANAGE_DEVICES, on
    the record (as the console's revoke button is): a revocation is what an incident
    response relies on, so who did it, whether the door confirmed the wipe of its cache and
    whether the broker cut the session must be kept."""
    from appliance.cli.auth import acting_principal
    from appliance.matcher import wipe_sender
    from appliance.ops import provisioning
    from appliance.ops.broker_unit import BrokerRestart
    from appliance.ops.bundle import DIRECTORY_FILE
    from appliance.security.roles import Permission, require

    config = config_from(args)
    with protected_data(config) as data:
        principal = acting_principal(args, data)
        try:
            require(principal, Permission.MANAGE_DEVICES)
        except ApplianceError:
            data.audit.append(principal, f"device.{args.what}", args.name, "denied")
            raise
        if args.what == "rotate":
            provisioning.rotate(pki, args.name)
            data.audit.append(principal, "device.rotate", args.name, "ok", "new key and certificate")
            print(f"{args.name}: new key and certificate in {pki.cert(args.name).parent}; no restart needed")
            return 0
        restart = BrokerRestart()
        wipe = wipe_sender.for_host(pki, pki.folder.parent / DIRECTORY_FILE, data.node, config, principal.actor)
        provisioning.revoke_device(pki, args.name, restart, wipe)
        data.audit.append(principal, "device.revoke", args.name, "ok",
                          f"{wipe.detail}; {'broker restarted' if restart.done else 'broker restart pending'}")
    print(f"{args.name}: {wipe.detail}")
    if not restart.done:
        raise ApplianceError(ErrorCode.BROKER_UNAVAILABLE, f"{args.name} revoked, but {restart.detail}")
    print(f"{args.name} revoked; broker restarted so live sessions are cut")
    return 0


# -- backup, restore, maintenance ---------------------------------------------------------
def _backup_dir(config, root: Path) -> Path:
    return Path(config.ops.backup_dir) if config.ops.backup_dir else root / "backups"


def cmd_backup(args: argparse.Namespace) -> int:
    from appliance.ops.backup import create_backup

    config, root, keys, data, store, principal = _open(args)
    try:
        destination = Path(args.destination) if args.destination else \
            _backup_dir(config, root) / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        manifest = create_backup(data, principal, destination, keys, store)
        print(f"{destination}: {len(manifest.files)} stores, verified and signed")
        return 0
    finally:
        store.close()
        data.close()


def cmd_restore(args: argparse.Namespace) -> int:
    from appliance.ops.backup import restore_backup

    config, root, keys, data, store, principal = _open(args)
    try:
        result = restore_backup(data, principal, Path(args.source), keys, store)
        print(f"restored {', '.join(result.restored)}; kept deleted: {len(result.redeleted)} subjects")
        return 0
    finally:
        store.close()
        data.close()


def cmd_maintenance(args: argparse.Namespace) -> int:
    """Retention (every limit, recorded), the filing counter's alarm, then a backup, then
    pruning of old backups beyond ops.backup_keep."""
    import shutil

    from appliance.ops.backup import MANIFEST, create_backup

    from appliance.cli.site_commands import apply_site_retention

    config, root, keys, data, store, principal = _open(args)
    try:
        retention = apply_site_retention(data, principal, filing_alarm=True)
        folder = _backup_dir(config, root)
        create_backup(data, principal, folder / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), keys, store)
        backups = sorted(p for p in folder.iterdir() if (p / MANIFEST).exists())
        for old in backups[:-config.ops.backup_keep]:
            shutil.rmtree(old)
        print(json_text.dumps({**retention, "backups_kept": min(len(backups), config.ops.backup_keep)}))
        return 0
    finally:
        store.close()
        data.close()


# -- health and updates -------------------------------------------------------------------
def cmd_health(args: argparse.Namespace) -> int:
    from appliance.cli.site_commands import site_checks
    from appliance.ops.health import EXIT, report, run_health

    config = config_from(args)
    checks = run_health(config, args.service, paths.data_dir(), name=args.name)
    if args.service == "matcher":  # the central host: the site's data duties too
        checks += site_checks(config)
    result = report(checks)
    print(json_text.dumps(result, indent=2))
    return EXIT[result["status"]]


def cmd_update(args: argparse.Namespace) -> int:
    from appliance.ops.selftest import configured_images, finish_interrupted_updates, pack_selftest
    from appliance.ops.updates import apply_update, load_publisher_keys, updates_root

    config = config_from(args)
    if args.resume == bool(args.package):
        raise ApplianceError(ErrorCode.CONFIG_INVALID, "give either a PACKAGE or --resume")
    if args.resume:
        outcomes = finish_interrupted_updates(config)
        for label, failure in outcomes:
            print(f"{label}: self-test passed, active" if failure is None else str(failure))
        if not outcomes:
            print("no update to resume")
        failures = [failure for _, failure in outcomes if failure is not None]
        return failures[0].code.exit_status if failures else 0  # each failure printed above
    trusted = load_publisher_keys(Path(config.ops.publisher_keys_dir))
    release = apply_update(Path(args.package), updates_root(config), trusted,
                           pack_selftest(config, configured_images(config)))
    print(f"{release.label} installed, self-test passed, active")
    return 0

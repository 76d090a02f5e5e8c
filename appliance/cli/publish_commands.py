"""The publisher's commands for signed model-pack updates (docs/operations.md, Updates): make
a publisher key, sign a pack folder into a package for ``appliance update`` on the devices."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    publish = sub.add_parser("publish", help="sign model-pack updates for 'appliance update' (the publisher's side)")
    actions = publish.add_subparsers(dest="action", required=True)
    key = actions.add_parser("key", help="make a publisher key: NAME.key (keep it here, 0600) and NAME.pub (copy "
                                         "it into each device's ops.publisher_keys_dir)")
    key.add_argument("name", help="the key's name, e.g. the publisher's organisation")
    key.add_argument("--out", default=".", metavar="DIR", help="folder for the two files (default: here)")
    key.set_defaults(handler=cmd_publish_key)
    pack = actions.add_parser("pack", help="sign a pack folder (manifest.toml and its model file) into a package")
    pack.add_argument("folder", help="the pack folder: id and version come from its manifest.toml")
    pack.add_argument("--key", required=True, metavar="FILE", help="the publisher's private key (NAME.key)")
    pack.add_argument("--out", required=True, metavar="FILE", help="the package to write")
    pack.set_defaults(handler=cmd_publish_pack)


def cmd_publish_key(args: argparse.Namespace) -> int:
    from appliance.ops.publishing import new_publisher_key

    private, public = new_publisher_key(Path(args.out), args.name)
    print(f"{private}: the private key - keep it on this machine only")
    print(f"{public}: copy into ops.publisher_keys_dir (default /etc/appliance/publishers) on each device")
    return 0


def cmd_publish_pack(args: argparse.Namespace) -> int:
    from appliance.ops.publishing import build_pack_package, load_publisher_key

    release, pack = build_pack_package(Path(args.folder), Path(args.out), load_publisher_key(Path(args.key)))
    print(f"{args.out}: {release.label}, {len(release.files)} files signed")
    if not pack.commercial_use:
        print(f"note: {pack.label} is licensed '{pack.licence}' - not for commercial use (docs/models.md)")
    return 0

"""``appliance credential set|clear SUBJECT``: a person's card and PIN, the non-face alternative.

Acts as the account of the caller's session or token (``appliance.cli.auth``) with the ENROLL
permission; every change is audited (never the card number or the PIN). The PIN is read from
a file only the caller can read (``--pin-file``, one line of digits: never a command-line
argument, which other users see in the process list) and stored only as a salted scrypt hash
(``appliance.matching.credentials``). A change restamps the person's templates so that door
caches get the new card hash on their next sync (docs/door-modes.md).
"""
from __future__ import annotations

import argparse
import os
import stat
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from appliance import json_text
from appliance.errors import ApplianceError, ErrorCode

MAX_PIN_FILE_BYTES = 64
SHARED_BITS = stat.S_IRWXG | stat.S_IRWXO  # a PIN file readable by others is refused


def register(sub: argparse._SubParsersAction) -> None:
    credential = sub.add_parser("credential", help="set or clear a person's card and PIN (the non-face alternative)")
    actions = credential.add_subparsers(dest="credential_action", required=True)
    put = actions.add_parser("set", help="give a person a card number and/or a PIN")
    put.add_argument("subject", metavar="SUBJECT", help="the person's subject id")
    put.add_argument("--card", default="", metavar="N", help="card number (letters and digits)")
    put.add_argument("--pin-file", type=Path, metavar="F", help="file holding the PIN (4-12 digits; chmod 600)")
    put.add_argument("--json", action="store_true", help="print {subject, result, changed} as JSON")
    put.set_defaults(handler=cmd_set)
    clear = actions.add_parser("clear", help="take a person's card and/or PIN away (default: both)")
    clear.add_argument("subject", metavar="SUBJECT", help="the person's subject id")
    clear.add_argument("--card", action="store_true", help="clear the card only")
    clear.add_argument("--pin", action="store_true", help="clear the PIN only")
    clear.add_argument("--json", action="store_true", help="print {subject, result, changed} as JSON")
    clear.set_defaults(handler=cmd_clear)


def read_pin_file(path: Path) -> str:
    """The PIN in ``path``: the caller's own file, closed to others, one line of digits."""
    from appliance.matching.credentials import check_pin

    try:
        info = path.stat()
    except FileNotFoundError:
        raise ApplianceError(ErrorCode.FILE_NOT_FOUND, str(path)) from None
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_PIN_FILE_BYTES:
        raise ApplianceError(ErrorCode.MESSAGE_REJECTED, f"{path} is not a PIN file")
    if info.st_uid != os.getuid() or info.st_mode & SHARED_BITS:
        raise ApplianceError(ErrorCode.PERMISSION_DENIED, f"refusing {path}: it must be yours and closed to others "
                                                          "(chmod 600)")
    return check_pin(path.read_text(encoding="ascii", errors="replace").strip())


def cmd_set(args: argparse.Namespace) -> int:
    from appliance.matching.credentials import check_card, hash_pin

    if not args.card and args.pin_file is None:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, "give --card N and/or --pin-file F")
    card = check_card(args.card) if args.card else ""
    pin_hash = hash_pin(read_pin_file(args.pin_file)) if args.pin_file is not None else ""
    changed = []
    with _session(args) as (data, principal):
        if card:
            data.identity.set_card(principal, args.subject, card)
            changed.append("card")
        if pin_hash:
            data.identity.set_pin_hash(principal, args.subject, pin_hash)
            changed.append("pin")
        _record(data, principal, args.subject, changed, "set")
    _print(args, args.subject, "set", changed)
    return 0


def cmd_clear(args: argparse.Namespace) -> int:
    both = not (args.card or args.pin)
    changed = []
    with _session(args) as (data, principal):
        if args.card or both:
            data.identity.set_card(principal, args.subject, "")
            changed.append("card")
        if args.pin or both:
            data.identity.set_pin_hash(principal, args.subject, "")
            changed.append("pin")
        _record(data, principal, args.subject, changed, "cleared")
    _print(args, args.subject, "cleared", changed)
    return 0


@contextmanager
def _session(args: argparse.Namespace) -> Iterator[tuple[Any, Any]]:
    """The protected data of the configured site and the acting principal (ENROLL checked)."""
    from appliance.cli.auth import acting_principal
    from appliance.cli.common import config_from, protected_data
    from appliance.security.roles import Permission, require

    with protected_data(config_from(args)) as data:
        principal = acting_principal(args, data)
        require(principal, Permission.ENROLL)
        yield data, principal


def _record(data, principal, subject: str, changed: list[str], result: str) -> None:
    """Audit the change and restamp the person's templates (caches learn the new card claim or PIN verifier)."""
    data.audit.append(principal, "person.credential", subject, result, ", ".join(changed))
    if changed:
        from appliance.matcher.eligibility import restamp_credentials

        restamp_credentials(data, principal, subject)


def _print(args: argparse.Namespace, subject: str, result: str, changed: list[str]) -> None:
    if args.json:
        sys.stdout.write(json_text.dumps({"subject": subject, "result": result, "changed": changed}) + "\n")
    else:
        print(f"{subject}: {' and '.join(changed)} {result}")

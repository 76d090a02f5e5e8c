"""Protected-data commands: keys, store checks, subjects, retention, audit; the envelope benchmark.

Every command on personal data or keys acts as the appliance account whose session or API
token the caller gives (``appliance.cli.auth``); there is no option to claim a role, and the
OS user's name plays no part. ``keys init`` and ``keys list`` need no account: they read or
create key files only (no personal data, nothing a role governs), and the key folder's
owner-only permissions are what guards them - the first ``keys init`` also runs before any
account can exist. Output is masked; keys are never printed (only names and fingerprints).
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from appliance import json_text, paths
from appliance.cli.arg_types import non_negative_int, positive_int
from appliance.cli.auth import acting_principal
from appliance.cli.common import config_from, protected_data, write_json
from appliance.config import Config
from appliance.errors import ApplianceError, ErrorCode
from appliance.security import keys as keynames
from appliance.security.keys import ALL_KEYS, ensure_keys, generate_key
from appliance.security.roles import Permission, Principal, require

if TYPE_CHECKING:  # the stores load when a command runs, not for every 'appliance'
    from appliance.stores.protected import ProtectedData

NEGATIVE = 1  # exit status when a check finds problems
EXPORT_FILE_MODE = 0o600  # a subject export holds personal data
TEMPLATE_WRAP = "template-wrap"  # the key that wraps the templates' data keys (no store of its own)
# a store's key by the store's name (its file's, ProtectedData.stores), and the template wrap key
CLAIM = "claim"  # the site's claim key, in the key vault (stores.claims)
ROTATABLE = ("audit", "biometric", "identity", "keyvault", TEMPLATE_WRAP, CLAIM)


def register(sub: argparse._SubParsersAction) -> None:
    keys = sub.add_parser("keys", help="create or rotate the store and node keys (never printed)")
    keys.add_argument("action", choices=("init", "list", "rotate"),
                      help="init: create the missing keys; list: each key's fingerprint, or MISSING; rotate NAME: "
                           "a new key, its store re-encrypted (template-wrap: the data keys re-wrapped; claim: the "
                           "site's card claim key, each door then syncs its cache again)")
    keys.add_argument("name", nargs="?", choices=sorted(ROTATABLE), help="what to rotate")
    keys.set_defaults(handler=cmd_keys)

    # backups are 'appliance backup' / 'appliance restore' (signed, verified, deletions kept)
    store = sub.add_parser("store", help="check the encrypted stores (integrity, cipher check)")
    store.add_argument("action", choices=("check",),
                       help="check: integrity and cipher check of every store (exit 1 on a problem)")
    store.set_defaults(handler=cmd_store)

    subject = sub.add_parser("subject", help="list people (masked), delete a subject, record withdrawal, "
                                             "deletions not yet confirmed by every device (exit 1 if any), "
                                             "export what is held about a person (access request, signed receipt)")
    subject.add_argument("action", choices=("list", "delete", "withdraw", "unconfirmed", "export"),
                         help="list: every person, masked; delete ID: erase them, print the receipt; withdraw ID: "
                              "record the consent withdrawal, then erase them; unconfirmed: deletions a device has "
                              "not confirmed; export ID: what is held about them")
    subject.add_argument("subject_id", nargs="?", help="the person's subject id (delete, withdraw, export)")
    subject.add_argument("--out", help="export: write the export and its receipt here (mode 0600; default: print)")
    subject.add_argument("--unmasked", action="store_true",
                         help="export: names and numbers unmasked (security administrator only; audited)")
    subject.set_defaults(handler=cmd_subject)

    retention = sub.add_parser("retention", help="run: apply every retention limit (templates, door events, audit "
                                                 "log, deletion receipts), recorded in the audit log; status: the "
                                                 "limits, the last run and the oldest records")
    retention.add_argument("action", choices=("run", "status"),
                           help="run: apply every limit, recorded in the audit log; status: the limits, the last "
                                "run and the oldest records")
    retention.set_defaults(handler=cmd_retention)

    audit = sub.add_parser("audit", help="verify, export (masked) or checkpoint the operation log; reanchor its "
                                         "signed head after a loss or an upgrade (on record)")
    audit.add_argument("action", choices=("verify", "export", "checkpoint", "reanchor"),
                       help="verify: the chain, the signed checkpoints and head, the doors' signatures; export: the "
                            "entries, masked, as JSON; checkpoint: sign one now; reanchor: sign a new head after "
                            "a loss or an upgrade")
    audit.add_argument("--since", help="export entries from this date (YYYY-MM-DD, UTC)")
    audit.add_argument("--out", help="export file (default: print)")
    audit.add_argument("--stopped", action="store_true",
                       help="verify: the site's services are stopped, so do not require a freshly signed head")
    audit.set_defaults(handler=cmd_audit)

    from appliance.cli.bench_commands import bench_group

    envelope = bench_group(sub)("envelope", help="envelope seal/open throughput beside AES-GCM and the crypto floor")
    envelope.add_argument("--out", default=None, help="default: reports/bench/envelope.md (envelope-sm.md)")
    envelope.add_argument("--payload", type=non_negative_int, default=2048, help="payload bytes (default %(default)s)")
    envelope.add_argument("--messages", type=positive_int, default=None,
                          help="messages per run (default 400; 40 with sm)")
    envelope.add_argument("--suite", choices=("default", "sm"), default="default",
                          help="sm: the SM suite measured beside the default suite in the same run")
    envelope.add_argument("--repeats", type=positive_int, default=5,
                          help="runs, interleaved with the peer's; the report gives their median (default %(default)s)")
    envelope.add_argument("--cipher", choices=("aes-gcm", "chacha20"), default="aes-gcm",
                          help="the envelope's AEAD: AES-256-GCM or ChaCha20-Poly1305; not used with --suite sm "
                               "(default %(default)s)")
    envelope.set_defaults(handler=cmd_envelope)


def _open(args: argparse.Namespace) -> tuple[Config, Principal, ProtectedData]:
    """The configuration, the account running the command, and the protected data."""
    config = config_from(args)
    data = protected_data(config)
    try:
        return config, acting_principal(args, data), data
    except BaseException:
        data.close()
        raise


def cmd_keys(args: argparse.Namespace) -> int:
    from appliance.stores.protected import key_provider

    config = config_from(args)
    provider = key_provider(config.security, paths.data_dir())
    if args.action == "init":
        created = ensure_keys(provider)
        print(f"created {len(created)} keys: {', '.join(created) or 'none (all present)'}")
        return 0
    if args.action == "list":
        for name in ALL_KEYS:
            state = f"fingerprint {provider.get(name).fingerprint}" if provider.exists(name) else "MISSING"
            print(f"{name:16} {state}")
        return 0
    if not args.name:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"keys rotate needs one of {', '.join(ROTATABLE)}")
    with protected_data(config) as data:
        principal = acting_principal(args, data)
        require(principal, Permission.ROTATE_KEYS)
        if args.name == TEMPLATE_WRAP:
            new_key = generate_key(keynames.TEMPLATE_WRAP)
            provider.stage(new_key)
            count = data.vault.rewrap(new_key)
            provider.commit(keynames.TEMPLATE_WRAP)
            detail, fingerprint = f"{count} data keys re-wrapped", new_key.fingerprint
        elif args.name == CLAIM:
            from appliance.stores.claims import rotate_site_claim_key

            fingerprint = rotate_site_claim_key(data.vault, data.biometric)
            detail = "each door is told now, empties its cache and syncs it again"
        else:
            by_name = {Path(file).stem: store for file, store in data.stores.items()}  # biometric.db: biometric
            fingerprint = by_name[args.name].rekey(provider).fingerprint
            detail = "store re-encrypted"
        data.audit.append(principal, "keys.rotate", args.name, "ok", detail)
    print(f"rotated {args.name}: {detail}; new fingerprint {fingerprint}")
    return 0


def cmd_store(args: argparse.Namespace) -> int:
    _, principal, data = _open(args)
    with data:
        if args.action == "check":
            problems = data.check(principal)
            for name, found in problems.items():
                print(f"{name:14} {'ok' if not found else f'{len(found)} problems: {found[0]}'}")
            return NEGATIVE if any(problems.values()) else 0
    return 0


def cmd_subject(args: argparse.Namespace) -> int:
    from appliance.stores.deletion import SubjectAlreadyDeleted

    _, principal, data = _open(args)
    with data:
        if args.action == "list":
            for person in data.people(principal):
                print(json_text.dumps(person, ensure_ascii=False))
            return 0
        if args.action == "unconfirmed":
            return _unconfirmed_deletions(args, principal, data)
        if not args.subject_id:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"subject {args.action} needs a subject id")
        if args.action == "export":
            return _export_subject(args, principal, data)
        try:
            if args.action == "delete":
                receipt = data.delete_subject(principal, args.subject_id)
            else:
                receipt = data.withdraw_consent(principal, args.subject_id)
        except SubjectAlreadyDeleted as exc:
            _print_first_receipt(data, exc.receipt_id)
            raise
    print(receipt.to_json())
    return 0


def _print_first_receipt(data: ProtectedData, receipt_id: str) -> None:
    """Deleting again: stdout carries the first deletion's receipt (the proof a script keeps,
    as on the first run), stderr the E222 line, and the exit status is 27 - so a script can
    tell "deleted earlier" from "deleted now" (0) and from "no such subject" (22)."""
    from appliance.stores.deletion import load_receipt
    from appliance.stores.protected import RECEIPTS_DIR

    path = data.root / RECEIPTS_DIR / f"{receipt_id}.json"
    if receipt_id and path.exists():
        print(load_receipt(path).to_json())


def _export_subject(args: argparse.Namespace, principal: Principal, data: ProtectedData) -> int:
    """A subject access request: the person's data (masked unless ``--unmasked``) and the
    signed receipt (``appliance.matcher.subject_access``), as JSON; a file is owner-only."""
    from appliance.broker.pki import ProjectPKI
    from appliance.matcher.subject_access import export_subject, site_doors
    from appliance.matcher.sync_store import open_sync_store
    from appliance.stores.protected import key_provider

    config = config_from(args)
    store = open_sync_store(data, key_provider(config.security, paths.data_dir()))
    try:
        result = export_subject(principal, args.subject_id, data, store,
                                site_doors(ProjectPKI(paths.data_dir() / "pki")), unmasked=args.unmasked)
    finally:
        store.close()
    text = json_text.dumps(result.as_dict(), indent=2, ensure_ascii=False) + "\n"
    if not args.out:
        print(text, end="")
        return 0
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, EXPORT_FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    print(f"exported {args.subject_id} to {out}; access receipt {result.receipt.receipt_id}")
    return 0


def _unconfirmed_deletions(args: argparse.Namespace, principal: Principal, data: ProtectedData) -> int:
    """Deletions that some active device has not confirmed (the tombstone is not yet applied
    everywhere): pseudonyms, revisions and the missing devices, never personal data."""
    from appliance.broker.pki import ProjectPKI
    from appliance.matcher.deletions import DeletionConfirmations
    from appliance.matcher.sync_store import open_sync_store
    from appliance.security.roles import Permission, require
    from appliance.stores.protected import key_provider

    require(principal, Permission.DELETE_SUBJECT)
    config = config_from(args)
    devices = sorted(name for name, identity in ProjectPKI(paths.data_dir() / "pki").identities().items()
                     if identity.role == "device" and not identity.revoked)
    store = open_sync_store(data, key_provider(config.security, paths.data_dir()))
    try:
        pending = DeletionConfirmations(data, store).unconfirmed(devices)
    finally:
        store.close()
    for entry in pending:
        print(json_text.dumps(entry))
    print(f"{len(pending)} deletion(s) not confirmed by every one of {len(devices)} device(s)")
    return 1 if pending else 0


def cmd_retention(args: argparse.Namespace) -> int:
    """``run`` applies the limits (``appliance.cli.site_commands.apply_site_retention``, the
    same step the nightly maintenance takes); ``status`` reads them without changing anything."""
    from appliance.cli.site_commands import apply_site_retention
    from appliance.matcher.site_policy import open_site_store
    from appliance.ops.retention import retention_status

    config, principal, data = _open(args)
    with data:
        if args.action == "run":
            print(json_text.dumps(apply_site_retention(data, principal)))
            return 0
        require(principal, Permission.VERIFY_AUDIT)
        store = open_site_store(data)
        try:
            status = retention_status(data, store, store)
        finally:
            store.close()
    print(json_text.dumps(status.as_dict(), indent=2))
    return 0


def _verify_audit(data: ProtectedData, principal: Principal, max_head_age_s: float | None) -> int:
    """A running site's head is re-signed well within ``audit_head_max_age_s``: an older one
    means a rolled-back log (or nothing anchoring it), unless the operator says it is stopped."""
    verdict = data.audit.verify(principal, max_head_age_s=max_head_age_s)
    if verdict.ok:
        problems, proven = _door_signatures(data)
        if problems:  # the chain holds, yet a door's decision is not what the door signed
            raise ApplianceError(ErrorCode.AUDIT_TAMPERED, f"first bad entry {problems[0][0]}: {problems[0][1]}")
        age = "" if verdict.head_time is None else f", signed {max(0.0, time.time() - verdict.head_time):.0f} s ago"
        print(f"audit log ok: {verdict.entries} entries; chain, signed checkpoints and signed head intact{age}; "
              f"{proven} door decisions signed by their doors")
        return 0
    where = "" if verdict.first_bad is None else f"first bad entry {verdict.first_bad}: "
    raise ApplianceError(ErrorCode.AUDIT_TAMPERED, where + verdict.reason)


def _door_signatures(data: ProtectedData) -> tuple[list[tuple[int, str]], int]:
    """Door decisions whose kept signature does not verify with the door's key from the site's
    node directory (``stores.audit_devices``): they hold even against the node's own key."""
    from appliance.ops.bundle import DIRECTORY_FILE
    from appliance.protocol.directory import NodeDirectory
    from appliance.stores.audit_devices import signature_problems

    path = data.root / DIRECTORY_FILE
    peers = NodeDirectory.load(path).peers if path.exists() else {}
    return signature_problems(data.audit.entries(), lambda device: getattr(peers.get(device), "signing", None))


def cmd_audit(args: argparse.Namespace) -> int:
    config, principal, data = _open(args)
    with data:
        if args.action == "verify":
            return _verify_audit(data, principal, None if args.stopped else config.security.audit_head_max_age_s)
        if args.action == "reanchor":
            entry = data.audit.reanchor(principal)
            print(f"signed a new head at entry {entry.seq}; that entry records what the old head said: {entry.detail}")
            return 0
        if args.action == "checkpoint":
            require(principal, Permission.RUN_RETENTION)
            seq = data.audit.checkpoint()
            print(f"signed checkpoint at entry {seq}" if seq else "audit log empty: nothing to sign")
            return 0
        since = None
        if args.since:
            try:
                since = dt.datetime.fromisoformat(args.since).replace(tzinfo=dt.timezone.utc).timestamp()
            except ValueError:
                raise ApplianceError(ErrorCode.CONFIG_INVALID, f"--since {args.since!r}: use YYYY-MM-DD") from None
        write_json(data.audit.export(principal, since), args.out)
    return 0


def cmd_envelope(args: argparse.Namespace) -> int:
    from appliance.security.bench import DEFAULT_MESSAGES, markdown_report, run_envelope_bench
    from appliance.security.envelope import Aead

    if args.suite == "sm":
        return _suite_bench(args)
    aead = Aead.AES_256_GCM if args.cipher == "aes-gcm" else Aead.CHACHA20_POLY1305
    result = run_envelope_bench(args.payload, args.messages or DEFAULT_MESSAGES, args.repeats, aead)
    out = Path(args.out or paths.reports_dir() / "bench" / "envelope.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(markdown_report(result), encoding="utf-8")
    print(f"seal {result.seal_median:,.0f}/s, open {result.open_median:,.0f}/s, "
          f"peer AES-GCM {result.peer_median:,.0f}/s -> {out}")
    return 0


def _suite_bench(args: argparse.Namespace) -> int:
    """``appliance bench envelope --suite sm``: both suites in one run (``appliance.security.bench``)."""
    from appliance.security import sm
    from appliance.security.bench import SUITE_MESSAGES, run_suite_bench, suite_markdown_report
    from appliance.security.suites import Suite

    sm.library()  # DEPENDENCY_MISSING naming the extra
    result = run_suite_bench(args.payload, args.messages or SUITE_MESSAGES, args.repeats)
    out = Path(args.out or paths.reports_dir() / "bench" / "envelope-sm.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(suite_markdown_report(result), encoding="utf-8")
    print(", ".join(f"{what} {suite.label} {result.median(rates, suite):,.1f}/s" for what, rates in
                    (("seal", result.seals_per_s), ("open", result.opens_per_s)) for suite in Suite)
          + f"; load {result.load_average:.2f} -> {out}")
    return 0

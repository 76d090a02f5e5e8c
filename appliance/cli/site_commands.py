"""Site duties: the matching-mode decision and the filing counter (``appliance site ...``).

``appliance site matching justify --reason TEXT [--basis TEXT]`` records why this site may
match centrally (a security administrator; who and when come from the account and the clock),
``show`` prints the decision (any account), ``revoke`` withdraws it: the doors go back to
deciding locally. ``appliance site filing`` prints the count of enrolled people against the
filing thresholds (exit 1 from 80,000, 2 from 100,000). Every ``appliance site`` duty warns
(stderr) when the site has doors but no access group: then everyone enrolled opens every door
(docs/access.md). The health report's site checks (:func:`site_checks`, the access one
included) come from here too: they need the matcher's stores, which ``appliance.ops`` may not
import.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from appliance import json_text, paths
from appliance.cli.auth import acting_principal
from appliance.cli.common import config_from, protected_data
from appliance.config import Config
from appliance.errors import ApplianceError
from appliance.security.roles import Permission, Principal, require

if TYPE_CHECKING:  # the stores and health checks load when a duty runs, not for every 'appliance'
    from appliance.ops.health import Check
    from appliance.stores.protected import ProtectedData

FILING_EXIT = {"ok": 0, "warn": 1, "file": 2}  # the health convention: warn 1, fail 2
PKI_DIR = "pki"  # the site's PKI under the data folder: its device identities are the doors
NO_ACCESS_GROUP = ("the site has {doors} door(s) but no access group: everyone enrolled opens every door; define "
                   "groups with 'appliance access group create', 'grant' and 'member add' (docs/access.md)")


def register(sub: argparse._SubParsersAction) -> None:
    site = sub.add_parser("site", help="site duties: the matching-mode decision, the filing counter")
    duties = site.add_subparsers(dest="duty", required=True, metavar="DUTY")
    matching = duties.add_parser("matching", help="central matching needs a recorded justification (who, when, "
                                                  "why); without one the doors decide locally")
    matching.add_argument("action", choices=("show", "justify", "revoke"),
                          help="show: the recorded decision; justify: record why central matching is needed "
                               "(--reason, --basis); revoke: withdraw it, the doors decide locally")
    matching.add_argument("--mode", choices=("central",), default="central",
                          help="the mode justified (central: templates are searched by the matcher) "
                               "(default %(default)s)")
    matching.add_argument("--reason", default="", help="why central matching is necessary on this site")
    matching.add_argument("--basis", default="",
                          help="the law or regulation article, or the separate-consent form, it rests on")
    matching.set_defaults(handler=_warning_first(cmd_matching))
    filing = duties.add_parser("filing", help="unique enrolled people against the filing thresholds "
                                              "(exit 1 from 80,000, 2 from 100,000)")
    filing.set_defaults(handler=_warning_first(cmd_filing))
    use = duties.add_parser("use", help="the declared use (commercial | research) and the embedder licence it "
                                        "allows (exit 1: undeclared; a refused pack: its error's status)")
    use.set_defaults(handler=_warning_first(cmd_use))


def _warning_first(handler):
    """``handler`` after the access-group warning on stderr (when the central stores are here)."""
    def run(args: argparse.Namespace) -> int:
        from appliance.ops.health import OK
        from appliance.stores.protected import BIOMETRIC_FILE

        root = paths.data_dir()
        if (root / BIOMETRIC_FILE).exists():
            try:
                with protected_data(config_from(args), root) as data:
                    check = access_check(data, root)
                if check.status != OK:
                    print(f"warning: {check.detail}", file=sys.stderr)
            except ApplianceError:
                pass  # the duty itself reports stores it cannot open
        return handler(args)
    return run


def access_check(data: ProtectedData, root: Path) -> Check:
    """WARN when the site has doors (device identities in its PKI) but no access group."""
    from appliance.broker.pki import ProjectPKI
    from appliance.matcher.site_policy import open_site_store
    from appliance.matcher.subject_access import site_doors
    from appliance.ops.health import OK, WARN, Check

    doors = site_doors(ProjectPKI(root / PKI_DIR)) if (root / PKI_DIR).exists() else {}
    store = open_site_store(data)
    try:
        enforced = store.access_enforced()
    finally:
        store.close()
    if doors and not enforced:
        return Check("access", WARN, NO_ACCESS_GROUP.format(doors=len(doors)))
    return Check("access", OK, f"{len(doors)} door(s); access groups {'defined' if enforced else 'none'}")


def cmd_matching(args: argparse.Namespace) -> int:
    from appliance.matcher.site_policy import justify, matching_decision, open_site_store, revoke

    config = config_from(args)
    with protected_data(config) as data:
        principal = acting_principal(args, data)
        store = open_site_store(data)
        try:
            if args.action == "justify":
                decision = justify(data, store, principal, args.reason, args.basis)
            elif args.action == "revoke":
                before = revoke(data, store, principal)
                print(json_text.dumps({"revoked": before.as_dict() if before else None,
                                  "effect": "doors decide locally; no template leaves them"}, ensure_ascii=False))
                return 0
            else:
                require(principal, Permission.READ_EVENTS)
                decision = matching_decision(store)
        finally:
            store.close()
    print(json_text.dumps({"configured_mode": config.offline.mode,
                      "decision": decision.as_dict() if decision else None,
                      "effective": config.offline.mode if decision else "local"}, ensure_ascii=False))
    return 0


def cmd_filing(args: argparse.Namespace) -> int:
    from appliance.ops.filing import filing_status

    with protected_data(config_from(args)) as data:
        require(acting_principal(args, data), Permission.READ_EVENTS)
        status = filing_status(data)
    print(json_text.dumps({**status.as_dict(), "detail": status.detail}, ensure_ascii=False))
    return FILING_EXIT[status.level]


def cmd_use(args: argparse.Namespace) -> int:
    """``[site] use`` against the configured embedder's licence (docs/models.md)."""
    from appliance.errors import ErrorCode
    from appliance.packs.defaults import licence_status

    config = config_from(args)
    status = licence_status(config.site.use, config.models.embedder, config.models.search_path)
    print(json_text.dumps(status, ensure_ascii=False))
    return {"ok": 0, "undeclared": 1}.get(status["status"], ErrorCode.LICENCE_REFUSED.exit_status)


def site_checks(config: Config, root: Path | None = None, now: float | None = None) -> list[Check]:
    """The data duties of the central host for ``appliance health --service matcher``: the
    matching-mode decision, the filing counter, retention. None on a host without the central
    stores; one failed check when they are there but cannot be opened."""
    from appliance.matcher.site_policy import matching_decision, open_site_store
    from appliance.ops.filing import filing_status
    from appliance.ops.health import FAIL, Check, check_filing, check_matching_mode, check_retention
    from appliance.ops.retention import retention_status
    from appliance.stores.protected import BIOMETRIC_FILE

    root = root or paths.data_dir()
    if not (root / BIOMETRIC_FILE).exists():
        return []
    now = time.time() if now is None else now
    try:
        with protected_data(config, root) as data:
            store = open_site_store(data)
            try:
                decision = matching_decision(store)
                retention = retention_status(data, store, store, now)
                filing = filing_status(data)
            finally:
                store.close()
            access = access_check(data, root)
    except ApplianceError as exc:
        return [Check("site", FAIL, f"central stores in {root} unreadable: {exc}")]
    return [check_matching_mode(config.offline.mode, decision.account if decision else "",
                                decision.decided_at if decision else 0.0),
            check_filing(filing), check_retention(retention, now), access]



def apply_site_retention(data: ProtectedData, principal: Principal, filing_alarm: bool = False) -> dict:
    """Every retention limit on this host (the central stores, the matcher's door log, a door
    outbox found in the data folder), the run recorded for the health check and the report;
    with ``filing_alarm`` (the nightly maintenance) also the filing counter's audit alarm.
    Returns what was removed, by kind, and the filing status."""
    from appliance.matcher.site_policy import open_site_store
    from appliance.ops.filing import filing_status, raise_filing_alarm
    from appliance.ops.retention import apply_retention
    from appliance.security.keys import OUTBOX_DB
    from appliance.stores.device import Outbox
    from appliance.stores.protected import OUTBOX_FILE

    keys = data.keys
    outbox_path = data.root / OUTBOX_FILE
    outbox = Outbox.open(outbox_path, keys) if outbox_path.exists() and keys.exists(OUTBOX_DB) else None
    store = open_site_store(data)
    try:
        run = apply_retention(data, principal, state=store, door_log=store, outbox=outbox)
        result: dict = dict(run.counts)
        if filing_alarm:
            status = filing_status(data)
            result["filing"] = {**status.as_dict(), "alarmed": raise_filing_alarm(data, principal, store, status)}
        return result
    finally:
        store.close()
        if outbox is not None:
            outbox.close()

"""Access rules from the command line (``appliance access ...``, docs/access.md).

``show`` prints the rules (any account that reads the door log) and says loudly when the site
has no access group (then everyone enrolled opens every door). The rest change them, as a
security or system administrator (``Permission.MANAGE_DEVICES``), each change audited and sent
to the doors without a re-enrollment: ``group create|delete``, ``grant``, ``member add|remove``,
``schedule``, ``holiday add|remove``, ``validity``, ``area``. Schedules are JSON, e.g.
``'{"mon": ["08:00-18:00"], "sat": ["22:00-06:00"], "holidays": "closed"}'``, in the site's
zone (``[access] timezone``); validity times without a zone are read in it too.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

from appliance import json_text
from appliance.cli.arg_types import non_negative_float
from appliance.cli.auth import acting_principal
from appliance.cli.common import config_from, protected_data
from appliance.errors import ApplianceError, ErrorCode

NOT_ENFORCED = ("WARNING: no access group is defined on this site: every enrolled person opens EVERY door at "
                "any time. Create groups ('appliance access group create') to restrict doors; from then on a person "
                "in no group opens no door.")


def register(sub: argparse._SubParsersAction) -> None:
    access = sub.add_parser("access", help="access rules: groups granting doors on a schedule, holidays, validity, "
                                           "anti-passback (docs/access.md)")
    verbs = access.add_subparsers(dest="verb", required=True, metavar="VERB")
    verbs.add_parser("show", help="the site's access rules").set_defaults(handler=cmd_show)
    group = verbs.add_parser("group", help="create, replace the schedule of, or delete an access group")
    group.add_argument("action", choices=("create", "delete"),
                       help="create: a new group, or set an existing one's schedule; delete: the group and its "
                            "memberships")
    group.add_argument("name", help="the group's name (letters, digits, '.', '_', '-')")
    group.add_argument("--schedule", default="", help="weekly schedule, JSON or @file (default: always open)")
    group.set_defaults(handler=cmd_group)
    grant = verbs.add_parser("grant", help="the doors (device names) a group opens")
    grant.add_argument("group", help="the access group")
    grant.add_argument("doors", nargs="+", help="the doors' device names")
    grant.add_argument("--revoke", action="store_true", help="take the doors away instead")
    grant.set_defaults(handler=cmd_grant)
    member = verbs.add_parser("member", help="add a person (subject id) to a group or remove them")
    member.add_argument("action", choices=("add", "remove"),
                        help="add: put an enrolled person in the group; remove: take them out")
    member.add_argument("group", help="the access group")
    member.add_argument("subject", help="the person's subject id")
    member.set_defaults(handler=cmd_member)
    schedule = verbs.add_parser("schedule", help="set a group's weekly schedule")
    schedule.add_argument("group", help="the access group (an existing one)")
    schedule.add_argument("schedule", help="JSON or @file")
    schedule.set_defaults(handler=cmd_schedule)
    holiday = verbs.add_parser("holiday", help="a date (YYYY-MM-DD, the site's calendar) schedules treat as a holiday")
    holiday.add_argument("action", choices=("add", "remove"),
                         help="add: make the day a holiday; remove: make it an ordinary day again")
    holiday.add_argument("day", help="the date, YYYY-MM-DD")
    holiday.add_argument("--name", default="", help="the holiday's name, e.g. New Year (shown by 'access show')")
    holiday.set_defaults(handler=cmd_holiday)
    validity = verbs.add_parser("validity", help="when a person's access starts and ends (visitors)")
    validity.add_argument("subject", help="the person's subject id")
    validity.add_argument("--from", dest="valid_from", default="", help="ISO time; without a zone: the site's")
    validity.add_argument("--until", default="", help="ISO time; without a zone: the site's")
    validity.set_defaults(handler=cmd_validity)
    area = verbs.add_parser("area", help="an area's entry and exit doors and its anti-passback mode")
    area.add_argument("name", help="the area's name (letters, digits, '.', '_', '-')")
    area.add_argument("--mode", choices=("hard", "soft", "off"), default=None,
                      help="hard: refuse a second entry; soft: let it through, on record (default: [access])")
    area.add_argument("--reset-s", type=non_negative_float, default=None,
                      help="presence forgotten after, seconds (0: never)")
    area.add_argument("--entry", nargs="*", default=[], help="entry doors")
    area.add_argument("--exit", nargs="*", default=[], help="exit doors")
    area.set_defaults(handler=cmd_area)


def _schedule(text: str) -> dict | None:
    if not text:
        return None
    source = Path(text[1:]).read_text(encoding="utf-8") if text.startswith("@") else text
    try:
        spec = json.loads(source)
    except json.JSONDecodeError as exc:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"schedule is not JSON: {exc}") from None
    if not isinstance(spec, dict):
        raise ApplianceError(ErrorCode.CONFIG_INVALID, 'schedule must be an object like {"mon": ["08:00-18:00"]}')
    return spec


def _admin(args: argparse.Namespace, change) -> int:
    """Run ``change(admin)`` as the acting principal and print what it returned."""
    from appliance.matcher.access_admin import AccessAdmin
    from appliance.matcher.site_policy import open_site_store

    with protected_data(config_from(args)) as data:
        principal = acting_principal(args, data)
        store = open_site_store(data)
        try:
            result = change(AccessAdmin(data, store, principal))
        finally:
            store.close()
    print(json_text.dumps({"ok": True, "result": result}, ensure_ascii=False))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from appliance.matcher.access_admin import rules_view
    from appliance.matcher.site_policy import open_site_store
    from appliance.security.roles import Permission, require

    config = config_from(args)
    with protected_data(config) as data:
        require(acting_principal(args, data), Permission.READ_EVENTS)
        store = open_site_store(data)
        try:
            view = rules_view(store, config.access.timezone)
        finally:
            store.close()
    if not view["enforced"]:
        print(NOT_ENFORCED, file=sys.stderr)
    print(json_text.dumps(view, ensure_ascii=False))
    return 0


def cmd_group(args: argparse.Namespace) -> int:
    if args.action == "delete":
        return _admin(args, lambda admin: {"members_removed": len(admin.delete_group(args.name))})
    return _admin(args, lambda admin: {"created": admin.put_group(args.name, _schedule(args.schedule))})


def cmd_grant(args: argparse.Namespace) -> int:
    return _admin(args, lambda admin: admin.grant_doors(args.group, args.doors, granted=not args.revoke))


def cmd_member(args: argparse.Namespace) -> int:
    return _admin(args, lambda admin: {"changed": admin.set_member(args.group, args.subject, args.action == "add")})


def cmd_schedule(args: argparse.Namespace) -> int:
    spec = _schedule(args.schedule)
    return _admin(args, lambda admin: {"created": admin.put_group(args.group, spec, must_exist=True)})


def cmd_holiday(args: argparse.Namespace) -> int:
    return _admin(args, lambda admin: {"changed": admin.set_holiday(args.day, args.name, args.action == "add")})


def _instant(text: str, tz: str) -> float | None:
    from appliance.access.schedule import zone

    if not text:
        return None
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"{text!r} is not an ISO time (2026-12-24T18:00)") from None
    return (at if at.tzinfo else at.replace(tzinfo=zone(tz))).timestamp()


def cmd_validity(args: argparse.Namespace) -> int:
    tz = config_from(args).access.timezone
    start, end = _instant(args.valid_from, tz), _instant(args.until, tz)
    return _admin(args, lambda admin: admin.set_validity(args.subject, start, end))


def cmd_area(args: argparse.Namespace) -> int:
    defaults = config_from(args).access
    mode = args.mode or defaults.passback_mode
    reset = defaults.passback_reset_s if args.reset_s is None else args.reset_s
    return _admin(args, lambda admin: admin.set_area(args.name, mode, reset, args.entry, args.exit))

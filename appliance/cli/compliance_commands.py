"""``appliance compliance report --out DIR``: the auditor's self-check report of this site.

Runs as the account of the caller's session or token (an auditor or a security administrator,
``appliance.compliance.report.require_reporter``) on the data folder's stores. Writes
``report.json``, ``report.html`` and, where Chromium is installed, ``report.pdf``; prints the
summary. Exit status 0 when every applicable row is met, 1 when some row is not met or needs a
document (the report is written either way), other values for errors.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from appliance.cli.common import config_from, protected_data

NEGATIVE = 1  # some requirement is not met or needs a document


def register(sub: argparse._SubParsersAction) -> None:
    compliance = sub.add_parser("compliance", help="the auditor's self-check report (HTML, PDF, JSON), masked; "
                                                   "exit 1 when a requirement is not met")
    compliance.add_argument("action", choices=("report",),
                            help="report: write the report into --out and print its summary")
    compliance.add_argument("--out", required=True, help="folder for report.html, report.pdf and report.json")
    compliance.add_argument("--evidence", action="append", default=[], metavar="DIR",
                            help="another folder with evaluation, PAD and benchmark reports and tests/junit.xml "
                                 "(besides reports/ of the checkout and of the data folder); repeatable")
    compliance.add_argument("--requirements", help="requirement list (default: config/compliance/requirements.toml)")
    compliance.add_argument("--chromium", help="Chromium to print the PDF with (default: chromium on PATH)")
    compliance.add_argument("--stopped", action="store_true",
                            help="the site's services are stopped: do not require a freshly signed audit head")
    compliance.set_defaults(handler=cmd_compliance)


def cmd_compliance(args: argparse.Namespace) -> int:
    # the report's modules load when it runs, not for every 'appliance' command
    from appliance.cli.auth import acting_principal
    from appliance.compliance import records
    from appliance.compliance.report import write_report
    from appliance.compliance.requirements import NEEDS_DOCUMENT, NOT_MET

    config = config_from(args)
    data = protected_data(config)
    with data:
        principal = acting_principal(args, data)
        folders = records.evidence_folders(data.root, [Path(p) for p in args.evidence])
        written = write_report(config, data, principal, Path(args.out), folders, args.chromium,
                               Path(args.requirements) if args.requirements else None,
                               None if args.stopped else config.security.audit_head_max_age_s)
    summary = written.summary
    print(f"{summary['total']} requirements: {summary['met']} met, {summary[NOT_MET]} not met, "
          f"{summary[NEEDS_DOCUMENT]} need a document, {summary['not applicable']} not applicable")
    for path in (written.html, written.pdf, written.json):
        if path is not None:
            print(f"  {path}")
    if written.pdf is None:
        print(f"no PDF: {written.pdf_problem}")
    return NEGATIVE if summary[NOT_MET] or summary[NEEDS_DOCUMENT] else 0

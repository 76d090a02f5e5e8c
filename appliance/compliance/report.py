"""The self-check report: every requirement row judged on the live site, as one JSON document.

``build_report`` gathers the evidence once (``evidence.collect`` and the file ``records``),
judges every row of the requirement list (``checks.judge``) and returns the document that
``render`` turns into HTML and PDF. ``write_report`` writes the three files and records the
report's generation in the audit log. The JSON keys are a stable contract (``FORMAT``):
``requirements[{id, area, source, text, check, status, evidence, reasons, action}]``,
``summary``, ``site``, ``generated_at``, ``generated_by``.

Who may build it: an auditor (READ_AUDIT) or a security administrator (DELETE_SUBJECT: the role
answering for deletions), both of whom verify the audit chain (VERIFY_AUDIT) - the report does
both. The system administrator runs the machine but is not the one who vouches for it.
Everything in it is masked by construction: it reads pseudonyms, counts, dates and
configuration, never an identity record.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.compliance import records
from appliance.compliance.checks import KNOWN_CHECKS, judge
from appliance.compliance.evidence import SiteEvidence, collect
from appliance.compliance.requirements import (
    NEEDS_DOCUMENT, NOT_MET, STATUSES, RequirementList, load_requirements,
)
from appliance.compliance.timefmt import utc
from appliance.config import Config
from appliance.digests import sha256_file
from appliance.security.roles import Permission, Principal, require, require_any
from appliance.stores.protected import ProtectedData

FORMAT = 1  # the JSON contract's version
JSON_NAME, HTML_NAME, PDF_NAME = "report.json", "report.html", "report.pdf"
REPORT_ACTION = "compliance.report"
OPEN_STATUSES = (NOT_MET, NEEDS_DOCUMENT)  # rows whose action is printed


@dataclass(frozen=True)
class WrittenReport:
    json: Path
    html: Path
    pdf: Path | None  # None: no Chromium on this host (HTML and JSON only)
    summary: dict[str, int]
    pdf_problem: str = ""


def require_reporter(principal: Principal) -> None:
    """An auditor or a security administrator: both verify the chain, and either reads the
    log (auditor) or answers for deletions (security administrator)."""
    require(principal, Permission.VERIFY_AUDIT)
    require_any(principal, Permission.READ_AUDIT, Permission.DELETE_SUBJECT)


def gather(config: Config, data: ProtectedData, principal: Principal, folders: list[Path],
           requirement_list: RequirementList, max_head_age_s: float | None, now: float | None = None) -> SiteEvidence:
    """The site's evidence and the file records, for every row of ``requirement_list``."""
    evidence = collect(config, data, principal, max_head_age_s, now)
    names = sorted({name for row in requirement_list.rows for name in row.docs})
    evidence.records = {"folders": folders, "reports": records.latest_reports(folders),
                        "suite": records.suite_run(folders),
                        "documents": {name: records.document(name, data.root) for name in names}}
    return evidence


def _site(ev: SiteEvidence) -> dict[str, Any]:
    run = ev.records.get("suite")
    return {
        "node_id": ev.config.security.node_id, "appliance_version": __version__,
        "configuration": str(ev.config.source) if ev.config.source else "defaults",
        "matching_mode": ev.config.offline.mode, "central_matching_justified": ev.matching is not None,
        "enrolled_people": ev.filing.count, "filing_level": ev.filing.level,
        "devices_active": len(ev.tls.devices_active), "devices_revoked": len(ev.tls.devices_revoked),
        "crypto_suites": list(ev.suites.suites), "audit_entries": ev.audit_verdict.entries,
        "audit_chain_ok": ev.audit_verdict.ok, "deletions_unconfirmed": len(ev.unconfirmed),
        "test_suite": None if run is None else {"ran_at": utc(run.ran_at), **run.totals},
        "reports": {kind: {"file": found.path.name, "date": utc(found.modified_at)}
                    for kind, found in sorted(ev.records.get("reports", {}).items())},
    }


def build_report(config: Config, data: ProtectedData, principal: Principal, folders: list[Path],
                 requirements_path: Path | None = None, max_head_age_s: float | None = None,
                 now: float | None = None) -> dict[str, Any]:
    """The report document (nothing written, nothing logged)."""
    require_reporter(principal)
    requirement_list = load_requirements(KNOWN_CHECKS, requirements_path)
    ev = gather(config, data, principal, folders, requirement_list, max_head_age_s, now)
    rows = []
    for row in requirement_list.rows:
        finding = judge(row, ev)
        rows.append({"id": row.id, "area": row.area, "source": row.source, "text": {"en": row.en, "zh": row.zh},
                     "check": row.check, "status": finding.status, "evidence": finding.evidence,
                     "reasons": finding.reasons, "action": row.action if finding.status in OPEN_STATUSES else ""})
    summary = {status: sum(1 for r in rows if r["status"] == status) for status in STATUSES}
    return {
        "format": FORMAT, "title": requirement_list.meta.get("title_en", ""),
        "title_zh": requirement_list.meta.get("title_zh", ""), "standard": requirement_list.meta.get("standard", ""),
        "generated_at": utc(ev.now), "generated_at_unix": ev.now,
        "generated_by": {"account": principal.actor, "role": principal.role.value},
        "site": _site(ev), "summary": {**summary, "total": len(rows)},
        "areas": requirement_list.areas, "requirements": rows,
        "requirement_list": {"file": requirement_list.path.name, "sha256": sha256_file(requirement_list.path)},
    }


def write_report(config: Config, data: ProtectedData, principal: Principal, out: Path, folders: list[Path],
                 chromium: str | None, requirements_path: Path | None = None,
                 max_head_age_s: float | None = None) -> WrittenReport:
    """report.json, report.html and (with Chromium) report.pdf in ``out``; logged."""
    from appliance.compliance.render import PdfUnavailable, render_html, render_pdf

    document = build_report(config, data, principal, folders, requirements_path, max_head_age_s, time.time())
    out.mkdir(parents=True, exist_ok=True)
    json_path, html_path = out / JSON_NAME, out / HTML_NAME
    json_path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    html_path.write_text(render_html(document), encoding="utf-8")
    pdf_path, problem = None, ""
    try:
        pdf_path = render_pdf(html_path, out / PDF_NAME, chromium)
    except PdfUnavailable as exc:
        problem = str(exc)
    summary = document["summary"]
    data.audit.append(principal, REPORT_ACTION, "site", "ok",
                      f"{summary[STATUSES[0]]} met, {summary[NOT_MET]} not met, {summary[NEEDS_DOCUMENT]} needing a "
                      f"document, {summary[STATUSES[2]]} not applicable" + ("" if pdf_path else "; no PDF"))
    return WrittenReport(json_path, html_path, pdf_path, summary, problem)

"""Checks that read file evidence: the test record, evaluation and PAD reports, the pipeline
benchmark and the documents on file (``appliance.compliance.records``).

Each takes the requirement row and the gathered :class:`SiteEvidence` and returns a
:class:`Finding`; ``appliance.compliance.checks`` registers them by the names the requirement
list uses. A report that is missing, synthetic where real captures are asked for, or too small
to estimate the figure asked for is "not met" with that reason: an absent measurement is not a
pass.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from appliance.compliance.evidence import SiteEvidence
from appliance.compliance.records import Document, ReportFile, SuiteRun
from appliance.compliance.requirements import MET, NEEDS_DOCUMENT, NOT_MET, Requirement, worst
from appliance.compliance.timefmt import utc
from appliance.security.masking import mask_text

PASSED = "passed"
PERCENT = 100.0
MAX_LISTED = 12  # longer lists are cut in the report ("and N more")


@dataclass
class Finding:
    """One part of a row's verdict: its status, the evidence lines, and why (when not met)."""

    status: str
    evidence: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    @staticmethod
    def combine(parts: list["Finding"]) -> "Finding":
        return Finding(worst([p.status for p in parts]), [e for p in parts for e in p.evidence],
                       [r for p in parts for r in p.reasons])


def listed(items: list[str]) -> list[str]:
    return items if len(items) <= MAX_LISTED else [*items[:MAX_LISTED], f"... and {len(items) - MAX_LISTED} more"]


def pct(value: float | None) -> str:
    return "n/a" if value is None else f"{PERCENT * value:.2f} %"


def _report(ev: SiteEvidence, kind: str) -> ReportFile | None:
    return ev.records.get("reports", {}).get(kind)


def _missing(kind: str, ev: SiteEvidence) -> Finding:
    folders = ", ".join(str(f) for f in ev.records.get("folders", []))
    return Finding(NOT_MET, [], [f"no {kind} report found (looked in {folders})"])


def _header(found: ReportFile) -> str:
    return f"{found.kind} report {found.path.name} of {utc(found.modified_at)}"


# -- the recorded test-suite run ------------------------------------------------------------

def tests_part(req: Requirement, ev: SiteEvidence) -> Finding:
    """The row's test files passed in the last recorded whole-suite run."""
    run: SuiteRun | None = ev.records.get("suite")
    if run is None:
        return Finding(NOT_MET, [], ["no recorded test-suite run (scripts/test.sh writes reports/tests/junit.xml)"])
    evidence, reasons = [], []
    for test_file in req.tests:
        outcomes = run.of_file(test_file)
        bad = [o for o in outcomes if o not in (PASSED, "skipped")]
        passed = outcomes.count(PASSED)
        if not outcomes:
            reasons.append(f"{test_file} was not part of the run of {utc(run.ran_at)}")
        elif bad or not passed:
            reasons.append(f"{test_file}: failed on {utc(run.ran_at)} ({len(bad)} of {len(outcomes)} tests)")
        else:
            evidence.append(f"{test_file}: passed on {utc(run.ran_at)} ({passed} tests)")
    return Finding(NOT_MET if reasons else MET, evidence, reasons)


# -- documents ------------------------------------------------------------------------------

def document_part(docs: list[Document]) -> Finding:
    """Each document is on file in ``<data>/compliance/`` with no blank left."""
    parts = []
    for doc in docs:
        template = f"template docs/compliance/{doc.name}" if doc.template is not None else "no template shipped"
        if doc.on_file is None:
            parts.append(Finding(NEEDS_DOCUMENT, [f"{doc.name}: not on file ({template})"],
                                 [f"keep the completed {doc.name} in <data dir>/compliance/"]))
        elif doc.blanks_left:
            parts.append(Finding(NEEDS_DOCUMENT, [f"{doc.name}: on file, blanks [[...]] left: {doc.blanks_left}"],
                                 [f"complete the blanks of {doc.name}"]))
        else:
            parts.append(Finding(MET, [f"{doc.name}: on file, dated {utc(doc.modified_at or 0.0)}, "
                                      f"sha256 {doc.sha256[:16]}"]))
    return Finding.combine(parts)


def check_document(req: Requirement, ev: SiteEvidence) -> Finding:
    return document_part([ev.records["documents"][name] for name in req.docs])


# -- evaluation reports ---------------------------------------------------------------------

def check_verification_report(req: Requirement, ev: SiteEvidence) -> Finding:
    """A figure of the last 1:1 report (ISO/IEC 19795-1) against its limit."""
    found = _report(ev, "verification")
    if found is None:
        return _missing("verification", ev)
    body, metric = found.body, req.param("metric")
    evidence = [_header(found), f"dataset {mask_text(str(body.get('dataset', '?')))}, model "
                f"{body.get('model', {}).get('pack', '?')}, {body.get('genuine_pairs')} genuine and "
                f"{body.get('impostor_pairs')} impostor pairs"]
    if metric == "confidence_intervals":
        text = body.get("confidence_intervals")
        return Finding(MET, [*evidence, f"intervals: {text}"]) if text else \
            Finding(NOT_MET, evidence, ["the report gives no confidence intervals"])
    value = body.get(metric)
    label = metric
    if isinstance(value, dict):
        value, label = value.get(req.param("at")), f"{metric} at {req.param('at')}"
    if value is None:
        return Finding(NOT_MET, evidence, [f"{label}: too few comparisons to estimate"])
    limit = float(req.param("limit"))
    evidence.append(f"{label} = {pct(value)} (limit {pct(limit)})")
    reasons = [] if value <= limit else [f"{label} {pct(value)} is above {pct(limit)}"]
    least = req.param("min_impostor_pairs")
    if least and int(body.get("impostor_pairs") or 0) < least:
        reasons.append(f"{body.get('impostor_pairs')} impostor pairs: the protocol asks for {least} or more")
    return Finding(NOT_MET if reasons else MET, evidence, reasons)


def check_identification_report(req: Requirement, ev: SiteEvidence) -> Finding:
    """FNIR at a fixed FPIR, on a gallery near the site's enrolled count."""
    found = _report(ev, "identification")
    if found is None:
        return _missing("identification", ev)
    body, at = found.body, req.param("at")
    fnir = (body.get("fnir_at_fpir") or {}).get(at)
    gallery, enrolled = int(body.get("gallery_identities") or 0), ev.filing.count
    evidence = [_header(found), f"gallery {gallery} identities; {enrolled} people enrolled on this site",
                f"FNIR at FPIR {at} = {pct(fnir)} (limit {pct(req.param('limit'))})"]
    reasons = []
    if fnir is None or fnir > req.param("limit"):
        reasons.append(f"FNIR at FPIR {at} is {pct(fnir)}, above {pct(req.param('limit'))}")
    if gallery < req.param("gallery_share") * enrolled:
        reasons.append(f"the gallery ({gallery}) is below {pct(req.param('gallery_share'))} of the "
                       f"{enrolled} people enrolled")
    return Finding(NOT_MET if reasons else MET, evidence, reasons)


def check_pad_report(req: Requirement, ev: SiteEvidence) -> Finding:
    """APCER per attack species and BPCER of the last ISO/IEC 30107-3 report."""
    found = _report(ev, "pad")
    if found is None:
        return _missing("PAD", ev)
    body = found.body
    apcer: dict = body.get("apcer") or {}
    counts = body.get("counts") or {}
    evidence = [_header(found) + (" (SYNTHETIC attacks)" if body.get("synthetic") else " (real captures)"),
                f"bona fide {counts.get('bona_fide')}; attacks {counts.get('attack')}",
                "APCER " + ", ".join(f"{k} {pct(v)}" for k, v in apcer.items()) + f"; BPCER {pct(body.get('bpcer'))}"
                + (f"; BPCER20 {pct(body.get('bpcer20'))}" if body.get("bpcer20") is not None else "")]
    reasons = []
    if body.get("synthetic") and not req.param("allow_synthetic", False):
        reasons.append("synthetic attacks only: real attack captures are needed")
    if len(apcer) < req.param("min_species", 0):
        reasons.append(f"attack species: {len(apcer)}; {req.param('min_species')} or more are needed")
    worst_apcer = max((v for v in apcer.values() if v is not None), default=None)
    if req.param("max_apcer") is not None and (worst_apcer is None or worst_apcer > req.param("max_apcer")):
        reasons.append(f"worst APCER {pct(worst_apcer)} is above {pct(req.param('max_apcer'))}")
    bpcer = body.get("bpcer")
    if req.param("max_bpcer") is not None and (bpcer is None or bpcer > req.param("max_bpcer")):
        reasons.append(f"BPCER {pct(bpcer)} is above {pct(req.param('max_bpcer'))}")
    reasons += [f"the report has no {key}" for key in req.param("require", []) if body.get(key) is None]
    return Finding(NOT_MET if reasons else MET, evidence, reasons)


def check_pipeline_bench(req: Requirement, ev: SiteEvidence) -> Finding:
    """The pipeline benchmark's median time per frame (appliance bench pipeline)."""
    found = _report(ev, "pipeline_bench")
    if found is None:
        return _missing("pipeline benchmark", ev)
    target = (found.body.get("targets") or {}).get("median_ms") or {}
    measured, limit = target.get("measured"), float(req.param("limit_ms"))
    machine = found.body.get("machine")
    evidence = [_header(found), f"median per frame {measured} ms (limit {limit:g} ms), machine "
                f"{machine.get('cpu', '?') if isinstance(machine, dict) else '?'}",
                "per frame through detection, quality, liveness cues and template; the door's burst adds frames"]
    if measured is None or measured > limit:
        return Finding(NOT_MET, evidence, [f"median {measured} ms is above {limit:g} ms"])
    return Finding(MET, evidence)

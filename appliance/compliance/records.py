"""Evidence kept as files: the last accuracy, identification, PAD and benchmark reports, the
last recorded test-suite run, and the documents the site keeps on file.

The evaluation commands write their JSON wherever ``--out`` says (``appliance eval verification
--out reports/verification.json``), so each report is recognised by its contract keys, not its
name, and the newest of each kind (by file time: the reports carry no date) is the evidence.
The test suite's record is the JUnit XML that ``scripts/test.sh`` writes for a whole-suite run
(``reports/tests/junit.xml``): its test cases say which test files passed and when.
A document is on file when the site's completed copy sits in ``<data>/compliance/`` under the
template's name and has no ``[[...]]`` blank left.
"""
from __future__ import annotations

import datetime as dt
import json
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance import paths
from appliance.digests import sha256_file

COMPLIANCE_DIR = "compliance"  # the report's own output and the site's documents: never evidence
JUNIT_FILE = Path("tests") / "junit.xml"
DOCUMENTS_DIR = "docs/compliance"
BLANK_MARK = "[["  # the templates' fill-in marks: [[name, role]]
MAX_REPORT_BYTES = 20 * 1024 * 1024  # an evaluation report is a few KB; anything larger is not one
# contract keys that tell a report's kind (appliance.evaluation.*, appliance.bench.pipeline_bench)
KINDS = {
    "verification": frozenset({"fnmr_at_fmr", "fta_rate", "fte_rate", "impostor_pairs"}),
    "identification": frozenset({"fnir_at_fpir", "gallery_identities"}),
    "pad": frozenset({"apcer", "bpcer", "counts"}),
    "pipeline_bench": frozenset({"runs", "targets", "machine"}),
}


@dataclass(frozen=True)
class ReportFile:
    kind: str
    path: Path
    modified_at: float
    body: dict[str, Any]


@dataclass(frozen=True)
class SuiteRun:
    """The last recorded whole-suite run: when, totals, and each test case's outcome by file."""

    path: Path
    ran_at: float
    totals: dict[str, int]
    outcomes: dict[str, list[str]] = field(default_factory=dict)  # "tests/x/test_y.py" -> outcomes

    def of_file(self, test_file: str) -> list[str]:
        return self.outcomes.get(test_file, [])


@dataclass(frozen=True)
class Document:
    name: str
    template: Path | None  # the product's template (a checkout's docs/compliance/), if found
    on_file: Path | None  # the site's copy
    blanks_left: int = 0
    modified_at: float | None = None
    sha256: str = ""


def _kind(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    return next((kind for kind, keys in KINDS.items() if keys <= body.keys()), None)


def latest_reports(folders: list[Path]) -> dict[str, ReportFile]:
    """The newest report of each kind found below ``folders`` (the report's own folder skipped)."""
    newest: dict[str, ReportFile] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*.json")):
            if COMPLIANCE_DIR in path.relative_to(folder).parts or path.stat().st_size > MAX_REPORT_BYTES:
                continue
            try:
                body = json.loads(path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError, OSError):
                continue  # not a report: another tool's file
            kind = _kind(body)
            if kind is None:
                continue
            found = ReportFile(kind, path, path.stat().st_mtime, body)
            if kind not in newest or found.modified_at > newest[kind].modified_at:
                newest[kind] = found
    return newest


def _file_of(classname: str) -> str:
    """``tests.security.test_masking`` (or ``...test_masking.TestX``) -> its test file."""
    parts = classname.split(".")
    for end in range(len(parts), 0, -1):
        if parts[end - 1].startswith("test_"):
            return "/".join(parts[:end]) + ".py"
    return classname


def _ran_at(suite: ElementTree.Element, path: Path) -> float:
    stamp = suite.get("timestamp", "")
    try:
        when = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return path.stat().st_mtime
    return (when if when.tzinfo else when.astimezone()).timestamp()


def suite_run(folders: list[Path]) -> SuiteRun | None:
    """The newest ``tests/junit.xml`` below ``folders``, read; None when no run is recorded."""
    found = [f / JUNIT_FILE for f in folders if (f / JUNIT_FILE).is_file()]
    if not found:
        return None
    path = max(found, key=lambda p: p.stat().st_mtime)
    root = ElementTree.parse(path).getroot()  # our own test runner's file, not outside input
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    totals = {k: sum(int(s.get(k, 0)) for s in suites) for k in ("tests", "failures", "errors", "skipped")}
    outcomes: dict[str, list[str]] = {}
    for case in root.iter("testcase"):
        verdict = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        outcomes.setdefault(_file_of(case.get("classname", "")), []).append(verdict)
    return SuiteRun(path, _ran_at(suites[0], path) if suites else path.stat().st_mtime, totals, outcomes)


def template_folder() -> Path | None:
    """The product's document templates (a checkout's ``docs/compliance``; a wheel has none)."""
    root = paths.checkout_root()
    folder = None if root is None else root / DOCUMENTS_DIR
    return folder if folder is not None and folder.is_dir() else None


def document(name: str, data_root: Path) -> Document:
    """The site's copy of document ``name`` in ``<data>/compliance/``, and how complete it is."""
    templates = template_folder()
    template = templates / name if templates is not None and (templates / name).is_file() else None
    copy = data_root / COMPLIANCE_DIR / name
    if not copy.is_file():
        return Document(name, template, None)
    text = copy.read_text(encoding="utf-8", errors="replace")
    return Document(name, template, copy, text.count(BLANK_MARK), copy.stat().st_mtime, sha256_file(copy))


def evidence_folders(data_root: Path, extra: list[Path] | None = None) -> list[Path]:
    """Where reports and the suite record are looked for: the checkout's (or installed)
    ``reports/``, the data folder's ``reports/``, and any folder given."""
    folders = [paths.reports_dir(), data_root / "reports", *(extra or [])]
    unique: list[Path] = []
    for folder in folders:
        if folder.resolve() not in {f.resolve() for f in unique}:
            unique.append(folder)
    return unique

"""``appliance enroll --folder DIR``: many people at once, each through the same desk.

Layout (docs/enrollment.md): ``DIR/manifest.csv`` with a header row and one row per person -
``folder`` (a subfolder of DIR holding that person's photos), ``name``, ``consent_ref``, and
optionally ``groups`` (separated by ``;``), ``age_band``, ``alternative``, ``card_no``,
``staff_no``, ``guardian``, ``local_matching`` (yes/no). The whole manifest is checked
before the first person is enrolled: a wrong header or a folder named twice stops the import
with DATASET_INVALID and nothing written. After that each person succeeds or fails on their
own (a consent problem, an unreadable photo, a failure to enrol, a duplicate) and the import
goes on; every outcome goes into the CSV report (masked name, status, subject id, captures
used, rejections, error, where the face works and a warning when nowhere). Exit status: 0
when everyone was enrolled, 29 when the only problems were duplicates, else 28.
"""
from __future__ import annotations

import argparse
import csv
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from appliance import json_text
from appliance.capture.image_headers import IMAGE_SUFFIXES
from appliance.cli.desk_session import EXIT_STATUS, open_desk, read_upload
from appliance.enrollment import MAX_ENROLLMENT_CAPTURES
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.enrollment_desk import DUPLICATE, ENROLLED, FAILED_TO_ENROL, EnrollmentRequest
from appliance.security.masking import mask_name

MANIFEST = "manifest.csv"
REPORT = "enroll-report.csv"
REQUIRED = ("folder", "name", "consent_ref")
OPTIONAL = ("groups", "age_band", "alternative", "card_no", "staff_no", "guardian", "local_matching")
GROUP_SEPARATOR = ";"
YES = frozenset({"yes", "y", "true", "1"})
NO = frozenset({"no", "n", "false", "0", ""})
ERROR = "error"  # a person the desk refused before judging the photos (consent, unreadable photo, ...)
REPORT_FIELDS = ("folder", "person", "status", "subject_id", "images_used", "rejections", "error", "usable_at",
                 "warning")  # usable_at: central, doors or nowhere (then warning says why and what to do)
MAX_MANIFEST_ROWS = 100_000


@dataclass(frozen=True)
class Row:
    line: int
    folder: Path
    fields: dict[str, str]

    def request(self) -> EnrollmentRequest:
        f = self.fields
        local = f.get("local_matching", "").strip().lower()
        if local not in YES | NO:
            raise ApplianceError(ErrorCode.CONSENT_MISSING, f"local_matching {local!r}: yes or no")
        return EnrollmentRequest(
            name=f["name"], consent_ref=f["consent_ref"], age_band=f.get("age_band") or "adult",
            alternative=f.get("alternative") or "card", card_no=f.get("card_no", ""), staff_no=f.get("staff_no", ""),
            guardian_name=f.get("guardian", ""), groups=tuple(f.get("groups", "").split(GROUP_SEPARATOR)),
            local_matching=local in YES)

    def photos(self) -> list[tuple[str, bytes]]:
        files = sorted(p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ApplianceError(ErrorCode.FILE_NOT_FOUND,
                                 f"{self.folder.name}: no photos ({', '.join(IMAGE_SUFFIXES)})")
        return [read_upload(p, p.name) for p in files[:MAX_ENROLLMENT_CAPTURES]]


def read_manifest(folder: Path, manifest: Path) -> list[Row]:
    """Every row, checked as a whole (header, folders) before anyone is enrolled."""
    if not manifest.is_file():
        raise ApplianceError(ErrorCode.FILE_NOT_FOUND, f"{manifest} (the manifest: {', '.join(REQUIRED)}, ...)")
    with manifest.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        header = [h.strip() for h in reader.fieldnames or []]
        missing = [c for c in REQUIRED if c not in header]
        unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
        if missing or unknown:
            raise ApplianceError(ErrorCode.DATASET_INVALID,
                                 f"{manifest}: columns missing {missing}, unknown {unknown}; "
                                 f"expected {', '.join(REQUIRED + OPTIONAL)}")
        rows, seen = [], set()
        for record in reader:
            if len(rows) >= MAX_MANIFEST_ROWS:
                raise ApplianceError(ErrorCode.DATASET_INVALID, f"{manifest}: more than {MAX_MANIFEST_ROWS} rows")
            fields = {(k or "").strip(): (v or "").strip() for k, v in record.items() if k is not None}
            if not any(fields.values()):
                continue
            line = reader.line_num
            name = fields.get("folder", "")
            sub = (folder / name).resolve()
            if not name or sub.parent != folder.resolve() or not sub.is_dir():
                raise ApplianceError(ErrorCode.DATASET_INVALID, f"{manifest} line {line}: folder {name!r} is not a "
                                                                f"subfolder of {folder}")
            if name in seen:
                raise ApplianceError(ErrorCode.DATASET_INVALID, f"{manifest} line {line}: folder {name!r} twice")
            seen.add(name)
            rows.append(Row(line, sub, fields))
    if not rows:
        raise ApplianceError(ErrorCode.DATASET_INVALID, f"{manifest}: nobody to enroll")
    return rows


def import_folder(args: argparse.Namespace) -> int:
    folder = Path(args.folder)
    if not folder.is_dir():
        raise ApplianceError(ErrorCode.FILE_NOT_FOUND, str(folder))
    rows = read_manifest(folder, Path(args.manifest) if args.manifest else folder / MANIFEST)
    report_path = Path(args.report) if args.report else folder / REPORT
    results: list[dict[str, object]] = []
    with open_desk(args) as (desk, principal):
        for row in tqdm(rows, desc="enrolling", unit="person", file=sys.stderr, disable=None):
            result = {"folder": row.folder.name, "person": mask_name(row.fields.get("name", "")), "status": ERROR,
                      "subject_id": "", "images_used": 0, "rejections": "", "error": "", "usable_at": "",
                      "warning": ""}
            try:
                outcome = desk.enroll(principal, row.request(), row.photos())
            except ApplianceError as exc:
                result["error"] = str(exc)
            else:
                result.update(status=outcome.status, subject_id=outcome.subject_id, images_used=outcome.images_used,
                              rejections=" | ".join(f"{r.image}: {r.reason} ({r.guidance})" for r in outcome.rejected),
                              error="" if outcome.status == ENROLLED else outcome.message,
                              usable_at=outcome.usable_at.where if outcome.usable_at else "",
                              warning=" | ".join(outcome.warnings))
            results.append(result)
    write_report(report_path, results)
    statuses = [str(r["status"]) for r in results]
    summary = {s: statuses.count(s) for s in (ENROLLED, FAILED_TO_ENROL, DUPLICATE, ERROR)}
    if args.json:
        sys.stdout.write(json_text.dumps({"report": str(report_path), "counts": summary, "people": results},
                                    ensure_ascii=False, indent=2) + "\n")
    else:
        counts = ", ".join(f"{n} {s}" for s, n in summary.items())
        print(f"{len(results)} people: {counts}; report {report_path}")
    unusable = sum(1 for r in results if r["warning"])
    if unusable:
        print(f"warning: {unusable} enrolled face(s) open no door; the report's warning column says why and what "
              "to do", file=sys.stderr)
    if all(s == ENROLLED for s in statuses):
        return 0
    if all(s in (ENROLLED, DUPLICATE) for s in statuses):
        return EXIT_STATUS[DUPLICATE]
    return EXIT_STATUS[FAILED_TO_ENROL]


def write_report(path: Path, results: list[dict[str, object]]) -> None:
    """The report, replaced whole (a temporary file renamed): never half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=REPORT_FIELDS)
        writer.writeheader()
        writer.writerows(results)
    temporary.replace(path)

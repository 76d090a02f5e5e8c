"""``appliance compliance report`` on a fresh site and on a demo-like one, read as a person
reads it (the PDF rendered by ``pdftoppm``, its text by ``pdftotext``), with requirements
flipped on the live site: a device that has not confirmed a deletion, retention that stopped,
central matching without a legal basis, failing tests, missing documents."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance import paths
from appliance.compliance.render import find_chromium, render_html
from appliance.compliance.report import REPORT_ACTION, build_report, write_report
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher import site_policy
from appliance.matcher.deletions import DeletionConfirmations
from appliance.matcher.subject_access import ACCESS_RECEIPTS_DIR, export_subject
from appliance.ops.retention import apply_retention
from appliance.security.roles import Role
from compliancekit import AUDITOR, DOORS, OPERATOR, PEOPLE, SECURITY, SYSADMIN

PERMISSION_DENIED_EXIT = ErrorCode.PERMISSION_DENIED.exit_status
DAY_S = 86400.0
DELETION_TESTS = ("tests/stores/test_deletion.py", "tests/offline/test_sync.py", "tests/ops/test_backup.py")
SCREENSHOT_DIR = paths.reports_dir() / "compliance"  # kept for a person to look at (not tracked)
needs_chromium = pytest.mark.skipif(find_chromium() is None or shutil.which("pdftoppm") is None,
                                    reason="chromium and poppler-utils render and read the PDF")


def row(document: dict, rid: str) -> dict:
    return next(r for r in document["requirements"] if r["id"] == rid)


def pdf_pages(pdf: Path, prefix: Path) -> list[Path]:
    subprocess.run(["pdftoppm", "-r", "70", "-png", str(pdf), str(prefix)], check=True, timeout=120)
    return sorted(prefix.parent.glob(prefix.name + "-*.png"))


def pdf_text(pdf: Path) -> str:
    return subprocess.run(["pdftotext", str(pdf), "-"], check=True, capture_output=True, text=True,
                          timeout=60).stdout


def run_cli(site, token: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(site.folder), "APPLIANCE_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "appliance", "--config", str(site.config_file), "compliance",
                           "report", "--out", str(out), *extra], capture_output=True, text=True, env=env, timeout=300)


def passing_suite(folder: Path, test_files: tuple[str, ...]) -> Path:
    """A recorded suite run (as scripts/test.sh leaves it) in which ``test_files`` passed."""
    cases = "".join(f'<testcase classname="{f[:-3].replace("/", ".")}" name="test_one" />' for f in test_files)
    (folder / "tests").mkdir(parents=True, exist_ok=True)
    (folder / "tests" / "junit.xml").write_text(
        f'<testsuites><testsuite name="pytest" errors="0" failures="0" skipped="0" tests="{len(test_files)}" '
        f'timestamp="2026-12-01T22:00:00+00:00">{cases}</testsuite></testsuites>', encoding="utf-8")
    return folder


def assert_masked(*texts: str) -> None:
    for text in texts:
        for name, id_number, phone in PEOPLE:
            assert name not in text and id_number not in text and phone not in text


@needs_chromium
def test_the_report_builds_on_a_fresh_site_and_reads_as_a_person_reads_it(fresh_site, tmp_path):
    token = fresh_site.token(Role.AUDITOR)
    out = tmp_path / "report"
    done = run_cli(fresh_site, token, out)
    assert done.returncode == 1, done.stderr  # a fresh site has open rows: retention never ran, no PKI
    assert "requirements:" in done.stdout and str(out / "report.pdf") in done.stdout
    document = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert {"format", "generated_at", "generated_by", "site", "summary", "requirements"} <= document.keys()
    assert document["generated_by"]["role"] == "auditor" and document["generated_by"]["account"].startswith("aud-")
    first = document["requirements"][0]
    assert {"id", "source", "status", "evidence", "action", "reasons"} <= first.keys()
    assert sum(document["summary"][s] for s in ("met", "not met", "not applicable", "needs a document")) \
        == document["summary"]["total"] == len(document["requirements"])
    assert row(document, "S-LOG-3")["evidence"][0].startswith("audit chain, signed checkpoints and signed head intact")
    assert "no project CA" in " ".join(row(document, "D-ENC-2")["reasons"])
    assert row(document, "D-RET-1")["reasons"][0] == "retention never ran"
    assert row(document, "D-RET-1")["action"] and row(document, "D-FILE-1")["status"] == "met"

    pages = pdf_pages(out / "report.pdf", tmp_path / "page")
    assert len(pages) >= 3 and all(p.stat().st_size > 10_000 for p in pages)  # pages with something on them
    text = pdf_text(out / "report.pdf")
    assert "合规自查报告" in text and "数据要求" in text and "D-LOCAL-1" in text and "不得通过互联网对外传输" in text
    assert "retention never ran" in text and "O-TEST-1" in text  # the last row made it onto the paper
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pages[0], SCREENSHOT_DIR / "fresh-site-page1.png")

    with fresh_site.data() as data:
        logged = [e for e in data.audit.entries() if e.action == REPORT_ACTION]
    assert len(logged) == 1 and logged[0].role == "auditor" and "not met" in logged[0].detail


def test_a_system_administrator_may_not_build_it_and_nothing_is_written(fresh_site, tmp_path):
    done = run_cli(fresh_site, fresh_site.token(Role.SYSTEM_ADMIN), tmp_path / "report")
    assert done.returncode == PERMISSION_DENIED_EXIT and "may not" in done.stderr
    assert not (tmp_path / "report").exists()
    with fresh_site.data() as data:
        with pytest.raises(ApplianceError) as caught:
            build_report(fresh_site.config, data, SYSADMIN, [])
        assert caught.value.code is ErrorCode.PERMISSION_DENIED
        assert build_report(fresh_site.config, data, SECURITY, [])["generated_by"]["role"] == "security_administrator"


@needs_chromium
def test_a_device_that_has_not_confirmed_a_deletion_is_named_until_it_does(demo_site, tmp_path):
    out = tmp_path / "report"
    suite = [passing_suite(tmp_path / "evidence", DELETION_TESTS)]
    with demo_site.data() as data:
        written = write_report(demo_site.config, data, AUDITOR, out, suite, None)
        document = json.loads(written.json.read_text(encoding="utf-8"))
        deletion = row(document, "D-DEL-1")
        assert deletion["status"] == "not met" and deletion["action"].startswith("Bring the devices named online")
        assert deletion["evidence"][0] == f"deletions on record: 1; active devices: {len(DOORS)}; signed deletion " \
                                          "receipts on file: 1"
        assert deletion["evidence"][1] == "outstanding by device: door-a 1, door-b 1"
        [reason] = deletion["reasons"]  # the tests passed: the one reason is the missing confirmations
        assert demo_site.deleted in reason and "not confirmed by door-a, door-b" in reason
        assert document["site"]["enrolled_people"] == len(PEOPLE) - 1 and document["site"]["devices_active"] == 2
        assert "2 active (door-a, door-b), 0 revoked" in " ".join(row(document, "D-ENC-2")["evidence"])

        text = pdf_text(written.pdf)
        # the pseudonym is there (where it wraps after "s-", pdftotext joins it as a hyphenated word)
        assert demo_site.deleted.split("-", 1)[1] in text and "confirmed by door-a, door-b" in text
        assert_masked(written.json.read_text(encoding="utf-8"), written.html.read_text(encoding="utf-8"), text)
        SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pdf_pages(written.pdf, tmp_path / "page")[0], SCREENSHOT_DIR / "demo-site-page1.png")

        store = demo_site.sync_store(data)
        try:
            confirmations = DeletionConfirmations(data, store)
            confirmations.acknowledge("door-a", demo_site.tombstone_revision)
            partly = row(build_report(demo_site.config, data, AUDITOR, suite), "D-DEL-1")
            assert partly["status"] == "not met" and "not confirmed by door-b" in partly["reasons"][0]
            confirmations.acknowledge("door-b", data.biometric.revision)
        finally:
            store.close()
        done = row(build_report(demo_site.config, data, AUDITOR, suite), "D-DEL-1")
    assert done["status"] == "met" and done["reasons"] == [] and done["action"] == ""
    assert done["evidence"][1] == "every deletion is confirmed by every active device"


def test_retention_is_met_after_the_job_ran_and_not_met_when_it_stopped(demo_site):
    with demo_site.data() as data:
        before = row(build_report(demo_site.config, data, AUDITOR, []), "D-RET-1")
        assert before["status"] == "not met" and before["reasons"] == ["retention never ran"]
        store = demo_site.sync_store(data)
        try:
            ran_at = time.time()
            apply_retention(data, SYSADMIN, store, store, now=ran_at)
        finally:
            store.close()
        after = row(build_report(demo_site.config, data, AUDITOR, [], now=ran_at + 60), "D-RET-1")
        assert after["status"] == "met", after
        assert any(line.startswith("last run") and "by sys-kit" in line for line in after["evidence"])
        stopped = row(build_report(demo_site.config, data, AUDITOR, [], now=ran_at + 3 * DAY_S), "D-RET-1")
    assert stopped["status"] == "not met"
    assert stopped["reasons"] == ["retention last ran 3.0 days ago: the nightly job has stopped"]


def test_central_matching_shows_who_decided_when_and_why(demo_site):
    with demo_site.data() as data:
        local = row(build_report(demo_site.config, data, AUDITOR, []), "D-LOCAL-1")
        assert local["status"] == "met" and "no template leaves them" in local["evidence"][1]
        store = demo_site.sync_store(data)
        try:
            site_policy.justify(data, store, SECURITY, "one matcher serves four buildings of one employer")
            unfounded = row(build_report(demo_site.config, data, AUDITOR, []), "D-LOCAL-1")
            site_policy.justify(data, store, SECURITY, "one matcher serves four buildings of one <b>employer</b>",
                                legal_basis="separate consent, form FR-2")
        finally:
            store.close()
        document = build_report(demo_site.config, data, AUDITOR, [])
        founded = row(document, "D-LOCAL-1")
    page = render_html(document)  # what an administrator typed is shown as text, never as markup
    assert "four buildings of one &lt;b&gt;employer&lt;/b&gt;" in page and "<b>employer" not in page
    assert unfounded["status"] == "needs a document" and "no legal basis" in unfounded["reasons"][0]
    assert "justified by account sec-kit (security_administrator)" in unfounded["evidence"][1]
    assert "four buildings" in unfounded["evidence"][1]
    assert founded["status"] == "met" and founded["evidence"][-1] == "basis: separate consent, form FR-2"


def test_an_access_request_counts_as_answered_only_with_its_signed_receipt(demo_site):
    with demo_site.data() as data:
        store = demo_site.sync_store(data)
        try:
            export_subject(OPERATOR, demo_site.subjects[0], data, store, {door: "default" for door in DOORS})
        finally:
            store.close()
        answered = row(build_report(demo_site.config, data, AUDITOR, []), "X-SAR-1")
        assert answered["evidence"][0].startswith("subject access requests answered: 1; signed access receipts on "
                                                  "file: 1; the last on")
        assert not any("receipt" in reason for reason in answered["reasons"])
        for receipt in (demo_site.folder / ACCESS_RECEIPTS_DIR).glob("*.json"):
            receipt.write_text(receipt.read_text(encoding="utf-8").replace('"masked": true', '"masked": false'),
                               encoding="utf-8")  # edited: its signature no longer holds
        lost = row(build_report(demo_site.config, data, AUDITOR, []), "X-SAR-1")
    assert lost["status"] == "not met"
    assert lost["reasons"][0] == "1 answered requests have no verifiable receipt in <data dir>/access-receipts/"


JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1"
skipped="0" tests="3" timestamp="2026-11-30T08:00:00+00:00">
<testcase classname="tests.stores.test_audit" name="test_a" /><testcase classname="tests.stores.test_audit"
name="test_b"><failure message="boom" /></testcase><testcase classname="tests.stores.test_audit_head" name="test_c" />
</testsuite></testsuites>"""


def test_file_evidence_tests_reports_and_documents_decide_their_rows(fresh_site, tmp_path):
    evidence = tmp_path / "evidence"
    (evidence / "tests").mkdir(parents=True)
    (evidence / "tests" / "junit.xml").write_text(JUNIT, encoding="utf-8")
    (evidence / "verification.json").write_text(json.dumps({
        "fnmr_at_fmr": {"1e-2": 0.01, "1e-3": 0.03, "1e-4": None}, "fta_rate": 0.0, "fte_rate": 0.02,
        "impostor_pairs": 250_000, "genuine_pairs": 4000, "dataset": "/data/held-out", "model": {"pack": "w600k-mbf"},
        "confidence_intervals": "95 % Wilson score intervals on comparison counts"}), encoding="utf-8")
    (evidence / "pad.json").write_text(json.dumps({
        "apcer": {"print": 0.0, "screen": 0.05}, "bpcer": 0.08, "bpcer20": 0.1, "synthetic": True,
        "counts": {"bona_fide": 60, "attack": {"print": 150, "screen": 150}}}), encoding="utf-8")
    (evidence / "notes.json").write_text('{"not": "a report"}', encoding="utf-8")
    with fresh_site.data() as data:
        document = build_report(fresh_site.config, data, AUDITOR, [evidence])
        chain = row(document, "S-LOG-3")
        assert chain["status"] == "not met"
        assert chain["reasons"][0] == "tests/stores/test_audit.py: failed on 2026-11-30 08:00 UTC (1 of 2 tests)"
        assert "tests/stores/test_audit_head.py: passed on 2026-11-30 08:00 UTC (1 tests)" in chain["evidence"]
        assert "tests/ops/test_backup.py was not part of the run of 2026-11-30 08:00 UTC" in chain["reasons"]
        assert row(document, "P-VER-1")["status"] == "met"
        assert "fnmr_at_fmr at 1e-3 = 3.00 % (limit 5.00 %)" in row(document, "P-VER-1")["evidence"]
        assert row(document, "P-VER-2")["reasons"] == ["fnmr_at_fmr at 1e-4: too few comparisons to estimate"]
        assert row(document, "P-ENR-1")["reasons"] == ["fte_rate 2.00 % is above 1.00 %"]
        assert row(document, "P-STAT-1")["status"] == "met"
        pad = row(document, "F-LIV-2")
        assert pad["status"] == "not met"
        assert "synthetic attacks only: real attack captures are needed" in pad["reasons"]
        assert "attack species: 2; 4 or more are needed" in pad["reasons"]
        assert row(document, "P-PAD-3")["status"] == "met"  # BPCER20 reported; synthetic allowed there
        assert row(document, "P-TIME-1")["reasons"][0].startswith("no pipeline benchmark report found")

        runbook = row(document, "S-INC-1")
        assert runbook["status"] == "needs a document" and "incident-runbook.md: not on file" in runbook["evidence"][0]
        copy = fresh_site.folder / "compliance" / "incident-runbook.md"
        copy.parent.mkdir()
        copy.write_text("# Runbook\nOn call: [[name, phone]]\n", encoding="utf-8")
        assert "blanks [[...]] left: 1" in row(build_report(fresh_site.config, data, AUDITOR, [evidence]),
                                              "S-INC-1")["evidence"][0]
        copy.write_text("# Runbook\nOn call: the security desk, extension 2201\n", encoding="utf-8")
        filled = row(build_report(fresh_site.config, data, AUDITOR, [evidence]), "S-INC-1")
    assert filled["status"] == "met" and filled["evidence"][0].startswith("incident-runbook.md: on file, dated")


def test_without_chromium_the_html_and_json_are_written_and_the_reason_given(fresh_site, tmp_path):
    with fresh_site.data() as data:
        written = write_report(fresh_site.config, data, AUDITOR, tmp_path / "out", [], str(tmp_path / "no-chromium"))
        logged = [e for e in data.audit.entries() if e.action == REPORT_ACTION]
    assert written.pdf is None and "no Chromium found" in written.pdf_problem
    assert written.html.is_file() and written.json.is_file() and not (tmp_path / "out" / "report.pdf").exists()
    assert "<table" in written.html.read_text(encoding="utf-8") and logged[-1].detail.endswith("; no PDF")

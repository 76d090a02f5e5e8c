"""The benchmark report is produced (its numbers are measured by `appliance bench envelope`,
never asserted here)."""
from __future__ import annotations

from appliance.security.bench import markdown_report, run_envelope_bench


def test_report_has_the_envelope_and_its_peers():
    result = run_envelope_bench(payload_bytes=256, messages=3, repeats=2)
    report = markdown_report(result)
    assert len(result.seals_per_s) == len(result.opens_per_s) == len(result.peer_per_s) == 2
    assert len(result.session_seals_per_s) == len(result.session_opens_per_s) == 2
    for row in ("envelope seal, per-message", "envelope open, per-message", "envelope seal, session",
                "envelope open, session", "peer: plain AES-256-GCM", "floor:", "in session format"):
        assert row in report


def test_suite_report_has_both_suites_side_by_side(tmp_path, capsys):
    from appliance.cli.main import main
    from appliance.security.bench import run_suite_bench, suite_markdown_report

    result = run_suite_bench(payload_bytes=256, messages=2, repeats=2)
    assert {len(runs) for runs in (*result.seals_per_s.values(), *result.opens_per_s.values())} == {2}
    report = suite_markdown_report(result)
    for row in ("seal (default)", "seal (sm)", "open (default)", "open (sm)", "load average", "gmalg "):
        assert row in report
    out = tmp_path / "envelope-sm.md"
    assert main(["bench", "envelope", "--suite", "sm", "--messages", "2", "--repeats", "1", "--out", str(out)]) == 0
    assert "seal sm" in capsys.readouterr().out and "| open (sm) |" in out.read_text()

"""The benchmark report is produced (its numbers are measured by `appliance bench envelope`,
never asserted here)."""
from __future__ import annotations

from appliance.security.bench import markdown_report, run_envelope_bench


def test_report_has_the_envelope_and_its_peers():
    result = run_envelope_bench(payload_bytes=256, messages=3, repeats=2)
    report = markdown_report(result)
    assert len(result.seals_per_s) == len(result.opens_per_s) == len(result.peer_per_s) == 2
    for row in ("envelope seal", "envelope open", "peer: plain AES-256-GCM", "floor:"):
        assert row in report

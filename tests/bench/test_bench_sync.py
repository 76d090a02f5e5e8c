"""Smoke test of ``appliance bench sync`` with tiny sizes (the real figures: reports/bench/sync.md)."""
from __future__ import annotations

import subprocess
import sys

from appliance.paths import REPO_ROOT as REPO


def test_bench_sync_writes_a_report_with_no_event_lost(tmp_path):
    result = subprocess.run([sys.executable, "-m", "appliance", "bench", "sync", "--enrollments", "40", "--changes",
                             "20", "--events", "300", "--out", str(tmp_path)], capture_output=True, text=True,
                            cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = (tmp_path / "sync.md").read_text()
    assert "| recorded at the matcher / distinct / lost | 300 / 300 / 0 |" in report
    assert "correct: True" in report

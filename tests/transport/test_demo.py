"""The README's main job: broker, matcher and edge as real processes, then nothing left."""
from __future__ import annotations

import os
import subprocess
import sys


def test_demo_runs_end_to_end_and_leaves_no_process(tmp_path):
    site = tmp_path / "demo-site"
    result = subprocess.run([sys.executable, "-m", "appliance", "demo", "--enroll", "2", "--unknown", "1",
                             "--site", str(site)], capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    lines = result.stdout.splitlines()
    passes = [line for line in lines if line.startswith("door-1: ") and "<-" in line]
    assert len(passes) == 5  # 2 enrolled, 1 stranger, 2 photo attacks
    assert all("ATTACK" in line for line in passes if line.endswith("photo attack"))
    assert all("ACCEPTED" not in line for line in passes if line.endswith("stranger"))
    assert "0 false accepts" in lines[-1] and "2 of 2 photo attacks raised an alarm" in lines[-1]
    for line in passes:  # a masked name at most, never a score
        assert "score" not in line and "0." not in line.split("<-")[0]
    left = subprocess.run(["pgrep", "-f", str(site)], capture_output=True, text=True)
    assert left.stdout.strip() == "", f"processes left behind: {left.stdout}"

"""The host's speed around a benchmark run: the reference workload's CPU time and the
hypervisor's steal, read from a ``/proc/stat`` the test writes."""
from __future__ import annotations

import pytest

from appliance.bench import host


def test_the_reference_workload_takes_cpu_time_and_refuses_no_work():
    assert host.reference_cpu_ms(repeats=3, rounds=20_000) > 0
    with pytest.raises(ValueError):
        host.reference_cpu_ms(repeats=0)


def test_steal_is_the_share_of_all_cpu_time_the_hypervisor_kept(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 0 50 800 10 0 5 35 7 0\ncpu0 50 0 25 400 5 0 2 18 3 0\n")
    before = host.cpu_times(stat)
    assert before == (100, 0, 50, 800, 10, 0, 5, 35)  # guest columns left out: counted in user already
    stat.write_text("cpu  400 0 150 1300 10 0 5 135 99 0\n")
    assert host.steal_share(before, host.cpu_times(stat)) == pytest.approx(100 / 1000)
    assert host.steal_share(before, before) is None  # no time passed
    stat.write_text("intr 1 2 3\n")  # not the all-CPU line: no figure rather than a wrong one
    assert host.cpu_times(stat) is None and host.steal_share(before, None) is None
    assert host.cpu_times(tmp_path / "missing") is None

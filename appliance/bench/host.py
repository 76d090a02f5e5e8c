"""How fast the shared host was around a benchmark run, so that runs of the same code on
different days can be told apart from a change in the code.

Issue 17's per-core figure moved between ~1,100 and ~2,000 requests/s for the same commit as the
machine's other tenants came and went; the load average says how busy the run made the machine,
not how fast a CPU second was. Two figures say that:

* ``reference_cpu_ms``: the CPU time of a fixed interpreter-bound workload (small dicts, integer
  arithmetic, short strings: what the replica's Python does between its C calls), the median of
  a few repeats, taken just before and just after the run. A slower figure means every CPU second
  of the run did less work - caches and memory bandwidth shared with other virtual machines.
* ``steal_share``: the part of the CPUs' time the hypervisor gave to others during the run
  (``/proc/stat``'s steal column): time the run waited for, not time it spent.

Only the standard library: nothing here depends on what is being measured.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

PROC_STAT = Path("/proc/stat")
# the columns of the all-CPU line up to steal; guest and guest_nice after it are counted in user and nice
COLUMNS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
STEAL = COLUMNS.index("steal")
REFERENCE_REPEATS = 7
REFERENCE_ROUNDS = 80_000  # ~50 ms of CPU on the 2-CPU development machine
MS_PER_S = 1000.0


def _reference_once(rounds: int) -> int:
    """The fixed workload; returns a checksum so that nothing can be optimised away."""
    total, seen = 0, {}
    for number in range(rounds):
        key = f"door-{number % 97:03d}"
        seen[key] = seen.get(key, 0) + (number * number) % 1_009
        total += len(key) + seen[key]
    return total


def reference_cpu_ms(repeats: int = REFERENCE_REPEATS, rounds: int = REFERENCE_ROUNDS) -> float:
    """Median CPU milliseconds of the fixed workload on this thread (lower: a faster host now)."""
    if repeats < 1 or rounds < 1:
        raise ValueError(f"reference workload needs repeats and rounds, not {repeats} x {rounds}")
    times = []
    for _ in range(repeats):
        start = time.thread_time()
        _reference_once(rounds)
        times.append((time.thread_time() - start) * MS_PER_S)
    return statistics.median(times)


def cpu_times(stat: Path = PROC_STAT) -> tuple[int, ...] | None:
    """The all-CPU line of ``/proc/stat`` (clock ticks per column), None where there is none."""
    try:
        first = stat.read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if not first or first[0] != "cpu" or len(first) <= len(COLUMNS):
        return None
    return tuple(int(value) for value in first[1:len(COLUMNS) + 1])


def steal_share(before: tuple[int, ...] | None, after: tuple[int, ...] | None) -> float | None:
    """The share of all CPU time between two ``cpu_times`` the hypervisor gave to others, or None."""
    if before is None or after is None:
        return None
    spent = [later - earlier for earlier, later in zip(before, after)]
    total = sum(spent)
    return spent[STEAL] / total if total > 0 else None

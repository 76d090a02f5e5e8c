"""A ``bench load`` run in thirds: the middle one (the flood's) against the two around it.

A flood run compares the doors' p95 during the middle third with the rest of the same run, but
on a shared machine the rest moves too. So every run, flood or not, is read at the thirds'
boundaries: the doors' p95 in each, how far apart the two outer ones are (the control), and the
replica's own CPU per request and p95 in each (a replica that grew slower as it ran shows as a
rising row). A ``--no-flood`` run gives the same ratios with nothing in the middle.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from appliance.bench.probes import Timing
from appliance.workers import Sojourns

Reading = tuple[float, int, list[int]]  # the process's CPU seconds, requests handled, sojourn counts


class Marks:
    """Readings of the replica at given epoch times (the middle third's start and end), taken
    on timer threads while the bench's main thread waits for the doors."""

    def __init__(self, worker, times: tuple[float, ...], cpu_s: Callable[[], float]):
        self.readings: list[Reading] = []
        self._worker, self._cpu_s = worker, cpu_s
        self._timers = [threading.Timer(max(0.0, at - time.time()), self._read) for at in times]
        for timer in self._timers:
            timer.start()

    def now(self) -> Reading:
        return self._cpu_s(), self._worker.handled, list(self._worker.sojourns.counts)

    def _read(self) -> None:
        self.readings.append(self.now())

    def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()


def doors_by_third(samples: list[list], began: float, ended: float) -> dict[str, float]:
    """The doors' p95 before, during and after the middle third (the flood's, or where it would
    be); ``middle_ratio``: the middle's over the rest (a flood's effect; with no flood, the host's
    own change over the run); ``control_ratio``: the larger of the two outer thirds' over the
    smaller, how much two stretches with no flood in the same run differ (nan where one is empty)."""
    def p95(keep) -> float:
        return Timing([sample[1] for sample in samples if keep(sample[0])]).p95  # nan when none

    before, middle, after = p95(lambda t: t < began), p95(lambda t: began <= t <= ended), p95(lambda t: t > ended)
    rest = p95(lambda t: not began <= t <= ended)
    return {"p95_before_ms": before, "p95_middle_ms": middle, "p95_after_ms": after, "p95_rest_ms": rest,
            "middle_ratio": middle / rest, "control_ratio": max(before / after, after / before)}


@dataclass(frozen=True)
class Third:
    """What the replica did between two readings."""

    cpu_s: float
    handled: int
    sojourns: Sojourns  # its own time per request (read off the connection to the end of its batch)


def cut(start: Reading, marks: Marks, end: Reading) -> list[Third] | None:
    """The run cut at the marks into the thirds before, during and after the middle (None when a
    reading is missing)."""
    if len(marks.readings) != 2:
        return None
    points = [start, *sorted(marks.readings), end]
    return [Third(cpu_b - cpu_a, handled_b - handled_a, Sojourns(counts=counts_b).since(counts_a))
            for (cpu_a, handled_a, counts_a), (cpu_b, handled_b, counts_b) in zip(points, points[1:])]


def replica_by_third(thirds: list[Third]) -> dict[str, list[float]]:
    """The replica's CPU ms per request, requests handled and own p95 in each third."""
    return {"ms_per_request": [t.cpu_s / t.handled * 1000 if t.handled > 0 else float("nan") for t in thirds],
            "handled": [t.handled for t in thirds],
            "in_replica_p95_ms": [t.sojourns.percentile_ms(95) for t in thirds]}


def outside(thirds: list[Third]) -> dict | None:
    """CPU per request over the two outer thirds: the run less the flood's (None when empty)."""
    cpu, requests = thirds[0].cpu_s + thirds[2].cpu_s, thirds[0].handled + thirds[2].handled
    if cpu <= 0 or requests <= 0:
        return None
    return {"cpu_s": cpu, "handled": requests, "ms_per_request": cpu / requests * 1000, "per_core": requests / cpu}


def in_replica_by_flood(run: Sojourns, thirds: list[Third]) -> dict:
    """The replica's own p95 during the flood third and over the rest of the run (its drain
    included): tells the replica's share of the doors' change from the broker's and the machine's."""
    during = thirds[1].sojourns
    rest = Sojourns(counts=[total - flood for total, flood in zip(run.counts, during.counts)])
    return {"during_p95_ms": during.percentile_ms(95), "rest_p95_ms": rest.percentile_ms(95)}

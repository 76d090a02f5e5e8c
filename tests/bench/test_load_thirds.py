"""The thirds a ``bench load`` run is read in (``bench.load_thirds``), on made-up readings."""
from __future__ import annotations

import math

from appliance.bench import load_thirds
from appliance.workers import Sojourns


def test_the_flood_ratio_is_read_beside_the_spread_of_the_two_thirds_without_it():
    """Samples (sent, ms): 10 ms before the middle third, 30 in it, 20 after."""
    samples = [[t, 10.0 if t < 10 else 30.0 if t < 20 else 20.0] for t in range(30)]
    thirds = load_thirds.doors_by_third(samples, 10, 19.5)
    assert (thirds["p95_before_ms"], thirds["p95_middle_ms"], thirds["p95_after_ms"]) == (10.0, 30.0, 20.0)
    assert thirds["p95_rest_ms"] == 20.0 and thirds["middle_ratio"] == 1.5
    assert thirds["control_ratio"] == 2.0  # the larger outer third over the smaller, either way round
    assert math.isnan(load_thirds.doors_by_third(samples[:15], 10, 19.5)["control_ratio"])  # no third after


class _Worker:
    def __init__(self):
        self.handled, self.sojourns = 0, Sojourns(buckets=200)


def test_the_replica_is_read_in_each_third_from_readings_at_the_boundaries():
    """A replica whose CPU per request and own delay grow over the run shows it third by third."""
    worker, cpu = _Worker(), [0.0]
    marks = load_thirds.Marks(worker, (), lambda: cpu[0])  # no timers: readings taken by hand below
    start = marks.now()
    for ms_per_request, delay_s in ((0.5, 0.010), (0.6, 0.020), (0.8, 0.040)):
        for _ in range(1000):
            worker.sojourns.record(delay_s)
        worker.handled += 1000
        cpu[0] += ms_per_request
        marks.readings.append(marks.now())
    end = marks.readings.pop()
    third = load_thirds.replica_by_third(load_thirds.cut(start, marks, end))
    assert third["handled"] == [1000, 1000, 1000]
    assert [round(ms, 6) for ms in third["ms_per_request"]] == [0.5, 0.6, 0.8]
    assert third["in_replica_p95_ms"] == [11, 21, 41]  # the upper edges of the 1 ms buckets
    marks.readings.pop()
    assert load_thirds.cut(start, marks, end) is None  # a reading missing: no thirds

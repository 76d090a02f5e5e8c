"""The matcher benchmark's code path on small sizes, and the load test of issue 12 bounded:
a few doors at a steady pace while one device floods, on the real broker (loopback only, it
stops by itself). Its one timing assertion is a ratio of two medians of the same run."""
from __future__ import annotations

from appliance.bench import flood_load, matcher_bench

DOORS, RATE_PER_S, SECONDS = 4, 5.0, 12.0  # 240 requests; the flood runs for the middle 4 s
FLOOD_RATE_PER_S = flood_load.FLOOD_RATE_PER_S  # the benchmark's flood: before the fix the doors waited ~1 s
GALLERY = 1_000
LATENCY_FACTOR = 3.0  # the doors' median during the flood, at most this times the rest of the run


def test_matcher_benchmark_writes_its_report(tmp_path):
    search = matcher_bench.search_benchmark((1_000, 5_000), queries=3)
    assert [row["gallery"] for row in search] == [1_000, 5_000]
    assert all(row["ours_median_ms"] > 0 and row["memory_mib"] > 0 for row in search)
    throughput = matcher_bench.throughput_benchmark(devices=2, per_device=2, gallery_size=500, with_load_test=False)
    assert throughput["many_devices"]["requests"] == 4
    assert throughput["matcher_stats"]["rejected"] == 6  # 2 sequential + 4 parallel, all searched
    door = matcher_bench.door_latency_benchmark(passes=2)
    assert door["passes"] >= 1 and door["latency_median_ms"] > 0
    written = matcher_bench.write_report(search, throughput, door, tmp_path)
    text = written["markdown"].read_text()
    assert "1:N exact search" in text and "Face in view" in text
    assert written["plot"].read_bytes()[:4] == b"\x89PNG"


def test_doors_keep_their_latency_while_one_device_floods(tmp_path):
    load = flood_load.load_test(devices=DOORS, rate_per_s=RATE_PER_S, seconds=SECONDS,
                                flood_rate_per_s=FLOOD_RATE_PER_S, gallery_size=GALLERY)
    alone, during, flooder = load["alone"], load["flood"], load["flooder"]
    assert alone["unanswered"] == during["unanswered"] == 0  # every door's request answered at its first attempt
    assert alone["asked"] > 0 and during["asked"] > 0
    assert during["median_ms"] <= LATENCY_FACTOR * alone["median_ms"], load
    sent = sum(flooder["sent"].values())
    assert sent > FLOOD_RATE_PER_S  # it did flood (well over one second's worth)
    assert flooder["dropped_unopened"] > sent // 2 and flooder["alarms"] >= 1
    lines = flood_load.report_lines(load)
    assert any("during the flood" in line for line in lines) and any("dropped unopened" in line for line in lines)

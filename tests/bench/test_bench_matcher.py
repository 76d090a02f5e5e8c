"""The matcher benchmark's code path on small sizes (no timing assertions)."""
from __future__ import annotations

from appliance.bench import matcher_bench


def test_matcher_benchmark_writes_its_report(tmp_path):
    search = matcher_bench.search_benchmark((1_000, 5_000), queries=3)
    assert [row["gallery"] for row in search] == [1_000, 5_000]
    assert all(row["ours_median_ms"] > 0 and row["memory_mb"] > 0 for row in search)
    throughput = matcher_bench.throughput_benchmark(devices=2, per_device=2, gallery_size=500)
    assert throughput["many_devices"]["requests"] == 4
    assert throughput["matcher_stats"]["rejected"] == 6  # 2 sequential + 4 parallel, all searched
    door = matcher_bench.door_latency_benchmark(passes=2)
    assert door["passes"] >= 1 and door["latency_median_ms"] > 0
    written = matcher_bench.write_report(search, throughput, door, tmp_path)
    text = written["markdown"].read_text()
    assert "1:N exact search" in text and "Face in view" in text
    assert written["plot"].read_bytes()[:4] == b"\x89PNG"

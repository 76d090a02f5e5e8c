"""The pipeline benchmark runs end to end on a handful of frames; no timing assertions here.

Speed targets are judged in the benchmark report (``appliance bench pipeline``), never in a
timed unit test: these tests only check that the report is produced and well formed.
"""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from appliance.bench.frames import FRAME_HEIGHT, FRAME_WIDTH, synthesize_frames
from appliance.bench.pipeline_bench import Latency, run_benchmark
from appliance.bench.report import OURS_STAGES, PEER_STAGES, write_report
from appliance.bench.worker import OURS, PEER
from appliance.cli.main import build_parser
from appliance.errors import ApplianceError

FEW_FRAMES = 5
WARMUP = 1


def test_frames_are_deterministic_distinct_jpegs_of_camera_size(shared):
    first, again = synthesize_frames(3, seed=7), synthesize_frames(3, seed=7)
    assert first.digest == again.digest
    assert len(set(first.frames)) == 3 and len(set(first.sources)) == 3
    assert synthesize_frames(3, seed=8).digest != first.digest
    image = cv2.imdecode(np.frombuffer(first.frames[0], np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (FRAME_HEIGHT, FRAME_WIDTH, 3)


def test_latency_skips_frames_where_a_stage_did_not_run():
    latency = Latency.of([1.0, None, 3.0])
    assert latency.count == 2 and latency.median_ms == 2.0 and latency.p95_ms <= 3.0
    assert Latency.of([None]) is None


def test_bad_settings_are_refused(shared):
    with pytest.raises(ApplianceError):
        run_benchmark(frames=2, warmup=3)
    with pytest.raises(ApplianceError):
        run_benchmark(frames=2, threads=(64,))


def test_bench_pipeline_is_a_subcommand_of_the_bench_group():
    args = build_parser().parse_args(["bench", "pipeline", "--frames", "3", "--threads", "1"])
    assert args.frames == 3 and args.threads == [1] and callable(args.handler)


@pytest.fixture(scope="module")
def report(shared, tmp_path_factory):
    result = run_benchmark(frames=FEW_FRAMES, threads=(1, 2), warmup=WARMUP)
    out = tmp_path_factory.mktemp("bench")
    return result, write_report(result, out)


def test_every_configuration_is_measured_with_positive_numbers(report):
    result, _ = report
    assert {(r.implementation, r.threads) for r in result.runs} == {(OURS, 1), (OURS, 2), (PEER, 1), (PEER, 2)}
    for run in result.runs:
        assert run.frames == FEW_FRAMES and len(run.total_ms) == FEW_FRAMES
        assert run.total.median_ms > 0 and run.total.p95_ms >= run.total.median_ms
        assert run.frames_per_s > 0 and run.peak_rss_mib > 0
        assert run.stages["decode"].median_ms > 0
    ours = result.run(OURS, 2)
    assert ours.faces_found > 0
    assert all(ours.stages[stage] is not None for stage in OURS_STAGES)
    assert result.run(OURS, 1).cpus != ours.cpus  # the 1-thread run is pinned to one CPU
    assert all(ratio > 0 for ratio in result.speedups().values())


def test_report_files_hold_the_tables_plot_and_json(report):
    result, files = report
    assert {"markdown", "plot", "json"} == set(files)
    assert files["plot"].read_bytes().startswith(b"\x89PNG")
    text = files["markdown"].read_text(encoding="utf-8")
    for heading in ("## Targets", "## Whole frame", "## Speed-up", "## Appliance per stage",
                    "## face_recognition per stage", "## Method"):
        assert heading in text
    for stage in OURS_STAGES + PEER_STAGES:
        assert f"| {stage} |" in text
    assert "| 1T median ms | 1T p95 ms | 2T median ms | 2T p95 ms |" in text
    assert f"]({files['plot'].name})" in text
    data = json.loads(files["json"].read_text(encoding="utf-8"))
    assert len(data["runs"]) == len(result.runs)
    assert data["settings"]["frames_digest"] and data["machine"]["cpu"]
    assert set(data["targets"]) == {"median_ms", "speedup"}

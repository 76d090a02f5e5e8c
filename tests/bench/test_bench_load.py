"""``appliance bench load`` end to end on a small scale: a few doors in their own processes on
the real broker (mutual TLS, envelopes) against one full replica, the mixed stream, a flooding
device, and the report. Loopback only; it stops by itself. Timing is not asserted (the machine
is shared): every request must be answered with the answer its kind of pass must get."""
from __future__ import annotations

import json

import pytest

import numpy as np

from appliance.bench import load, load_devices, load_report
from appliance.bench.load_mix import ATTACK, CATCH_UP, ENROLLED, STRANGER, THRESHOLD, Mix
from appliance.bench.profile_matcher import NETWORK_ROLE, REQUEST_BATCHES
from appliance.protocol.fields import read_template
from appliance.cli.main import main
from appliance.config import MatcherConfig

DOORS, RATE_PER_S, SECONDS, PROCESSES, GALLERY = 4, 20.0, 4.0, 2, 2_000
SHARES = {ENROLLED: 0.5, STRANGER: 0.25, ATTACK: 0.15, CATCH_UP: 0.10}


def test_bench_load_answers_every_kind_of_pass_and_writes_its_report(tmp_path):
    result = load.run_load(devices=DOORS, rate_per_s=RATE_PER_S, seconds=SECONDS, processes=PROCESSES,
                           gallery_size=GALLERY, shares=SHARES, stage_sample_every=1)  # a short run: every batch
    assert result["unanswered"] == 0 and result["wrong_answers"] == 0 and result["errors"] == 0, result["reasons"]
    assert set(result["per_kind"]) == {ENROLLED, STRANGER, ATTACK}  # each kind was asked and answered right
    assert result["reasons"]["liveness_failed"] == result["per_kind"][ATTACK]["answered"]
    assert result["events_sent"] > 0 and result["events_acknowledged"] == result["events_sent"]  # recorded once
    assert result["handled"] >= result["answered"] and result["cpu_s"]["matcher"] > 0
    assert min(result["doors_frozen_objects"]) > 10_000  # each door process settled its start-up heap (~55k)
    assert result["stages_cpu_us"]["search"] > 0 and result["stages_cpu_us"]["open"] > 0
    network_switches = result["matcher_threads_switches"][NETWORK_ROLE]  # it waits for traffic between passes
    assert network_switches[0] > 0 and network_switches[1] >= 0
    threads = result["matcher_threads_cpu_s"]  # the request batches the network thread ran, as a row of their own
    assert threads[REQUEST_BATCHES] > 0 and threads[NETWORK_ROLE] > 0 and "request worker" not in threads
    flood = result["flood"]
    assert sum(flood["sent"].values()) > 0 and flood["alarms"] >= 1  # the flood was muted and on record
    written = load_report.write_report(result, tmp_path)
    text = written["markdown"].read_text()
    assert result["stages_sampled"] == {"every": 1, "requests": result["stages_sampled"]["requests"]}
    assert result["stages_sampled"]["requests"] >= result["handled"] and "timed in one batch in 1 " in text
    assert "Where the matcher's time goes" in text and "flooding" in text and "| switches waited |" in text
    thirds = result["thirds"]  # the flood's ratio, and beside it how much two unflooded thirds differ
    assert flood["p95_ratio"] == thirds["middle_ratio"] and thirds["control_ratio"] >= 1.0
    assert "neither flooded" in text and "Read the flood's ratio beside this run's control" in text
    by_third = result["replica_by_third"]  # read at the thirds' boundaries: they add up to the run
    outer = result["outside_flood"]["handled"]  # the run's requests less the middle third's
    assert by_third["handled"][0] + by_third["handled"][2] == outer and sum(by_third["handled"]) <= result["handled"]
    assert all(ms > 0 for ms in by_third["ms_per_request"]) and "third by third" in text
    unflooded = {key: value for key, value in result.items() if key != "flood"}  # the report of a --no-flood run
    assert "## The middle third with no flood (control)" in load_report.markdown(unflooded, {}, None)
    quiet = result["outside_flood"]  # the verify stream's own cost, the flood's third apart
    assert 0 < quiet["handled"] < result["handled"] and quiet["per_core"] == result["targets"]["per_core"]["measured"]
    assert "Outside the flood third" in text
    assert result["audit_log"]["verified"] and result["further_replicas"] == []  # the bench's own replica alone
    assert all(ms > 0 for ms in result["host"]["reference_cpu_ms"]) and "fixed reference workload took" in text
    gather = MatcherConfig().request_gather_ms  # the replica is wired as ``appliance matcher`` wires it
    assert result["queue"]["gather_ms"] == gather and f"waits up to {gather:.0f} ms for company" in text
    inside = result["queue"]["in_replica_ms"]  # the replica's share of the round trip, beside the door's
    assert 1 <= inside["p50"] <= inside["p95"] <= inside["p99"] and "in the replica (1 ms buckets)" in text
    assert json.loads(written["json"].read_text())["result"]["answered"] == result["answered"]
    if "plot" in written:
        assert written["plot"].read_bytes()[:4] == b"\x89PNG"


def test_two_replicas_on_one_host_share_the_doors_and_write_one_audit_chain(tmp_path):
    """The second in a process of its own, on the same stores and audit log (``appliance-matcher@NAME``)."""
    result = load.run_load(devices=DOORS, rate_per_s=RATE_PER_S, seconds=SECONDS, processes=PROCESSES,
                           gallery_size=GALLERY, shares=SHARES, flood=False, replicas=2)
    assert result["errors"] == 0 and result["events_acknowledged"] == result["events_sent"], result["reasons"]
    [second] = result["further_replicas"]
    assert second["name"] == "matcher-2" and second["handled"] > 0 and result["handled"] > 0  # both served
    assert second["handled"] + result["handled"] >= result["answered"] and second["cpu_s"] > 0
    audit = result["audit_log"]  # the decisions of both, group-committed by two processes, in one chain
    assert audit["verified"] and audit["entries"] >= result["answered"], audit
    text = load_report.write_report(result, tmp_path)["markdown"].read_text()
    assert "## Replicas on this host" in text and "| matcher-2 |" in text and "2 matcher replicas" in text
    assert "written by 2 replicas" in text and "verified: one unbroken chain" in text


def test_the_rate_counts_requests_and_catch_ups_come_on_top():
    assert Mix(SHARES, GALLERY).request_share == 0.9  # a door makes 1 / 0.9 passes per request asked
    assert Mix({CATCH_UP: 1.0}, GALLERY).request_share == 1.0  # nothing asks: the rate is the passes'


def test_the_doors_probe_pool_gets_each_kind_its_answer_and_does_not_repeat_one_probe():
    mix = Mix(SHARES, GALLERY)
    pool = load_devices.probe_pool(mix, seed=7)
    gallery = mix.gallery()
    for kind, matched in ((ENROLLED, True), (ATTACK, True), (STRANGER, False)):
        probes = np.stack([read_template(packed, "probe") for packed in pool[kind]])
        assert len(set(pool[kind])) == load_devices.PROBE_POOL  # all different
        best = (probes @ gallery.T).max(axis=1)
        assert bool((best >= THRESHOLD).all()) is matched and bool((best < THRESHOLD).all()) is not matched


def test_bench_load_refuses_a_run_of_no_length(capsys):
    with pytest.raises(SystemExit) as excinfo:  # argparse refuses it, before anything starts
        main(["bench", "load", "--seconds", "0"])
    assert excinfo.value.code == 2
    assert "argument --seconds: 0 is not a number above 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as excinfo:
        main(["bench", "load", "--replicas", "9"])
    assert excinfo.value.code == 2 and "argument --replicas: invalid choice: 9" in capsys.readouterr().err


def test_the_plots_p95_axis_is_not_flattened_by_the_first_second():
    seconds, p95 = [0, 1, 2, 3], [321.0, 40.0, 95.0, 52.0]
    top, off_scale = load_report.p95_scale(seconds, p95)
    assert top == load_report.P95_AXIS_HEADROOM * load.TARGET_P95_MS  # the target, not the start-up spike
    assert off_scale == [(0, 321.0)]  # marked at the top with its value
    top, off_scale = load_report.p95_scale(seconds, [40.0, 150.0, 95.0, 52.0])
    assert top == load_report.P95_AXIS_HEADROOM * 150.0 and off_scale == []  # a slow second later on is in scale


def test_the_rate_is_over_the_time_the_doors_took_not_the_nominal_length():
    """Doors short of CPU fall behind and make their late passes after the nominal end: the rate
    counts those seconds too, and the timeline shows them."""
    samples = [[1000.0 + second + 0.5, 20.0, 0, True] for second in range(70)]  # one a second for 70 s
    span = load._span_s(samples, 60.0)
    assert span == pytest.approx(69.02)
    timeline = load._timeline(samples, 60.0)
    assert len(timeline) == 70 and sum(row[1] for row in timeline) == len(samples)
    assert load._span_s(samples[:10], 60.0) == 60.0  # never shorter than the run

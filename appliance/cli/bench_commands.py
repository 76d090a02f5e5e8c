"""Benchmark commands: ``bench pipeline`` (more benchmarks join the ``bench`` group)."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from appliance import paths
from appliance.bench import MAX_LOAD_REPLICAS
from appliance.cli.arg_types import non_negative_int, positive_float, positive_int

DEFAULT_OUT = paths.reports_dir() / "bench"
GLOBAL_OPTIONS = ("config", "debug")  # accepted after the benchmark's name too


def bench_group(sub: argparse._SubParsersAction) -> Callable[..., argparse.ArgumentParser]:
    """An ``add_parser`` for the shared ``bench`` group (created by whichever module comes first).

    Each benchmark parser also gets the global ``--config``/``--debug`` options that the
    top-level command gave the group, so they may follow the benchmark's name.
    """
    group = sub.choices.get("bench")
    if group is None:
        group = sub.add_parser("bench", help="benchmarks that write a report (tables, plot, JSON)")
        group.add_subparsers(dest="benchmark", required=True, metavar="BENCHMARK")
    benchmarks = next(a for a in group._actions if isinstance(a, argparse._SubParsersAction))
    shared = [a for a in group._actions if a.dest in GLOBAL_OPTIONS]

    def add_parser(name: str, **kwargs) -> argparse.ArgumentParser:
        child = benchmarks.add_parser(name, **kwargs)
        child.description = child.description or kwargs.get("help")
        for action in shared:
            child._add_action(action)
        return child

    return add_parser


def register(sub: argparse._SubParsersAction) -> None:
    # a benchmark's defaults live in its module, imported by the handler: '--help' and every other
    # command stay fast (tests/cli/test_cli_startup.py holds the help texts to them)
    pipeline = bench_group(sub)(
        "pipeline", help="per-stage latency, frames/s and peak RSS, side by side with face_recognition (dlib)"
    )
    pipeline.add_argument("--frames", type=positive_int, help="measured 640x480 frames (default 240)")
    pipeline.add_argument("--threads", type=positive_int, nargs="+",
                          help="thread counts to measure, each pinned to as many CPUs (default 1 2)")
    pipeline.add_argument("--warmup", type=non_negative_int, help="untimed frames before measuring (default 10)")
    pipeline.add_argument("--seed", type=non_negative_int, default=0, help="seed of the synthetic frame layout "
                                                                           "(default %(default)s)")
    pipeline.add_argument("--no-peer", action="store_true", help="skip the face_recognition peer")
    pipeline.add_argument("--out", default=str(DEFAULT_OUT), help="report folder (pipeline.md/.png/.json) "
                                                                  "(default %(default)s)")
    pipeline.set_defaults(handler=cmd_bench_pipeline)

    matcher = bench_group(sub)(
        "matcher", help="1:N search per gallery size vs FAISS, matcher requests/s on the broker, door latency"
    )
    sizes = [1_000, 10_000, 100_000, 1_000_000]
    matcher.add_argument("--sizes", type=positive_int, nargs="+", default=sizes,
                         help="gallery sizes of random templates, each searched 1:N by ours and FAISS "
                              f"(default {' '.join(map(str, sizes))})")
    matcher.add_argument("--devices", type=positive_int, default=50, help="simulated devices on the broker "
                                                                          "(default %(default)s)")
    matcher.add_argument("--requests", type=positive_int, default=20, help="requests per device (default %(default)s)")
    matcher.add_argument("--passes", type=positive_int, default=20, help="door passes for the latency figure "
                                                                         "(default %(default)s)")
    matcher.add_argument("--out", default=str(DEFAULT_OUT), help="report folder (matcher.md/.png/.json) "
                                                                 "(default %(default)s)")
    matcher.set_defaults(handler=cmd_bench_matcher)

    sync = bench_group(sub)(
        "sync", help="enrollment sync to a fresh device, catch-up, offline outbox survival and drain"
    )
    sync.add_argument("--enrollments", type=positive_int, default=10_000, help="templates synced to a fresh device "
                                                                               "(default %(default)s)")
    sync.add_argument("--changes", type=positive_int, default=1_000, help="changes made while the device is offline "
                                                                          "(default %(default)s)")
    sync.add_argument("--events", type=positive_int, default=50_000, help="events queued offline, then drained "
                                                                          "(default %(default)s)")
    sync.add_argument("--out", default=str(DEFAULT_OUT), help="report folder (sync.md/.json) (default %(default)s)")
    sync.set_defaults(handler=cmd_bench_sync)

    search = bench_group(sub)(
        "search", help="1:N search at scale: exact float32, FAISS flat and the gallery index, recall and decisions"
    )
    search.add_argument("--size", type=positive_int,
                        help="gallery size, celeba-dev padded with distractors (default 1000000)")
    search.add_argument("--dataset", help="labelled face folder (default: the shared celeba-dev)")
    search.add_argument("--timed", type=positive_int,
                        help="single-probe searches timed per method and thread count (default 200)")
    search.add_argument("--threads", type=positive_int, nargs="+", help="thread counts to measure (default 1 2)")
    search.add_argument("--out", default=str(paths.reports_dir() / "bench-search"), help="report folder (search.*) "
                                                                                         "(default %(default)s)")
    search.set_defaults(handler=cmd_bench_search)

    load = bench_group(sub)(
        "load", help="doors in their own processes against one matcher on the real broker: requests/s, "
                     "p50/p95/p99, errors, CPU per request, profile, one device flooding"
    )
    load.add_argument("--devices", type=positive_int, help="provisioned simulated doors (default 100)")
    load.add_argument("--rate", type=positive_float,
                      help="match requests per second from all doors together (default 1050)")
    load.add_argument("--seconds", type=positive_float, help="length of the run (default 60)")
    load.add_argument("--processes", type=positive_int, help="door processes (default 2)")
    load.add_argument("--device-niceness", type=int, choices=range(0, 20), metavar="0-19",
                      help="niceness of the simulated devices' processes (default 5: the matcher and broker first)")
    load.add_argument("--gallery", type=positive_int, help="synthetic gallery size (default 10000)")
    load.add_argument("--no-flood", action="store_true", help="without the flooding device")
    load.add_argument("--replicas", type=int, choices=range(1, MAX_LOAD_REPLICAS + 1), metavar=f"1-{MAX_LOAD_REPLICAS}",
                      help="matcher replicas on this host: the bench's own (profiled) and more in processes of "
                           "their own on the same stores, as appliance-matcher@NAME runs them (default 1)")
    load.add_argument("--out", default=str(paths.reports_dir() / "bench-load"), help="report folder (load.*) "
                                                                                     "(default %(default)s)")
    load.set_defaults(handler=cmd_bench_load)


def cmd_bench_pipeline(args: argparse.Namespace) -> int:
    from appliance.bench.pipeline_bench import (DEFAULT_FRAMES, DEFAULT_THREADS, DEFAULT_WARMUP, MIN_REPORTED_FRAMES,
                                                run_benchmark)
    from appliance.bench.report import write_report

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    frames = DEFAULT_FRAMES if args.frames is None else args.frames
    if frames < MIN_REPORTED_FRAMES:
        progress(f"note: {frames} frames is below the {MIN_REPORTED_FRAMES} the issue asks for")
    result = run_benchmark(frames, tuple(args.threads or DEFAULT_THREADS),
                           DEFAULT_WARMUP if args.warmup is None else args.warmup, args.seed, not args.no_peer,
                           args.config, progress)
    files = write_report(result, Path(args.out))
    for run in sorted(result.runs, key=lambda r: (r.implementation, r.threads)):
        print(f"{run.label}: median {run.total.median_ms:.1f} ms, p95 {run.total.p95_ms:.1f} ms, "
              f"{run.frames_per_s:.1f} frames/s, peak RSS {run.peak_rss_mib:.0f} MiB")
    for threads, ratio in result.speedups().items():
        print(f"speed-up over face_recognition, {threads} thread(s): {ratio:.2f}x")
    met = all(t["met"] for t in result.targets().values())
    print(f"targets {'met' if met else 'NOT met'}; report: {files['markdown']}")
    return 0


def cmd_bench_matcher(args: argparse.Namespace) -> int:
    from appliance.bench import matcher_bench

    print("1:N search ...", file=sys.stderr, flush=True)
    search = matcher_bench.search_benchmark(tuple(args.sizes))
    print("matcher requests on the broker ...", file=sys.stderr, flush=True)
    throughput = matcher_bench.throughput_benchmark(args.devices, args.requests)
    print("door latency ...", file=sys.stderr, flush=True)
    door = matcher_bench.door_latency_benchmark(args.passes)
    written = matcher_bench.write_report(search, throughput, door, Path(args.out))
    print(written["markdown"].read_text())
    return 0


def cmd_bench_sync(args: argparse.Namespace) -> int:
    from appliance.bench import sync_bench

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    results = sync_bench.run(args.enrollments, args.changes, args.events, progress)
    path = sync_bench.write_report(results, Path(args.out))
    print(path.read_text())
    return 0 if results["lost"] == 0 and results["catch_up_ok"] else 1


def cmd_bench_search(args: argparse.Namespace) -> int:
    from appliance.bench import search_bench, search_report

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    dataset = args.dataset or str(paths.shared_dir() / "data" / "faces" / "celeba-dev")
    progress(f"templates of {dataset} ...")
    evaluation = search_bench.evaluation_set(dataset, args.config)
    size = search_bench.DEFAULT_SIZE if args.size is None else args.size
    if size < len(evaluation.gallery_ids):  # the gallery holds every real enrolled template, then distractors
        print(f"error: --size {size} is below the {len(evaluation.gallery_ids)} real templates enrolled from "
              f"{dataset}", file=sys.stderr)
        return 2
    results = search_bench.run(evaluation, size,
                               tuple(args.threads or search_bench.THREAD_COUNTS),
                               search_bench.TIMED_PROBES if args.timed is None else args.timed, progress)
    files = search_report.write_report(results, Path(args.out))
    print(files["markdown"].read_text())
    return 0 if search_report.targets_met(results) else 1


def cmd_bench_load(args: argparse.Namespace) -> int:
    from appliance.bench import load, load_report

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    chosen = {"devices": args.devices, "rate_per_s": args.rate, "seconds": args.seconds,
              "processes": args.processes, "gallery_size": args.gallery, "replicas": args.replicas}
    if args.device_niceness is not None:
        chosen["niceness"] = args.device_niceness
    result = load.run_load(**{k: v for k, v in chosen.items() if v is not None}, flood=not args.no_flood,
                           progress=progress)
    files = load_report.write_report(result, Path(args.out))
    print(files["markdown"].read_text())
    return 0 if result["errors"] == 0 and result["audit_log"]["verified"] else 1

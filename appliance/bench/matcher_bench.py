"""Matcher and end-to-end benchmarks (the issue-5 figures), written as a report.

* 1:N exact search time per query for galleries of 1k, 10k, 100k and 1M synthetic 512-d
  templates: our float32 matrix-vector search side by side with FAISS ``IndexFlatIP`` (the
  usual exact-search library) in the same run;
* matcher request throughput on the real broker: one device in sequence, then 50 simulated
  devices (each its own TLS connection, keys and envelopes, in a separate load-generator
  process) at once;
* the load test of issue 12 (``flood_load``): doors at a steady target rate while one
  provisioned device floods for the middle third of the run;
* face-in-view to actuator latency of the edge daemon with the matcher on loopback.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from appliance.bench import flood_load
from appliance.bench.probes import DIMENSION, PACK, Timing, probe, random_templates
from appliance.matching import Gallery
from appliance.vision.templates import Template

GALLERY_SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUERIES = 50
UNLIMITED = 10**9  # a request budget that never binds


def search_benchmark(sizes: tuple[int, ...] = GALLERY_SIZES, queries: int = QUERIES, seed: int = 0) -> list[dict]:
    """Median/p95 ms per single-probe 1:N search, ours and FAISS, per gallery size."""
    try:
        import faiss
    except ImportError:  # the peer is optional; the report says so
        faiss = None
    probes = random_templates(queries, seed + 1)
    rows = []
    for size in sizes:
        vectors = random_templates(size, seed)
        gallery = Gallery(*PACK, DIMENSION)
        gallery.load([f"s{i}" for i in range(size)], vectors)
        ours = Timing()
        for vector in probes:
            start = time.perf_counter()
            gallery.best(Template(vector, *PACK))
            ours.samples_ms.append((time.perf_counter() - start) * 1000)
        row = {"gallery": size, "ours_median_ms": ours.median, "ours_p95_ms": ours.p95,
               "memory_mib": vectors.nbytes / 2**20}
        if faiss is not None:
            index = faiss.IndexFlatIP(DIMENSION)
            index.add(vectors)
            peer = Timing()
            for vector in probes:
                start = time.perf_counter()
                index.search(vector[None, :], 1)
                peer.samples_ms.append((time.perf_counter() - start) * 1000)
            row.update(faiss_median_ms=peer.median, faiss_p95_ms=peer.p95)
            del index
        rows.append(row)
        del gallery, vectors
    return rows


def throughput_benchmark(devices: int = 50, per_device: int = 20, gallery_size: int = 10_000,
                         with_load_test: bool = True) -> dict:
    """Requests/s through the real broker and one matcher replica; with the load test of
    ``flood_load`` (steady doors with and without a flood) under ``load_test``."""
    from appliance.edge.link import MatcherLink
    from appliance.matcher.app import compose
    from appliance.matcher.device_limits import Budget, Limits
    from appliance.matcher.loaded import LoadedGallery
    from appliance.matching import FailureTracker
    from appliance.site import Site

    names = tuple(f"bench-{i:02d}" for i in range(devices))
    with tempfile.TemporaryDirectory(prefix="appliance-bench-") as folder:
        site = Site(Path(folder))
        site.provision(names, matchers=("matcher-1",))
        keys = site.central_keys()
        gallery = Gallery(*PACK, DIMENSION)
        gallery.load([f"s{i}" for i in range(gallery_size)], random_templates(gallery_size, 3))
        loaded = LoadedGallery(gallery, {}, {})
        site.broker.start()
        # synthetic probes never match: lift the lock-out so every request is really searched;
        # this measures capacity, so no device's request budget holds it back either
        service = compose("matcher-1", site.mqtt("matcher-1"), keys, site.directory, loaded, 0.3,
                          tracker=FailureTracker(limit=flood_load.LOCKOUT_LIFTED),
                          limits=Limits(requests=Budget(UNLIMITED, UNLIMITED)))
        service.start()
        links = []
        try:
            link = MatcherLink(names[0], site.mqtt(names[0]), site.device_keys(names[0]), site.directory)
            link.connect()
            links.append(link)
            probes = random_templates(per_device, 9)
            single = Timing()
            start_all = time.perf_counter()
            for vector in probes:
                start = time.perf_counter()
                links[0].request(probe(names[0], vector), PACK, timeout=5.0)
                single.samples_ms.append((time.perf_counter() - start) * 1000)
            single_rps = per_device / (time.perf_counter() - start_all)
            load = subprocess.run(
                [sys.executable, "-m", "appliance.bench.device_load", folder, str(site.broker.port),
                 ",".join(names), str(per_device)], capture_output=True, text=True, timeout=600)
            if load.returncode != 0:
                raise RuntimeError(f"device load generator failed: {load.stderr[-2000:]}")
            result = json.loads(load.stdout)
            parallel, elapsed = Timing(result["samples_ms"]), result["elapsed_s"]
        finally:
            for link in links:
                link.close()
            service.stop()
            site.broker.stop()
    return {
        "gallery": gallery_size,
        "load_test": flood_load.load_test(gallery_size=gallery_size) if with_load_test else None,
        "one_device": {"requests": per_device, "requests_per_s": single_rps,
                       "round_trip_median_ms": single.median, "round_trip_p95_ms": single.p95},
        "many_devices": {"devices": devices, "requests": len(parallel.samples_ms), "failures": result["failures"],
                         "requests_per_s": len(parallel.samples_ms) / elapsed,
                         "round_trip_median_ms": parallel.median, "round_trip_p95_ms": parallel.p95},
        "matcher_stats": dict(service.stats),
    }


def door_latency_benchmark(passes: int = 20, burst: int = 3, seed: int = 0) -> dict:
    """Face in view -> actuator command, through the real pipeline, broker and matcher."""
    import random
    import shutil

    from appliance import paths
    from appliance.capture.images import read_image
    from appliance.capture.sources import FolderReplaySource
    from appliance.config import load_config
    from appliance.edge.daemon import EdgeDaemon, EdgeSettings
    from appliance.edge.link import MatcherLink
    from appliance.enrollment import enroll
    from appliance.evaluation.datasets import scan_identities
    from appliance.matcher.app import compose
    from appliance.matcher.loaded import LoadedGallery
    from appliance.pipeline import FacePipeline
    from appliance.site import Site

    config = load_config()
    pipeline = FacePipeline(config)
    pipeline.load()
    pack = pipeline.embedder_pack
    by_identity: dict[str, list[Path]] = {}
    for sample in scan_identities(paths.shared_dir() / "data" / "faces" / "celeba-dev", min_per_identity=7):
        by_identity.setdefault(sample.identity, []).append(sample.path)
    identities = sorted(by_identity)
    random.Random(seed).shuffle(identities)
    gallery = Gallery(pack.id, pack.version, pack.embedding_size or 0)
    probes = []
    for identity in identities[:passes]:
        result = enroll(pipeline, (read_image(p) for p in by_identity[identity][:5]))
        if result.enrolled:
            gallery.upsert(identity, result.template)
            probes.append(by_identity[identity][6])
    with tempfile.TemporaryDirectory(prefix="appliance-bench-") as folder:
        site = Site(Path(folder))
        site.provision(("door-1",), matchers=("matcher-1",))
        frames = Path(folder) / "frames"
        frames.mkdir()
        for index, image in enumerate(probes):
            for copy in range(burst):
                shutil.copy(image, frames / f"{index:03d}-{copy}{image.suffix}")
        site.broker.start()
        service = compose("matcher-1", site.mqtt("matcher-1"), site.central_keys(), site.directory,
                          LoadedGallery(gallery, {}, {}), pipeline.threshold)
        service.start()
        link = MatcherLink("door-1", site.mqtt("door-1"), site.device_keys("door-1"), site.directory)
        link.connect()
        try:
            daemon = EdgeDaemon(EdgeSettings("door-1", burst_frames=burst, cool_down_s=0.0), pipeline, link)
            records = daemon.run(FolderReplaySource(frames).frames())
        finally:
            link.close()
            service.stop()
            site.broker.stop()
            pipeline.close()
    latency = Timing([r.latency_ms for r in records if r.outcome in ("accepted", "rejected")])
    decision = Timing([r.stage_ms["decision"] for r in records if "decision" in r.stage_ms])
    return {"passes": len(records), "accepted": sum(r.outcome == "accepted" for r in records), "burst_frames": burst,
            "latency_median_ms": latency.median, "latency_p95_ms": latency.p95,
            "decision_round_trip_median_ms": decision.median, "decision_round_trip_p95_ms": decision.p95}


def write_report(search: list[dict], throughput: dict, door: dict, out_dir: Path) -> dict[str, Path]:
    import json

    from appliance.bench.pipeline_bench import machine_info
    from appliance.evaluation.plots import pyplot

    plt = pyplot()

    out_dir.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    lines = [
        "# Matcher and end-to-end benchmark", "",
        f"Machine: {info.get('cpu', '?')}, {info.get('cpus_available', '?')} CPUs; {info.get('date', '')}; "
        f"load average at start {info.get('load_average_start')}. Shared and noisy: "
        "medians and ratios of implementations measured side by side in the same run.", "",
        "## 1:N exact search, one probe, 512-d float32", "",
        "| gallery | ours median ms | ours p95 ms | FAISS IndexFlatIP median ms | p95 ms | ours / FAISS | matrix MiB |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in search:
        ratio = row["ours_median_ms"] / row["faiss_median_ms"] if row.get("faiss_median_ms") else float("nan")
        lines.append(f"| {row['gallery']:,} | {row['ours_median_ms']:.2f} | {row['ours_p95_ms']:.2f} | "
                     f"{row.get('faiss_median_ms', float('nan')):.2f} | {row.get('faiss_p95_ms', float('nan')):.2f} | "
                     f"{ratio:.2f} | {row['memory_mib']:.0f} |")
    one, many = throughput["one_device"], throughput["many_devices"]
    lines += [
        "", f"## Matcher requests on the real broker (TLS, envelopes, gallery of {throughput['gallery']:,})", "",
        "| clients | requests | requests/s | round trip median ms | p95 ms |", "|---|---:|---:|---:|---:|",
        f"| 1 device, sequential | {one['requests']} | {one['requests_per_s']:.0f} "
        f"| {one['round_trip_median_ms']:.1f} | {one['round_trip_p95_ms']:.1f} |",
        f"| {many['devices']} devices at once | {many['requests']} | {many['requests_per_s']:.0f} "
        f"| {many['round_trip_median_ms']:.1f} | {many['round_trip_p95_ms']:.1f} |",
        *flood_load.report_lines(throughput.get("load_test")),
        "", "## Face in view -> actuator (edge daemon, matcher on loopback)", "",
        f"{door['passes']} passes of {door['burst_frames']} frames each ({door['accepted']} accepted): "
        f"median **{door['latency_median_ms']:.0f} ms**, p95 {door['latency_p95_ms']:.0f} ms; "
        "of which the matcher round trip "
        f"median {door['decision_round_trip_median_ms']:.1f} ms, p95 {door['decision_round_trip_p95_ms']:.1f} ms. "
        "Passive liveness off here: this is the recognition path alone.",
    ]
    markdown = out_dir / "matcher.md"
    markdown.write_text("\n".join(lines) + "\n")
    figure, axis = plt.subplots(figsize=(6, 4), dpi=110)
    sizes = [row["gallery"] for row in search]
    axis.loglog(sizes, [row["ours_median_ms"] for row in search], "o-", label="ours (numpy float32)")
    if all("faiss_median_ms" in row for row in search):
        axis.loglog(sizes, [row["faiss_median_ms"] for row in search], "s--", label="FAISS IndexFlatIP")
    axis.set_xlabel("gallery size (templates)")
    axis.set_ylabel("median ms per 1:N search")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend()
    figure.tight_layout()
    plot = out_dir / "matcher.png"
    figure.savefig(plot)
    plt.close(figure)
    data = out_dir / "matcher.json"
    results = {"search": search, "throughput": throughput, "door": door, "machine": info}
    data.write_text(json.dumps(results, indent=2, default=str))
    return {"markdown": markdown, "plot": plot, "json": data}

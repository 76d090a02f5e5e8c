"""Benchmark report: markdown tables, a PNG plot and the raw JSON, side by side."""
from __future__ import annotations

import json
from pathlib import Path

from appliance.bench.pipeline_bench import (
    TARGET_MEDIAN_MS,
    BenchResult,
    Latency,
    RunResult,
)
from appliance.bench.worker import OURS, PEER

REPORT_NAME = "pipeline"
OURS_STAGES = ("decode", "landmarks", "quality", "alignment", "embedding")
PEER_STAGES = ("decode", "detection", "embedding")
STAGE_NOTES = {
    "decode": "JPEG bytes to a BGR array (`decode_image`)",
    "landmarks": "MediaPipe face detection + 478-point mesh (YuNet fallback when it finds nothing)",
    "quality": "ISO/IEC 29794-5 style measures and verdict",
    "alignment": "5-point warp to the embedder's aligned crop",
    "embedding": "template network inference (embedder and flip fusion under Method)",
}
PEER_NOTES = {
    "decode": "JPEG decode + BGR to RGB",
    "detection": "dlib HOG, upsample 1 (single-threaded)",
    "embedding": "5-point shape predictor + dlib ResNet, largest face only",
}
FIGURE_SIZE, FIGURE_DPI = (12, 5), 110
ORIENTATION_SINCE = (3, 10)
LEGEND_BELOW, LEGEND_COLUMNS = -0.14, 3  # stage legend under the bars, clear of them
PLOT_STAGES = ("decode", "detection", "landmarks", "quality", "alignment", "embedding")
BAR_COLOURS = ("#4c72b0", "#937860", "#dd8452", "#55a868", "#c44e52", "#8172b3")


def _cell(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _stage_table(runs: list[RunResult], stages: tuple[str, ...], notes: dict[str, str]) -> list[str]:
    header = ["stage"]
    for run in runs:
        header += [f"{run.threads}T median ms", f"{run.threads}T p95 ms"]
    header.append("what it covers")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for stage in stages:
        row = [stage]
        for run in runs:
            latency: Latency | None = run.stages.get(stage)
            row += [_cell(latency.median_ms if latency else None, 2), _cell(latency.p95_ms if latency else None, 2)]
        row.append(notes.get(stage, ""))
        lines.append("| " + " | ".join(row) + " |")
    return lines


def markdown(result: BenchResult, plot_name: str) -> str:
    machine, settings = result.machine, result.settings
    ours = sorted((r for r in result.runs if r.implementation == OURS), key=lambda r: r.threads)
    peer = sorted((r for r in result.runs if r.implementation == PEER), key=lambda r: r.threads)
    lines = [
        "# Pipeline benchmark",
        "",
        f"{machine['date']} - {machine['cpu']}, {machine['cpus_available']} CPUs available "
        f"({machine['logical_cpus']} logical), {machine['platform']}, Python {machine['python']}, "
        f"appliance {machine['appliance']}.",
        "",
        "## Targets (issue #2, item 10)",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for target in result.targets().values():
        measured = target["measured"]
        unit = "x" if "x face" in str(target["target"]) else " ms"
        shown = "n/a" if measured is None else f"{measured:.2f}{unit}"
        lines.append(f"| {target['target']} | {shown} | {'yes' if target['met'] else 'no'} |")
    lines += [
        "",
        "## Whole frame (decode to template)",
        "",
        "| configuration | CPUs | frames | face found | median ms | p95 ms "
        "| frames/s | peak RSS MiB | model load ms | load avg |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in ours + peer:
        lines.append(
            f"| {run.label} | {','.join(map(str, run.cpus))} | {run.frames} | {run.faces_found} | "
            f"{_cell(run.total.median_ms)} | {_cell(run.total.p95_ms)} | {_cell(run.frames_per_s)} | "
            f"{_cell(run.peak_rss_mib, 0)} | {_cell(run.load_ms, 0)} | "
            f"{' to '.join(_cell(v) for v in run.load_average)} |"
        )
    ratios = result.speedups()
    if ratios:
        lines += ["", "## Speed-up (face_recognition median / appliance median)", "",
                  "| threads | face_recognition median ms | appliance median ms | speed-up |", "|---|---|---|---|"]
        for threads, ratio in ratios.items():
            lines.append(
                f"| {threads} | {_cell(result.run(PEER, threads).total.median_ms)} | "
                f"{_cell(result.run(OURS, threads).total.median_ms)} | {ratio:.2f}x |"
            )
    lines += ["", "## Appliance per stage", ""]
    lines += _stage_table(ours, OURS_STAGES, STAGE_NOTES)
    if peer:
        lines += ["", "## face_recognition per stage", ""]
        lines += _stage_table(peer, PEER_STAGES, PEER_NOTES)
    lines += [
        "",
        f"![latency per stage and per frame]({plot_name})",
        "",
        "## Method",
        "",
        f"- {settings['frames']} distinct {settings['frame_size']} frames, each a real face photo "
        "(CelebA dev subset, deepface pairs) scaled and placed on a plain noisy background with a "
        f"seeded generator (seed {settings['seed']}), JPEG q{settings['jpeg_quality']} in memory; every "
        f"configuration read the same bytes (digest `{settings['frames_digest']}`). Decoding is measured.",
        f"- Warm-up: the first {settings['warmup_frames']} frames run once untimed after the models load; "
        "then all frames are timed one at a time (a door camera's sequential workload).",
        "- Each configuration runs in its own child process pinned with `os.sched_setaffinity` to as many "
        "CPUs as threads (a 1-thread run is on one CPU), with ONNX Runtime intra-op threads, OpenCV "
        "threads and OMP/BLAS variables set to the thread count before any library loads; MediaPipe "
        "sizes its own XNNPACK pool, so the pinning is what bounds it.",
        "- Peak RSS is `ru_maxrss` of that child: Python, libraries, models and the in-memory frames.",
        f"- Appliance: embedder `{settings['embedder']}`, detector `{settings['detector']}`, flip fusion "
        f"{settings['flip_fusion']}. Stage rows cover the frames where the stage ran (no face, no template).",
        "- Peer: face_recognition `face_locations` (HOG, upsample "
        f"{settings['peer_hog_upsample']}) + `face_encodings` on the largest face. dlib's HOG detector is "
        "single-threaded, so its 2-thread row mostly shows measurement noise. A frame where the peer "
        "finds no face skips its embedding and is cheap, which lowers its median: the ratio errs in "
        "the peer's favour.",
        "- frames/s is sequential throughput (frames / summed frame time). The ratio compares medians of "
        "runs taken back to back; the machine is shared (load average "
        f"{machine['load_average_start'][0]:.2f} at start, {machine['load_average_end'][0]:.2f} at end), "
        "so read medians and ratios, not single frames; 'load avg' is the machine's 1-minute load "
        f"before and after each run ({machine['cpus_available']} CPUs: a load above that means "
        "others' work shared the cores).",
        "",
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in machine["libraries"].items()) + ".",
        "",
    ]
    return "\n".join(lines)


def plot(result: BenchResult, out: Path) -> Path:
    """Stacked stage medians per configuration, and per-frame whole-pipeline latency."""
    from appliance.evaluation.plots import pyplot

    plt = pyplot()  # a clear error naming the 'plots' extra when matplotlib is missing
    import matplotlib

    runs = sorted(result.runs, key=lambda r: (r.implementation != OURS, r.threads))
    figure, (bars, boxes) = plt.subplots(1, 2, figsize=FIGURE_SIZE, dpi=FIGURE_DPI)
    labels = [run.label for run in runs]
    stage_names = PLOT_STAGES
    for index, stage in enumerate(stage_names):
        lefts = []
        widths = []
        for run in runs:
            before = [s for s in stage_names[:index] if run.stages.get(s)]
            lefts.append(sum(run.stages[s].median_ms for s in before))
            latency = run.stages.get(stage)
            widths.append(latency.median_ms if latency else 0.0)
        bars.barh(labels, widths, left=lefts, label=stage, color=BAR_COLOURS[index])
    bars.set_xlabel("median ms per frame, by stage")
    bars.set_title("Where the time goes")
    bars.invert_yaxis()
    bars.legend(loc="upper center", bbox_to_anchor=(0.5, LEGEND_BELOW), ncol=LEGEND_COLUMNS, fontsize="small")
    # ``orientation`` replaced ``vert`` in Matplotlib 3.10 (``vert`` is deprecated from 3.11)
    major, minor = (int(part) for part in matplotlib.__version__.split(".")[:2])
    sideways = {"orientation": "horizontal"} if (major, minor) >= ORIENTATION_SINCE else {"vert": False}
    boxes.boxplot([run.total_ms for run in runs], showfliers=True, **sideways)
    boxes.set_yticks(range(1, len(runs) + 1), labels)
    boxes.invert_yaxis()
    boxes.set_xlim(left=0)
    boxes.axvline(TARGET_MEDIAN_MS, color="grey", linestyle="--", label=f"target {TARGET_MEDIAN_MS:g} ms")
    boxes.set_xlabel("ms per 640x480 frame ")
    boxes.set_title("Whole pipeline, every frame")
    boxes.legend(loc="lower right", fontsize="small")
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out)
    plt.close(figure)
    return out


def write_report(result: BenchResult, out_dir: Path) -> dict[str, Path]:
    """``pipeline.md``, ``pipeline.png`` and ``pipeline.json`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {
        "markdown": out_dir / f"{REPORT_NAME}.md",
        "plot": out_dir / f"{REPORT_NAME}.png",
        "json": out_dir / f"{REPORT_NAME}.json",
    }
    plot(result, files["plot"])
    files["markdown"].write_text(markdown(result, files["plot"].name), encoding="utf-8")
    files["json"].write_text(json.dumps(result.to_json(), indent=2) + "\n", encoding="utf-8")
    return files

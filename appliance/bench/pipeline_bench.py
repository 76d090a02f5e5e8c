"""Pipeline benchmark: the appliance and the face_recognition peer on the same frames.

Speed targets are judged here, in a report, never in timed unit tests: the machines are
shared and noisy, so every configuration runs in the same invocation on byte-identical
frames, and the report gives medians, p95 and the peer/ours ratio rather than means.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np

from appliance.bench.frames import FRAME_HEIGHT, FRAME_WIDTH, JPEG_QUALITY, synthesize_frames
from appliance.bench.worker import HOG_UPSAMPLE, OURS, PEER
from appliance.config import load_config
from appliance.errors import ApplianceError, ErrorCode

DEFAULT_FRAMES = 240
MIN_REPORTED_FRAMES = 200  # the issue asks for at least this many measured frames
DEFAULT_WARMUP = 10
DEFAULT_THREADS = (1, 2)
TAIL_PERCENTILE = 95
TARGET_MEDIAN_MS = 40.0  # whole pipeline, 640x480, 2 threads
TARGET_THREADS = 2
TARGET_SPEEDUP = 3.0  # peer median / ours median, same run
MS_PER_S = 1000.0
ERROR_LINE = re.compile(r"error: E(\d+) ")  # how the worker reports an ApplianceError
LIBRARIES = (
    "numpy", "opencv-contrib-python", "mediapipe", "onnxruntime", "dlib-bin", "face-recognition",
    "face-recognition-models", "matplotlib",
)


@dataclass(frozen=True)
class Latency:
    median_ms: float
    p95_ms: float
    count: int

    @classmethod
    def of(cls, values: list[float | None]) -> Latency | None:
        measured = np.array([v for v in values if v is not None], dtype=np.float64)
        if measured.size == 0:
            return None
        return cls(float(np.median(measured)), float(np.percentile(measured, TAIL_PERCENTILE)), int(measured.size))


@dataclass(frozen=True)
class RunResult:
    """One (implementation, threads) configuration measured in its own pinned process."""

    implementation: str
    threads: int
    cpus: list[int]
    frames: int
    faces_found: int
    stages: dict[str, Latency | None]
    total: Latency
    frames_per_s: float  # sequential throughput: measured frames / summed frame time
    peak_rss_mib: float
    load_ms: float
    load_average: list[float]  # machine 1-minute load before and after this run (shared machine)
    total_ms: list[float] = field(repr=False)  # per frame, for the plot

    @property
    def label(self) -> str:
        name = "appliance" if self.implementation == OURS else "face_recognition (dlib)"
        return f"{name}, {self.threads} thread{'s' if self.threads != 1 else ''}"


@dataclass(frozen=True)
class BenchResult:
    runs: list[RunResult]
    machine: dict[str, object]
    settings: dict[str, object]

    def run(self, implementation: str, threads: int) -> RunResult | None:
        return next((r for r in self.runs if r.implementation == implementation and r.threads == threads), None)

    def speedups(self) -> dict[int, float]:
        """Peer median / ours median per thread count (the same run, the same frames)."""
        ratios = {}
        for threads in sorted({r.threads for r in self.runs}):
            ours, peer = self.run(OURS, threads), self.run(PEER, threads)
            if ours and peer:
                ratios[threads] = peer.total.median_ms / ours.total.median_ms
        return ratios

    def targets(self) -> dict[str, dict[str, object]]:
        ours = self.run(OURS, TARGET_THREADS)
        ratio = self.speedups().get(TARGET_THREADS)
        return {
            "median_ms": {
                "target": f"<= {TARGET_MEDIAN_MS:g} ms ({TARGET_THREADS} threads)",
                "measured": ours.total.median_ms if ours else None,
                "met": bool(ours and ours.total.median_ms <= TARGET_MEDIAN_MS),
            },
            "speedup": {
                "target": f">= {TARGET_SPEEDUP:g}x face_recognition ({TARGET_THREADS} threads)",
                "measured": ratio,
                "met": bool(ratio and ratio >= TARGET_SPEEDUP),
            },
        }

    def to_json(self) -> dict[str, object]:
        return {
            "machine": self.machine,
            "settings": self.settings,
            "runs": [asdict(r) for r in self.runs],
            "speedup_peer_over_ours": {str(k): v for k, v in self.speedups().items()},
            "targets": self.targets(),
        }


def summarise(raw: dict) -> RunResult:
    totals = raw["total_ms"]
    return RunResult(
        implementation=raw["implementation"],
        threads=raw["threads"],
        cpus=raw["cpus"],
        frames=len(totals),
        faces_found=sum(raw["found"]),
        stages={stage: Latency.of(values) for stage, values in raw["stages_ms"].items()},
        total=Latency.of(totals),
        frames_per_s=len(totals) * MS_PER_S / sum(totals),
        peak_rss_mib=raw["peak_rss_mib"],
        load_ms=raw["load_ms"],
        load_average=raw["load_average"],
        total_ms=totals,
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info() -> dict[str, object]:
    from appliance import __version__

    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "appliance": __version__,
        "libraries": {name: _version(name) for name in LIBRARIES},
        "load_average_start": list(os.getloadavg()),
    }


def _run_worker(implementation: str, threads: int, frames_dir: Path, warmup: int,
                config_path: str | None, scratch: Path) -> RunResult:
    out = scratch / f"{implementation}-{threads}.json"
    command = [sys.executable, "-m", "appliance.bench.worker", implementation, "--threads", str(threads),
               "--frames-dir", str(frames_dir), "--warmup", str(warmup), "--out", str(out)]
    if config_path:
        command += ["--config", config_path]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not out.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        message = f"benchmark worker {implementation}/{threads} failed ({done.returncode}): {last}"
        found = ERROR_LINE.match(last)
        code = next((c for c in ErrorCode if found and c.number == int(found.group(1))), None)
        if code is None:  # a crash, not a user-caused failure: the CLI reports an internal error
            raise RuntimeError(message)
        raise ApplianceError(code, message)
    return summarise(json.loads(out.read_text(encoding="utf-8")))


def run_benchmark(frames: int = DEFAULT_FRAMES, threads: tuple[int, ...] = DEFAULT_THREADS,
                  warmup: int = DEFAULT_WARMUP, seed: int = 0, peer: bool = True,
                  config_path: str | None = None, progress=None) -> BenchResult:
    """Measure every configuration, each in its own process, ours then the peer per thread count.

    Ours and the peer with the same thread count run back to back, so the ratio used for the
    target compares measurements taken under the same machine load.
    """
    if warmup < 0 or warmup > frames:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"warm-up must be within 0..{frames} frames, not {warmup}")
    available = len(os.sched_getaffinity(0))
    if any(t < 1 or t > available for t in threads):
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"threads must be within 1..{available} (CPUs available)")
    config = load_config(Path(config_path) if config_path else None)
    frame_set = synthesize_frames(frames, seed)
    machine = machine_info()
    implementations = (OURS, PEER) if peer else (OURS,)
    runs: list[RunResult] = []
    with tempfile.TemporaryDirectory(prefix="appliance-bench-") as scratch_name:
        scratch = Path(scratch_name)
        frames_dir = scratch / "frames"
        frames_dir.mkdir()
        for index, data in enumerate(frame_set.frames):
            (frames_dir / f"{index:05d}.jpg").write_bytes(data)
        for count in sorted(set(threads), reverse=True):
            for implementation in implementations:
                if progress:
                    progress(f"measuring {implementation} with {count} thread(s) on {frames} frames")
                runs.append(_run_worker(implementation, count, frames_dir, warmup, config_path, scratch))
    machine["load_average_end"] = list(os.getloadavg())
    settings = {
        "frames": frames,
        "frame_size": f"{FRAME_WIDTH}x{FRAME_HEIGHT}",
        "jpeg_quality": JPEG_QUALITY,
        "frames_digest": frame_set.digest,
        "seed": seed,
        "warmup_frames": warmup,
        "threads": sorted(set(threads)),
        "peer_hog_upsample": HOG_UPSAMPLE,
        "config": config_path or "default",
        "embedder": config.models.embedder,
        "detector": config.models.detector,
        "flip_fusion": config.matching.flip_fusion,
    }
    return BenchResult(runs, machine, settings)

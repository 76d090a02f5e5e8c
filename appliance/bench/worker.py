"""One measured configuration, run in its own process: ``python -m appliance.bench.worker``.

A child process per (implementation, threads) gives each configuration a clean peak RSS
and lets the thread limit hold for every library: the process is pinned to ``threads``
CPUs with ``sched_setaffinity`` and the thread-count variables are set before numpy,
OpenCV, MediaPipe, ONNX Runtime or dlib are imported. MediaPipe sizes its XNNPACK pool
itself, so the CPU pinning is what makes a 1-thread run truly single-core.

Only the standard library is imported at module level, on purpose.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

OURS, PEER = "ours", "face_recognition"
IMPLEMENTATIONS = (OURS, PEER)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")
QUIET_VARIABLES = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "3", "OPENCV_LOG_LEVEL": "ERROR"}
KIB_PER_MIB = 1024
HOG_UPSAMPLE = 1  # face_recognition's default: finds faces down to ~40 px in a 640x480 frame


def pin(threads: int) -> list[int]:
    """Restrict this process to ``threads`` CPUs (the lowest-numbered available ones)."""
    available = sorted(os.sched_getaffinity(0))
    cpus = available[:threads]
    os.sched_setaffinity(0, set(cpus))
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    for name, value in QUIET_VARIABLES.items():
        os.environ.setdefault(name, value)
    return cpus


def _load_frames(folder: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted(folder.glob("*.jpg"))]


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


class OursRunner:
    """The appliance pipeline exactly as the daemon runs it: decode, analyze, extract."""

    stages = ("decode", "landmarks", "alignment", "quality", "embedding")

    def __init__(self, threads: int, config_path: str | None):
        from dataclasses import replace

        import cv2

        from appliance.config import load_config
        from appliance.pipeline import FacePipeline

        cv2.setNumThreads(threads)
        config = load_config(Path(config_path) if config_path else None)
        config = replace(config, runtime=replace(config.runtime, threads=threads))
        self.pipeline = FacePipeline(config)
        self.pipeline.load()

    def run(self, data: bytes) -> tuple[dict[str, float], bool]:
        from appliance.capture.images import decode_image

        start = time.perf_counter()
        bgr = decode_image(data)
        timings = {"decode": _ms(start)}
        analysis = self.pipeline.analyze(bgr)
        if analysis.aligned is not None:
            analysis = self.pipeline.extract([analysis])[0].analysis
        timings.update(analysis.timings_ms)
        return timings, analysis.aligned is not None

    def close(self) -> None:
        self.pipeline.close()


class PeerRunner:
    """face_recognition 1.3 (dlib HOG detector + 5-point shape + ResNet descriptor).

    Like the appliance it encodes one subject per frame: the largest face found.
    """

    stages = ("decode", "detection", "embedding")

    def __init__(self, threads: int, config_path: str | None):
        import cv2

        from appliance.errors import ApplianceError, ErrorCode

        cv2.setNumThreads(threads)
        try:
            import face_recognition
        except ImportError:
            raise ApplianceError(
                ErrorCode.DEPENDENCY_MISSING,
                "the benchmark peer needs face_recognition: pip install 'face-appliance[dlib]' face-recognition",
            ) from None
        self.fr = face_recognition

    def run(self, data: bytes) -> tuple[dict[str, float], bool]:
        import cv2

        from appliance.capture.images import decode_image

        start = time.perf_counter()
        rgb = cv2.cvtColor(decode_image(data), cv2.COLOR_BGR2RGB)  # face_recognition takes RGB
        timings = {"decode": _ms(start)}
        start = time.perf_counter()
        locations = self.fr.face_locations(rgb, number_of_times_to_upsample=HOG_UPSAMPLE, model="hog")
        timings["detection"] = _ms(start)
        if not locations:
            return timings, False
        largest = max(locations, key=lambda box: (box[2] - box[0]) * (box[1] - box[3]))
        start = time.perf_counter()
        self.fr.face_encodings(rgb, known_face_locations=[largest])
        timings["embedding"] = _ms(start)
        return timings, True

    def close(self) -> None:
        pass


def measure(implementation: str, threads: int, frames_dir: Path, warmup: int, config_path: str | None) -> dict:
    """Per-frame stage and whole-frame latencies; the first ``warmup`` frames run untimed first."""
    cpus = pin(threads)
    load_before = os.getloadavg()[0]
    frames = _load_frames(frames_dir)
    start = time.perf_counter()
    runner = (OursRunner if implementation == OURS else PeerRunner)(threads, config_path)
    load_ms = _ms(start)
    try:
        for data in frames[:warmup]:
            runner.run(data)
        per_stage: dict[str, list[float | None]] = {stage: [] for stage in runner.stages}
        totals, found = [], []
        for data in frames:
            start = time.perf_counter()
            timings, face = runner.run(data)
            totals.append(_ms(start))
            found.append(face)
            for stage in runner.stages:
                per_stage[stage].append(timings.get(stage))
    finally:
        runner.close()
    return {
        "implementation": implementation,
        "threads": threads,
        "cpus": cpus,
        "warmup_frames": warmup,
        "load_ms": load_ms,
        "total_ms": totals,
        "found": found,
        "stages_ms": per_stage,
        "load_average": [load_before, os.getloadavg()[0]],  # 1-minute, before and after: the noise
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / KIB_PER_MIB,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance.bench.worker")
    parser.add_argument("implementation", choices=IMPLEMENTATIONS)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--frames-dir", type=Path, required=True)
    parser.add_argument("--warmup", type=int, default=0)
    parser.add_argument("--config")
    parser.add_argument("--out", type=Path, required=True, help="JSON result file")
    args = parser.parse_args(argv)
    from appliance.errors import ApplianceError

    try:
        result = measure(args.implementation, args.threads, args.frames_dir, args.warmup, args.config)
    except ApplianceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.code.exit_status
    args.out.write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

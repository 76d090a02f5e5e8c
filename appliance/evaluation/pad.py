"""PAD evaluation after ISO/IEC 30107-3: APCER per attack species, BPCER, ACER, BPCER20/100.

Layout (the same for synthetic sets and real captures)::

    DIR/bona_fide/<item>
    DIR/attack/<species>/<item>

An item is an image or a folder of frames (a short burst, judged as one presentation with
the motion cues). Scores are the fused live scores (higher = more likely bona fide), so
metrics.threshold_at_fmr applies with attacks in the role of impostors. Presentations in
which no face is found never reach the PAD subsystem: they are counted, not scored.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from appliance.capture.image_headers import IMAGE_SUFFIXES
from appliance.capture.images import read_image
from appliance.errors import ApplianceError, ErrorCode
from appliance.evaluation import metrics
from appliance.evaluation.synthetic_set import SYNTHETIC_MARKER
from appliance.liveness.checker import NOT_JUDGED, LivenessChecker
from appliance.pipeline import FacePipeline

BONA_FIDE = "bona_fide"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
APCER_TARGETS = {"bpcer20": 0.05, "bpcer100": 0.01}
SYNTHETIC_NOTE = (
    "SYNTHETIC attacks (appliance.evaluation.synthetic): these numbers show how well the simulated "
    "print/screen/replay artefacts are caught, not how real attacks are; measure real captures "
    "in the same layout before relying on them"
)


@dataclass(frozen=True)
class PadItem:
    label: str  # "bona_fide" or the attack species
    path: Path
    frames: tuple[Path, ...]


@dataclass
class PadScores:
    items: list[PadItem]
    scores: np.ndarray  # live score per item (nan: no face)
    rows: list[list[dict[str, float]]] = field(default_factory=list)  # per item, per frame cue values

    def by_label(self) -> dict[str, np.ndarray]:
        labels = np.array([i.label for i in self.items])
        return {label: self.scores[labels == label] for label in sorted(set(labels))}


def item_from_path(label: str, path: Path) -> PadItem | None:
    """One presentation: an image, a video or a folder of frames (None for anything else)."""
    if path.is_dir():
        frames = tuple(sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES))
        return PadItem(label, path, frames) if frames else None
    if path.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES:
        return PadItem(label, path, (path,))
    return None


def load_frames(item: PadItem, video_frames: int) -> list[np.ndarray]:
    """The item's frames: images as they are, a video's first ``video_frames`` frames
    (the configured burst, ``liveness.burst_frames``)."""
    if len(item.frames) == 1 and item.frames[0].suffix.lower() in VIDEO_SUFFIXES:
        from appliance.capture.sources import OpenCVSource

        source = OpenCVSource(str(item.frames[0]))
        try:
            frames = []
            for frame in source.frames():
                frames.append(frame.image)
                if len(frames) >= video_frames:
                    break
        finally:
            source.close()
        if not frames:
            raise ApplianceError(ErrorCode.IMAGE_UNREADABLE, f"{item.frames[0]}: no frames")
        return frames
    return [read_image(p) for p in item.frames]


def scan(root: str | Path) -> list[PadItem]:
    root = Path(root)
    if not (root / BONA_FIDE).is_dir() or not (root / "attack").is_dir():
        raise ApplianceError(ErrorCode.DATASET_INVALID, f"{root}: expected {BONA_FIDE}/ and attack/<species>/")
    items = [item_from_path(BONA_FIDE, p) for p in sorted((root / BONA_FIDE).iterdir())]
    for species in sorted(p for p in (root / "attack").iterdir() if p.is_dir()):
        items += [item_from_path(species.name, p) for p in sorted(species.iterdir())]
    items = [i for i in items if i is not None]
    labels = {i.label for i in items}
    if BONA_FIDE not in labels or len(labels) < 2:
        raise ApplianceError(ErrorCode.DATASET_INVALID, f"{root}: need bona fide items and at least one attack species")
    return items


def synthetic_info(root: str | Path) -> dict | None:
    marker = Path(root) / SYNTHETIC_MARKER
    return json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None


def to_grey(frame: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def score_items(pipeline: FacePipeline, checker: LivenessChecker, items: list[PadItem], level: str,
                with_rows: bool = False, progress: bool = True, grey: bool = False) -> PadScores:
    """Judge every item at ``level`` (single images get no motion cue); ``with_rows``
    collects the raw cue values instead (for calibration), of greyscale copies if ``grey``."""
    scores = np.full(len(items), np.nan)
    rows: list[list[dict[str, float]]] = []
    bar = tqdm(items, desc="pad", unit="item", disable=not progress or not sys.stderr.isatty(), leave=False)
    for index, item in enumerate(bar):
        frames = load_frames(item, checker.config.burst_frames)
        if grey:
            frames = [to_grey(frame) for frame in frames]
        faces = [pipeline.detect(frame).subject for frame in frames]
        if with_rows:
            rows.append([checker.frame_cues(f, face).values for f, face in zip(frames, faces) if face is not None])
            continue
        decision = checker.judge(frames, faces, level=level if level != "active" else "passive+motion")
        if "no_face" not in decision.reasons:
            if "greyscale_uncalibrated" in decision.reasons:
                continue  # not judged: counted with the presentations that never reach PAD
            if set(NOT_JUDGED) & set(decision.reasons):
                scores[index] = 0.0  # not judged (too close / too dark): refused, so it counts in BPCER
                continue
            vetoed = {"flat_plane_motion", "model_veto"} & set(decision.reasons)
            scores[index] = 0.0 if vetoed else decision.score  # vetoes reject at any threshold
    return PadScores(items, scores, rows)


def _rate(errors: int, trials: int) -> dict:
    low, high = metrics.wilson_interval(errors, trials)
    return {"rate": errors / trials if trials else None, "errors": errors, "trials": trials, "ci95": [low, high]}


def threshold_at_apcer(attacks: dict[str, np.ndarray], target: float) -> float:
    """The lowest live-score threshold at which every species' APCER is <= ``target``."""
    return max(metrics.threshold_at_fmr(scores, target) for scores in attacks.values() if len(scores))


def report(scores: PadScores, threshold: float, synthetic: dict | None) -> dict:
    by_label = scores.by_label()
    bona_all = by_label.pop(BONA_FIDE)
    bona = bona_all[np.isfinite(bona_all)]
    attacks = {k: v[np.isfinite(v)] for k, v in by_label.items()}
    if len(bona) == 0 or not any(len(v) for v in attacks.values()):
        raise ApplianceError(ErrorCode.DATASET_INVALID, "no face found in the bona fide or attack items")

    def point(t: float) -> dict:
        apcer = {k: _rate(int(np.count_nonzero(v >= t)), len(v)) for k, v in attacks.items()}
        bpcer = _rate(int(np.count_nonzero(bona < t)), len(bona))
        return {"apcer": apcer, "bpcer": bpcer}

    at = point(threshold)
    worst_apcer = max(v["rate"] for v in at["apcer"].values() if v["rate"] is not None)  # None: no face in any
    thresholds = {"configured": threshold}
    extra = {}
    for name, target in APCER_TARGETS.items():
        t = threshold_at_apcer(attacks, target)
        thresholds[f"apcer_{target:g}"] = t
        extra[name] = point(t)["bpcer"]
    out = {
        "synthetic": synthetic is not None,
        "note": SYNTHETIC_NOTE if synthetic else "real captures",
        "apcer": {k: v["rate"] for k, v in at["apcer"].items()},
        "bpcer": at["bpcer"]["rate"],
        "acer": (worst_apcer + at["bpcer"]["rate"]) / 2,
        "bpcer20": extra["bpcer20"]["rate"],
        "bpcer100": extra["bpcer100"]["rate"],
        "thresholds": thresholds,
        "detail": {"apcer": at["apcer"], "bpcer": at["bpcer"], "bpcer20": extra["bpcer20"],
                   "bpcer100": extra["bpcer100"]},
        "counts": {
            "bona_fide": len(bona),
            "attack": {k: len(v) for k, v in attacks.items()},
            "no_face": {BONA_FIDE: int(np.count_nonzero(~np.isfinite(bona_all))),
                        **{k: int(np.count_nonzero(~np.isfinite(v))) for k, v in by_label.items()}},
        },
    }
    if synthetic:
        out["synthetic_set"] = synthetic
    return out

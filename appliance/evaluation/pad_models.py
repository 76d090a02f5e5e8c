"""Each learned liveness model alone, at the same bona fide rejection (ISO/IEC 30107-3 terms).

Why: a second model is only worth fusing if it catches attacks the first one misses. Every
model's threshold is set where ``target_bpcer`` of the bona fide of the *calibration* set
(identities of split a) are refused; APCER per species and BPCER are then counted on the
*test* sets (split b: other identities). The models see the face box of the appliance's own
pipeline, one image per presentation, no fusion and no image cues.

    python -m appliance.evaluation.pad_models --calibrate-on PAD_A --test PAD_B [PAD_B_UNSEEN] \
        --samples ../shared/data/spoof/samples --out reports/pad-models
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from appliance import json_text
from appliance.evaluation import metrics
from appliance.evaluation.pad import BONA_FIDE, PadItem, load_frames, scan

MINIFASNET = "minifasnet"
TARGET_BPCER = 0.05  # the bar: APCER is compared where 5 % of bona fide are refused
PERCENT = 100.0


@dataclass
class ModelScores:
    labels: list[str]
    scores: dict[str, np.ndarray]  # model -> live score per presentation with a face
    no_face: int
    ms: dict[str, list[float]] = field(default_factory=dict)  # model -> milliseconds per call


def score_items(pipeline, minifasnet, human, items: list[PadItem]) -> ModelScores:
    """Live score of every model for the subject of each item's first frame."""
    result = ModelScores([], {}, 0)
    rows: dict[str, list[float]] = {}
    models = {MINIFASNET: lambda frame, box: minifasnet.score(frame, box).live}
    models.update({pack_id: partial(human.model_score, pack_id) for pack_id in human.pack_ids})
    for item in items:
        frame = load_frames(item, 1)[0]
        face = pipeline.detect(frame).subject
        if face is None:
            result.no_face += 1
            continue
        result.labels.append(item.label)
        for name, model in models.items():
            start = time.perf_counter()
            rows.setdefault(name, []).append(model(frame, face.box))
            result.ms.setdefault(name, []).append((time.perf_counter() - start) * 1000)
    result.scores = {name: np.asarray(values) for name, values in rows.items()}
    return result


def auc(bona_fide: np.ndarray, attacks: np.ndarray) -> float:
    """How often a bona fide presentation scores above an attack (ties count half): 0.5 is chance."""
    above = (bona_fide[:, None] > attacks[None, :]).mean()
    return float(above + 0.5 * (bona_fide[:, None] == attacks[None, :]).mean())


def threshold_at_bpcer(bona_fide: np.ndarray, target: float) -> float:
    """The live-score threshold that refuses ``target`` of ``bona_fide`` (score < threshold)."""
    return float(np.quantile(bona_fide, target))


def compare(calibration: ModelScores, test: ModelScores, target: float = TARGET_BPCER) -> dict:
    """Per model: threshold from the calibration bona fide, APCER per species and BPCER on test."""
    calibration_labels, test_labels = np.asarray(calibration.labels), np.asarray(test.labels)
    species = sorted(set(test.labels) - {BONA_FIDE})
    table = {}
    for name, values in test.scores.items():
        threshold = threshold_at_bpcer(calibration.scores[name][calibration_labels == BONA_FIDE], target)
        bona_fide = values[test_labels == BONA_FIDE]
        refused = int((bona_fide < threshold).sum())
        row = {"threshold": threshold, "bpcer": refused / len(bona_fide),
               "bpcer_ci95": metrics.wilson_interval(refused, len(bona_fide)), "bona_fide": len(bona_fide),
               "apcer": {}, "attacks": {}, "auc": {}, "ms_median": float(np.median(test.ms[name]))}
        for kind in species:
            attacks = values[test_labels == kind]
            accepted = int((attacks >= threshold).sum())
            row["apcer"][kind] = accepted / len(attacks)
            row["attacks"][kind] = len(attacks)
            row["auc"][kind] = auc(bona_fide, attacks)
        table[name] = row
    return {"target_bpcer": target, "species": species, "models": table, "no_face": test.no_face,
            "load_average": os.getloadavg()}


def markdown(result: dict, samples: dict[str, dict[str, float]] | None = None) -> str:
    species = result["species"]
    lines = ["| model | threshold | " + " | ".join(f"APCER {s} (AUC)" for s in species)
             + " | BPCER (95 % CI) | ms/call |", "|---|---:|" + "---:|" * len(species) + "---|---:|"]
    for name, row in result["models"].items():
        low, high = row["bpcer_ci95"]
        cells = " | ".join(f"{row['apcer'][s] * PERCENT:.1f} % ({row['auc'][s]:.2f})" for s in species)
        lines.append(f"| {name} | {row['threshold']:.3g} | {cells} | {row['bpcer'] * PERCENT:.1f} % "
                     f"({low * PERCENT:.1f}-{high * PERCENT:.1f}) | {row['ms_median']:.1f} |")
    if samples:
        names = list(result["models"])
        lines += ["", "| sample | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
        for sample, values in samples.items():
            verdicts = {n: "live" if values[n] >= result["models"][n]["threshold"] else "attack" for n in names}
            cells = " | ".join(f"{values[n]:.3f} ({verdicts[n]})" for n in names)
            lines.append(f"| {sample} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from appliance.config import load_config, registry_for
    from appliance.liveness.checker import LivenessChecker
    from appliance.liveness.human_antispoof import HumanModels
    from appliance.pipeline import FacePipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibrate-on", required=True, help="PAD set whose bona fide set each threshold")
    parser.add_argument("--test", nargs="+", required=True, help="PAD sets to report on (bona fide of the first)")
    parser.add_argument("--samples", help="folder of single images to score (e.g. the shared smoke-test samples)")
    parser.add_argument("--bpcer", type=float, default=TARGET_BPCER)
    parser.add_argument("--out", required=True, help="folder for pad-models.json and pad-models.md")
    args = parser.parse_args(argv)
    config = load_config()
    registry = registry_for(config)
    pipeline = FacePipeline(config, registry)
    try:
        minifasnet, human = LivenessChecker(config.liveness, registry).model, HumanModels(registry)
        calibration = score_items(pipeline, minifasnet, human,
                                  [i for i in scan(args.calibrate_on) if i.label == BONA_FIDE])
        test_items = scan(args.test[0])
        for extra in args.test[1:]:
            test_items += [i for i in scan(extra) if i.label != BONA_FIDE]  # same bona fide, more species
        result = compare(calibration, score_items(pipeline, minifasnet, human, test_items), args.bpcer)
        samples = None
        if args.samples:
            samples = {}
            for path in sorted(Path(args.samples).iterdir()):
                scored = score_items(pipeline, minifasnet, human, [PadItem(BONA_FIDE, path, (path,))])
                if scored.labels:
                    samples[path.name] = {n: float(v[0]) for n, v in scored.scores.items()}
            result["samples"] = samples
    finally:
        pipeline.close()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result["command"] = " ".join(["python -m appliance.evaluation.pad_models", *(argv or sys.argv[1:])])
    (out / "pad-models.json").write_text(json_text.dumps(result, indent=2, default=float) + "\n", encoding="utf-8")
    (out / "pad-models.md").write_text(markdown(result, samples), encoding="utf-8")
    print(markdown(result, samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())

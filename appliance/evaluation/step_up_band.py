"""Choosing the step-up band (``[liveness] step_up_margin``) on held-out presentations.

For each candidate band (log-odds above the threshold, ``liveness.step_up``) on a PAD set: the
share of bona fide presentations that pass passively but fall inside the band (they are asked a
challenge: the added time), and per attack species the share that pass passively *above* the band
(no challenge is asked: they still get in; those inside the band face a challenge a print or screen
cannot answer). Only the identities the shipped calibration never saw are counted (split ``b``:
odd index in name order, as ``appliance liveness synth --split`` and ``datasets.scan_identities``).

Run: ``python -m appliance.evaluation.step_up_band SET [--split b] [--bands 0 1 2 3]``.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from appliance.config import load_config
from appliance.evaluation.pad import BONA_FIDE, scan, score_items
from appliance.evaluation.pad_loso import identity_of
from appliance.liveness.checker import LivenessChecker
from appliance.liveness.fusion import FEATURES, MODEL_LIVE, Calibration
from appliance.liveness.step_up import live_margin

DEFAULT_BANDS = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


def item_margins(calibration: Calibration, rows: list[list[dict[str, float]]]) -> np.ndarray:
    """Per item: log-odds above the threshold of its median live score; -inf when refused passively
    (below the threshold or vetoed by the model), nan without a face."""
    out = np.full(len(rows), np.nan)
    for index, frames in enumerate(rows):
        if not frames:
            continue
        matrix = np.array([[value[name] for name in FEATURES] for value in frames])
        score = float(np.median(calibration.live_scores(matrix)))
        vetoed = float(np.median([value[MODEL_LIVE] for value in frames])) < calibration.model_floor
        passed = score >= calibration.threshold and not vetoed
        out[index] = live_margin(score, calibration.threshold) if passed else -np.inf
    return out


def band_table(labels: list[str], margins: np.ndarray, bands=DEFAULT_BANDS) -> list[dict]:
    """One row per band: bona fide challenged and refused, attacks passing without a challenge."""
    labels_arr = np.array(labels)
    judged = np.isfinite(margins) | np.isneginf(margins)
    bona = margins[(labels_arr == BONA_FIDE) & judged]
    rows = []
    for band in bands:
        species = {}
        for label in sorted(set(labels) - {BONA_FIDE}):
            attack = margins[(labels_arr == label) & judged]
            species[label.split("/", 1)[-1]] = float(np.mean(attack >= band)) if len(attack) else None
        worst = max((k for k, v in species.items() if v is not None), key=lambda k: species[k])
        rows.append({"band": band, "bona_fide": int(len(bona)),
                     "bona_fide_challenged": float(np.mean(np.isfinite(bona) & (bona < band))),
                     "bona_fide_refused": float(np.mean(np.isneginf(bona))),
                     "attacks_passing_unchallenged": species, "worst_species": worst})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--split", choices=("a", "b", "all"), default="b")
    parser.add_argument("--bands", type=float, nargs="+", default=list(DEFAULT_BANDS))
    args = parser.parse_args(argv)
    from appliance.pipeline import FacePipeline

    config = load_config()
    pipeline = FacePipeline(config)
    checker = LivenessChecker(config.liveness, pipeline.registry)
    items = scan(args.dataset)
    identities = sorted({identity_of(item.path.name) for item in items if item.label == BONA_FIDE})
    keep = set(identities if args.split == "all" else identities[0 if args.split == "a" else 1::2])
    items = [item for item in items if identity_of(item.path.name) in keep]
    scores = score_items(pipeline, checker, items, "passive", with_rows=True)
    margins = item_margins(checker.calibration, scores.rows)
    print(json.dumps({"dataset": args.dataset, "split": args.split, "calibration": checker.calibration_id,
                      "rows": band_table([item.label for item in items], margins, args.bands)}, indent=1))
    pipeline.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

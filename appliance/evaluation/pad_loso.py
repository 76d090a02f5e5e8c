"""Leave-one-species-out PAD evaluation (issue 15): how the fusion copes with attacks it never saw.

For every attack species S, the fusion is calibrated (``pad_calibration.calibrate``, the same code
as ``appliance liveness calibrate``) on the calibration identities and every species but S; the
threshold is set where the BPCER on the calibration identities' bona fide meets ``BPCER_TARGET``.
APCER is then counted on the *held-out identities* (``synthetic_species.is_held_out``, the ones
the generator gives held-out parameters): for S (unseen) and for the other species (seen), with
the BPCER on the held-out bona fide. The figure that counts is the worst unseen APCER.
Nothing here touches the runtime calibration file.
"""
from __future__ import annotations

import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.evaluation import pad_calibration
from appliance.evaluation.pad import BONA_FIDE, PadScores
from appliance.evaluation.synthetic_species import HELD_OUT_SALT, is_held_out
from appliance.liveness.fusion import FEATURES, MODEL_LIVE, Calibration

BPCER_TARGET = 0.05  # the operating point: 5 % of bona fide presentations refused (issue 15)
TARGET_APCER = 0.05  # calibrate's APCER operating point; unused here (the LOSO threshold is set by BPCER)
MODEL_BPCER = 0.01  # the model veto's bona fide cost, as in the default calibration


def identity_of(path_name: str) -> str:
    return path_name.split("__")[0] if "__" in path_name else path_name


def _item_scores(calibration: Calibration, rows: list[list[dict[str, float]]]) -> np.ndarray:
    """Median fused live score over an item's frames; 0 where the model vetoes; nan without a face."""
    out = np.full(len(rows), np.nan)
    for index, frames in enumerate(rows):
        if not frames:
            continue
        matrix = np.array([[value[name] for name in FEATURES] for value in frames])
        model_live = float(np.median([value[MODEL_LIVE] for value in frames]))
        live = float(np.median(calibration.live_scores(matrix)))
        out[index] = 0.0 if model_live < calibration.model_floor else live
    return out


def _rate(scores: np.ndarray, threshold: float, accepted: bool) -> float | None:
    scores = scores[np.isfinite(scores)]
    if not len(scores):
        return None
    return float(np.mean(scores >= threshold) if accepted else np.mean(scores < threshold))


def leave_one_out(scores: PadScores, bpcer_target: float = BPCER_TARGET) -> dict:
    """The per-species table (``scores`` from ``pad.score_items(..., with_rows=True)``)."""
    items, rows = scores.items, scores.rows
    labels = np.array([item.label for item in items])
    held = np.array([is_held_out(identity_of(item.path.name)) for item in items])
    species = sorted(set(labels) - {BONA_FIDE})
    calibration_part = ~held
    bona = labels == BONA_FIDE
    if len(species) < 2 or not (calibration_part & bona).any() or not (held & bona).any():
        raise ApplianceError(ErrorCode.DATASET_INVALID,
                             "leave-one-out needs two attack species and bona fide items on both identity halves")
    table = {}
    for left_out in species:
        chosen = [i for i in range(len(items)) if calibration_part[i] and labels[i] != left_out]
        # The threshold refuses bpcer_target of the calibration identities' bona fide as scored by
        # fusions that never saw them (out of fold, by identity): set on the fitting data itself, the
        # fit's closeness to its own bona fide would show as a higher BPCER on new people.
        calibration = pad_calibration.calibrate([items[i] for i in chosen], [rows[i] for i in chosen],
                                                TARGET_APCER, MODEL_BPCER, True, f"leave-one-out: {left_out}",
                                                target_bpcer=bpcer_target)
        live = _item_scores(calibration, rows)
        threshold = calibration.threshold
        seen = {s: _rate(live[held & (labels == s)], threshold, True) for s in species if s != left_out}
        seen_rates = [v for v in seen.values() if v is not None]
        table[left_out] = {
            "unseen_apcer": _rate(live[held & (labels == left_out)], threshold, True),
            "seen_apcer_worst": max(seen_rates) if seen_rates else None,
            "seen_apcer": seen,
            "bpcer": _rate(live[held & (labels == BONA_FIDE)], threshold, False),
            "threshold": threshold,
            "attacks_held_out": int(np.count_nonzero(held & (labels == left_out) & np.isfinite(live))),
            "attacks_no_face": int(np.count_nonzero(held & (labels == left_out) & ~np.isfinite(live))),
        }
    unseen = {k: v["unseen_apcer"] for k, v in table.items() if v["unseen_apcer"] is not None}
    worst = max(unseen, key=unseen.get) if unseen else None
    return {
        "species": table, "worst_unseen_species": worst, "worst_unseen_apcer": unseen.get(worst),
        "bpcer_target": bpcer_target, "held_out_salt": HELD_OUT_SALT.decode(),
        "bona_fide": {"calibration": int(np.count_nonzero(calibration_part & (labels == BONA_FIDE))),
                      "held_out": int(np.count_nonzero(held & (labels == BONA_FIDE)))},
    }


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def markdown(result: dict, title: str) -> str:
    """The table as markdown: one row per left-out species."""
    lines = [f"### {title}", "", "| left-out species | unseen APCER | worst seen APCER | BPCER (held-out bona fide) | "
             "attacks (no face) |", "|---|---|---|---|---|"]
    for name, row in result["species"].items():
        lines.append(f"| {name} | {_pct(row['unseen_apcer'])} | {_pct(row['seen_apcer_worst'])} | "
                     f"{_pct(row['bpcer'])} | {row['attacks_held_out']} ({row['attacks_no_face']}) |")
    lines += ["", f"Worst unseen species: **{result['worst_unseen_species']}** "
              f"({_pct(result['worst_unseen_apcer'])}) at a threshold set for BPCER "
              f"{100 * result['bpcer_target']:.0f} % on the calibration identities.", ""]
    return "\n".join(lines)


def evaluate(pipeline, checker, dataset: str, grey: bool = False) -> dict:
    """Score the set's cue rows once (bona fide as colour or greyscale copies), then run the table."""
    from appliance.evaluation import pad

    items = pad.scan(dataset)
    scores = pad.score_items(pipeline, checker, items, "passive", with_rows=True, grey=grey)
    result = leave_one_out(scores)
    result.update({"dataset": dataset, "greyscale_copies": grey, "synthetic": pad.synthetic_info(dataset) is not None,
                   "note": pad.SYNTHETIC_NOTE if pad.synthetic_info(dataset) else "real captures"})
    return result

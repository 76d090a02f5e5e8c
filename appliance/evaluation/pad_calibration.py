"""Fit the cue fusion on a labelled capture set and set the decision threshold.

The threshold is set on *out-of-fold* scores: the set is split into folds by identity (the
``<identity>__`` prefix of the item names, else one fold per item), each fold is scored by a
fusion fitted on the other folds, and the threshold is placed where the worst species'
APCER meets the target on those scores (or, with a BPCER target, where that share of the bona
fide is refused: the operating point for attacks no calibration saw). A threshold set on the
fitting data itself is too optimistic (the fit has seen those people and attacks), which shows
as a higher APCER or BPCER on new captures.
The fusion that is saved is then fitted on the whole set.

The runtime side (the calibration file, applying the fusion) is ``appliance.liveness.fusion``;
this module only writes what it reads.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.evaluation.pad import BONA_FIDE, PadItem, threshold_at_apcer
from appliance.liveness.fusion import FEATURES, MODEL_LIVE, Calibration, expand_features

FOLDS = 3
L2 = 1e-3  # leave-one-species-out (docs/liveness.md, "Fusion and decision"): 1e-2 underfits, 3e-4 is no better
NEWTON_STEPS = 60


def fit(rows: np.ndarray, is_attack: np.ndarray) -> tuple:
    """(mean, scale, weights, bias) of a class-balanced, L2-regularised logistic model over
    the cues and their squares (``fusion.expand_features``), fitted in Newton steps with numpy."""
    rows = np.asarray(rows, dtype=np.float64)
    y = np.asarray(is_attack, dtype=np.float64)
    if len(np.unique(y)) != 2:
        raise ApplianceError(ErrorCode.DATASET_INVALID, "calibration needs both bona fide and attack samples")
    mean, scale = rows.mean(axis=0), rows.std(axis=0) + 1e-9
    design = np.c_[expand_features((rows - mean) / scale), np.ones(len(rows))]
    balance = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    penalty = L2 * np.r_[np.ones(design.shape[1] - 1), 0.0]
    w = np.zeros(design.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ w, -50, 50)))
        gradient = design.T @ (balance * (p - y)) / len(y) + penalty * w
        hessian = (design * (balance * p * (1 - p))[:, None]).T @ design / len(y) + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return tuple(mean), tuple(scale), tuple(w[:-1]), float(w[-1])


def _groups(items: list[PadItem]) -> np.ndarray:
    names = [item.path.name.split("__")[0] if "__" in item.path.name else str(item.path) for item in items]
    unique = sorted(set(names))
    index = {name: i for i, name in enumerate(unique)}
    return np.array([index[name] for name in names])


def _item_scores(calibration: Calibration, matrix: np.ndarray, owners: np.ndarray, count: int) -> np.ndarray:
    live = calibration.live_scores(matrix)
    return np.array([np.median(live[owners == k]) for k in range(count)])


def calibrate(items: list[PadItem], rows: list[list[dict[str, float]]], target_apcer: float, model_bpcer: float,
              synthetic: bool, source: str, keep: Calibration | None = None, folds: int = FOLDS,
              target_bpcer: float | None = None) -> Calibration:
    """``rows[i]``: the cue values of each frame of ``items[i]`` in which a face was found.

    The threshold meets ``target_apcer`` on every species, or, with ``target_bpcer``, refuses that
    share of the bona fide (the operating point of issue 15: attacks a calibration never saw are
    not bounded by an APCER set on the ones it saw); either way on out-of-fold scores."""
    kept = [i for i, r in enumerate(rows) if r]
    items = [items[i] for i in kept]
    rows = [rows[i] for i in kept]
    owners = np.repeat(np.arange(len(items)), [len(r) for r in rows])
    flat = [value for r in rows for value in r]
    matrix = np.array([[value[name] for name in FEATURES] for value in flat])
    model_live = np.array([np.median([v[MODEL_LIVE] for v in r]) for r in rows])
    labels = np.array([item.label for item in items])
    is_attack = (labels != BONA_FIDE)[owners]
    model_floor = float(np.quantile(model_live[labels == BONA_FIDE], model_bpcer))

    def fitted(mask: np.ndarray) -> Calibration:
        if keep is not None:
            return keep
        mean, scale, weights, bias = fit(matrix[mask], is_attack[mask])
        return Calibration(FEATURES, mean, scale, weights, bias, 0.5, model_floor, {}, synthetic)

    fold_of = _groups(items) % folds
    held_out = np.zeros(len(items))
    for fold in range(folds):
        inside = fold_of == fold
        if not inside.any() or inside.all():
            continue
        model = fitted(~inside[owners])
        scores = _item_scores(model, matrix, owners, len(items))
        held_out[inside] = scores[inside]
    held_out = np.where(model_live < model_floor, 0.0, held_out)  # the model's veto
    attacks = {species: held_out[labels == species] for species in sorted(set(labels) - {BONA_FIDE})}
    bona = held_out[labels == BONA_FIDE]
    if target_bpcer is None:
        threshold = threshold_at_apcer(attacks, target_apcer)
    else:
        threshold = float(np.quantile(bona, target_bpcer))
    final = fitted(np.ones(len(matrix), dtype=bool))
    point = {
        "target_apcer": None if target_bpcer is not None else target_apcer, "target_bpcer": target_bpcer,
        "model_bpcer": model_bpcer, "folds": folds,
        "bpcer_out_of_fold": float(np.mean(bona < threshold)),
        "apcer_out_of_fold": {k: float(np.mean(v >= threshold)) for k, v in attacks.items()},
        "dataset": source, "bona_fide": int(len(bona)), "attacks": {k: int(len(v)) for k, v in attacks.items()},
        "date": dt.date.today().isoformat(), "fusion": "kept" if keep is not None else "fitted",
    }
    return Calibration(FEATURES, tuple(map(float, final.mean)), tuple(map(float, final.scale)),
                       tuple(map(float, final.weights)), float(final.bias), float(threshold), model_floor, point,
                       synthetic)


def merge_modes(existing: Calibration | None, fitted: dict[str, Calibration]) -> Calibration:
    """The calibration file after fitting only some modes: each mode (``colour`` = the top level,
    ``grey`` = its ``grey`` section) comes from ``fitted`` when it was fitted, else from
    ``existing``, so recalibrating one mode never drops the other."""
    colour = fitted.get("colour")
    if colour is None:
        if existing is None:
            raise ApplianceError(ErrorCode.LIVENESS_UNCALIBRATED,
                                 "no colour calibration to keep: calibrate the colour mode first")
        colour = existing
    grey = fitted["grey"] if "grey" in fitted else (existing.grey if existing is not None else None)
    return replace(colour, grey=replace(grey, grey=None) if grey is not None else None)


def load_existing(path: Path) -> Calibration | None:
    """The calibration file at ``path`` if there is one (None when absent): what ``merge_modes`` keeps."""
    return Calibration.load(path) if Path(path).is_file() else None

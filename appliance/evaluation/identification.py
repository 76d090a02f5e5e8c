"""1:N identification evaluation (ISO/IEC 19795-1): FNIR at fixed FPIR, rank-1 rate.

Gallery: the first acquired images of a seeded subset of identities (their templates
averaged). Mated probes: those identities' other images. Non-mated probes: every image of
the identities left out of the gallery.
"""
from __future__ import annotations

import math

import numpy as np

from appliance.evaluation import metrics
from appliance.evaluation.runner import DatasetTemplates
from appliance.vision.templates import normalise

FPIR_TARGETS = {"1e-2": 1e-2, "1e-3": 1e-3}


def split_gallery(data: DatasetTemplates, gallery_fraction: float, gallery_images: int, seed: int):
    labels = data.labels
    identities = sorted(set(labels[data.acquired]))
    rng = np.random.default_rng(seed)
    enrolled = set(rng.permutation(identities)[: max(1, int(round(gallery_fraction * len(identities))))])
    gallery_ids, gallery_vectors, mated, non_mated = [], [], [], []
    for identity in identities:
        rows = [i for i in np.flatnonzero(labels == identity) if data.acquired[i]]
        if identity in enrolled and len(rows) > gallery_images:
            gallery_ids.append(identity)
            gallery_vectors.append(data.vectors[rows[:gallery_images]].sum(axis=0))
            mated += [(i, len(gallery_ids) - 1) for i in rows[gallery_images:]]
        elif identity not in enrolled:
            non_mated += rows
    return gallery_ids, normalise(np.array(gallery_vectors)), mated, non_mated


def evaluate(
    data: DatasetTemplates, model: dict, gallery_fraction: float = 0.7, gallery_images: int = 1, seed: int = 0
) -> dict:
    gallery_ids, gallery, mated, non_mated = split_gallery(data, gallery_fraction, gallery_images, seed)
    mated_rows = np.array([row for row, _ in mated], dtype=int)
    mated_truth = np.array([index for _, index in mated], dtype=int)
    mated_scores = data.vectors[mated_rows] @ gallery.T
    top = mated_scores.argmax(axis=1)
    top_score = mated_scores.max(axis=1)
    correct = top == mated_truth
    non_mated_top = (data.vectors[np.array(non_mated, dtype=int)] @ gallery.T).max(axis=1)
    fnir_at, threshold_at, counts = {}, {}, {}
    for key, target in FPIR_TARGETS.items():
        if not metrics.estimable(len(non_mated_top), target):
            fnir_at[key] = threshold_at[key] = None
            continue
        threshold = metrics.threshold_at_fmr(non_mated_top, target)
        misses = int(np.count_nonzero(~(correct & (top_score >= threshold))))
        false_positives = int(np.count_nonzero(non_mated_top >= threshold))
        fnir_at[key], threshold_at[key] = misses / max(1, len(mated_rows)), threshold
        counts[key] = {
            "misses": misses,
            "mated_searches": int(len(mated_rows)),
            "fnir_ci95": list(metrics.wilson_interval(misses, len(mated_rows))),
            "false_positives": false_positives,
            "non_mated_searches": int(len(non_mated_top)),
        }
    return {
        "images": len(data.samples),
        "gallery_identities": len(gallery_ids),
        "gallery_images_per_identity": gallery_images,
        "mated_searches": int(len(mated_rows)),
        "non_mated_searches": int(len(non_mated_top)),
        "fta_rate": float(np.count_nonzero(~data.acquired) / max(1, len(data.samples))),
        "rank1_rate": float(correct.mean()) if len(correct) else math.nan,
        "fnir_at_fpir": fnir_at,
        "threshold_at_fpir": threshold_at,
        "operating_points": counts,
        "seed": seed,
        "model": model,
    }

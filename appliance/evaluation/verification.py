"""1:1 verification evaluation (ISO/IEC 19795-1): FTA, FTE, EER, FNMR at fixed FMR, DET."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from appliance.enrollment import ENROLLMENT_ATTEMPTS
from appliance.evaluation import metrics
from appliance.evaluation.runner import DatasetTemplates
MAX_IMPOSTORS_ALL = 5_000_000  # above this, a seeded sample of SAMPLED_IMPOSTORS pairs
SAMPLED_IMPOSTORS = 2_000_000


@dataclass
class VerificationScores:
    genuine: np.ndarray
    impostor: np.ndarray


def fte_rate(data: DatasetTemplates) -> tuple[float, int, int]:
    attempts: dict[str, list[bool]] = defaultdict(list)
    for sample, ok in zip(data.samples, data.enrollment_ok):
        if len(attempts[sample.identity]) < ENROLLMENT_ATTEMPTS:
            attempts[sample.identity].append(bool(ok))
    failed = sum(1 for tries in attempts.values() if not any(tries))
    return failed / max(1, len(attempts)), failed, len(attempts)


def scores(data: DatasetTemplates, seed: int = 0) -> VerificationScores:
    labels = data.labels[data.acquired]
    vectors = data.vectors[data.acquired]
    total = len(labels) * (len(labels) - 1) // 2
    limit = MAX_IMPOSTORS_ALL if total <= MAX_IMPOSTORS_ALL else SAMPLED_IMPOSTORS
    genuine, impostor = metrics.pair_scores(vectors, labels, limit, seed)
    return VerificationScores(genuine, impostor)


def report(data: DatasetTemplates, result: VerificationScores, model: dict, configured_threshold: float | None) -> dict:
    """The report; the keys of ``CONTRACT_KEYS`` are a stable contract."""
    genuine, impostor = result.genuine, result.impostor
    images = len(data.samples)
    fte, fte_failed, identities = fte_rate(data)
    eer, eer_threshold = metrics.equal_error_rate(genuine, impostor)
    fnmr_at, threshold_at, details = {}, {}, {}
    for key, target in metrics.FMR_TARGETS.items():
        if not metrics.estimable(len(impostor), target):
            fnmr_at[key] = threshold_at[key] = None  # too few impostor pairs to estimate
            continue
        threshold = metrics.threshold_at_fmr(impostor, target)
        point = metrics.operating_point(genuine, impostor, threshold)
        fnmr_at[key], threshold_at[key], details[key] = point.fnmr, threshold, point.as_dict()
    out = {
        "images": images,
        "identities": identities,
        "fta_rate": float(np.count_nonzero(~data.acquired) / max(1, images)),
        "fte_rate": fte,
        "genuine_pairs": int(len(genuine)),
        "impostor_pairs": int(len(impostor)),
        "eer": eer,
        "fnmr_at_fmr": fnmr_at,
        "threshold_at_fmr": threshold_at,
        "model": model,
        # details behind the contract keys
        "failures_to_acquire": int(np.count_nonzero(~data.acquired)),
        "unreadable_images": data.unreadable,
        "failures_to_enrol": fte_failed,
        "eer_threshold": eer_threshold,
        "operating_points": details,
        "confidence_intervals": "95 % Wilson score intervals on comparison counts",
    }
    if configured_threshold is not None:
        out["at_configured_threshold"] = metrics.operating_point(genuine, impostor, configured_threshold).as_dict()
    return out


CONTRACT_KEYS = (
    "images", "identities", "fta_rate", "fte_rate", "genuine_pairs", "impostor_pairs", "eer",
    "fnmr_at_fmr", "threshold_at_fmr", "model",
)

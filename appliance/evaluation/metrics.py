"""Error rates from comparison scores: FMR/FNMR, EER, DET curves, confidence intervals.

Scores are similarities (higher = more alike); a comparison is a match when score >= t.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FMR_TARGETS = {"1e-2": 1e-2, "1e-3": 1e-3, "1e-4": 1e-4}
Z95 = 1.959963984540054


def wilson_interval(errors: int, trials: int, z: float = Z95) -> tuple[float, float]:
    """95 % Wilson score interval of a binomial rate (treats comparisons as independent,
    which understates the width when one image appears in many pairs)."""
    if trials == 0:
        return (math.nan, math.nan)
    p = errors / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def comparisons_needed(target: float) -> int:
    """The fewest impostor comparisons that can set a threshold at the rate ``target``: at least
    one false match must be allowed. With fewer the threshold sits above every impostor score, a
    rate of 0 in n that says nothing about ``target``."""
    return math.ceil(1 / target)


def estimable(comparisons: int, target: float) -> bool:
    """Whether ``comparisons`` impostor comparisons can set a threshold at ``target`` (``comparisons_needed``)."""
    return comparisons >= comparisons_needed(target)


def threshold_at_fmr(impostor: np.ndarray, target: float) -> float:
    """The lowest threshold whose false-match rate does not exceed ``target``."""
    if not len(impostor):
        raise ValueError("no impostor scores to set a threshold from")
    ordered = np.sort(np.asarray(impostor, dtype=np.float64))[::-1]
    allowed = int(math.floor(target * len(ordered)))
    if allowed >= len(ordered):
        return float(ordered[-1])
    # accept strictly above the (allowed+1)-th highest impostor score
    return float(np.nextafter(ordered[allowed], np.inf))


@dataclass(frozen=True)
class OperatingPoint:
    threshold: float
    fmr: float
    fnmr: float
    false_matches: int
    false_non_matches: int
    impostor_pairs: int
    genuine_pairs: int

    @property
    def fnmr_ci95(self) -> tuple[float, float]:
        return wilson_interval(self.false_non_matches, self.genuine_pairs)

    @property
    def fmr_ci95(self) -> tuple[float, float]:
        return wilson_interval(self.false_matches, self.impostor_pairs)

    def as_dict(self) -> dict:
        return {
            "threshold": self.threshold,
            "fmr": self.fmr,
            "fnmr": self.fnmr,
            "fnmr_ci95": list(self.fnmr_ci95),
            "fmr_ci95": list(self.fmr_ci95),
            "false_matches": self.false_matches,
            "false_non_matches": self.false_non_matches,
            "impostor_pairs": self.impostor_pairs,
            "genuine_pairs": self.genuine_pairs,
        }


def operating_point(genuine: np.ndarray, impostor: np.ndarray, threshold: float) -> OperatingPoint:
    false_matches = int(np.count_nonzero(impostor >= threshold))
    false_non_matches = int(np.count_nonzero(genuine < threshold))
    return OperatingPoint(
        threshold=float(threshold),
        fmr=false_matches / max(1, len(impostor)),
        fnmr=false_non_matches / max(1, len(genuine)),
        false_matches=false_matches,
        false_non_matches=false_non_matches,
        impostor_pairs=len(impostor),
        genuine_pairs=len(genuine),
    )


def det_curve(
    genuine: np.ndarray, impostor: np.ndarray, points: int = 2000
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, fmr, fnmr) over the score range, for plots and the EER."""
    genuine = np.sort(np.asarray(genuine, dtype=np.float64))
    impostor = np.sort(np.asarray(impostor, dtype=np.float64))
    scores = np.concatenate([genuine, impostor])
    thresholds = np.unique(np.quantile(scores, np.linspace(0, 1, points)))
    fnmr = np.searchsorted(genuine, thresholds, side="left") / max(1, len(genuine))
    fmr = 1.0 - np.searchsorted(impostor, thresholds, side="left") / max(1, len(impostor))
    return thresholds, fmr, fnmr


def equal_error_rate(genuine: np.ndarray, impostor: np.ndarray) -> tuple[float, float]:
    """(EER, threshold) where FMR and FNMR cross, from all distinct scores."""
    genuine = np.sort(np.asarray(genuine, dtype=np.float64))
    impostor = np.sort(np.asarray(impostor, dtype=np.float64))
    thresholds = np.unique(np.concatenate([genuine, impostor]))
    fnmr = np.searchsorted(genuine, thresholds, side="left") / len(genuine)
    fmr = 1.0 - np.searchsorted(impostor, thresholds, side="left") / len(impostor)
    index = int(np.argmin(np.abs(fmr - fnmr)))
    return float((fmr[index] + fnmr[index]) / 2), float(thresholds[index])


def pair_scores(
    vectors: np.ndarray, labels: np.ndarray, max_impostors: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """All genuine pairs and all impostor pairs (or a seeded sample of ``max_impostors``)."""
    count = len(vectors)
    genuine_parts, impostor_parts = [], []
    upper = np.triu_indices(count, k=1)
    total_impostors = int(np.count_nonzero(labels[upper[0]] != labels[upper[1]]))
    keep = 1.0 if total_impostors <= max_impostors else max_impostors / total_impostors
    rng = np.random.default_rng(seed)
    block = 1024
    for start in range(0, count, block):
        rows = slice(start, min(count, start + block))
        scores = vectors[rows] @ vectors.T
        row_index = np.arange(rows.start, rows.stop)[:, None]
        above = np.arange(count)[None, :] > row_index
        same = labels[rows][:, None] == labels[None, :]
        genuine_parts.append(scores[above & same])
        impostor = scores[above & ~same]
        if keep < 1.0:
            impostor = impostor[rng.random(len(impostor)) < keep]
        impostor_parts.append(impostor)
    return np.concatenate(genuine_parts), np.concatenate(impostor_parts)

"""Five-point similarity alignment to an embedder's canonical crop."""
from __future__ import annotations

import cv2
import numpy as np

# ArcFace / InsightFace reference points for a 112x112 crop.
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)

CANONICAL = {"arcface-112": (ARCFACE_112, (112, 112))}


def similarity_transform(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares similarity (Umeyama 1991) mapping ``source`` points onto ``target``; 2x3."""
    src = np.asarray(source, dtype=np.float64)
    dst = np.asarray(target, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(covariance)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1
    rotation = u @ np.diag(d) @ vt
    variance = (src_c**2).sum() / len(src)
    scale = (s * d).sum() / variance if variance > 0 else 1.0
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]])


def align(image: np.ndarray, five_points: np.ndarray, layout: str = "arcface-112") -> np.ndarray:
    """Warp ``image`` so the five points land on the canonical layout's reference points."""
    try:
        reference, size = CANONICAL[layout]
    except KeyError:
        raise ValueError(f"unknown alignment layout {layout!r}; known: {sorted(CANONICAL)}") from None
    matrix = similarity_transform(five_points, reference)
    return cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

"""Face templates: L2-normalised float32 vectors tagged with the pack that made them."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.errors import ApplianceError, ErrorCode


@dataclass(frozen=True)
class Template:
    vector: np.ndarray  # (d,) float32, unit length
    pack_id: str
    pack_version: str

    @property
    def pack_label(self) -> str:
        return f"{self.pack_id}@{self.pack_version}"


def normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def check_compatible(a: Template, b: Template) -> None:
    if (a.pack_id, a.pack_version) != (b.pack_id, b.pack_version):
        raise ApplianceError(
            ErrorCode.PACK_MISMATCH, f"cannot compare {a.pack_label} with {b.pack_label}; re-enrol with one pack"
        )


def similarity(a: Template, b: Template) -> float:
    """Cosine similarity of two templates of the same pack."""
    check_compatible(a, b)
    return float(np.dot(a.vector, b.vector))


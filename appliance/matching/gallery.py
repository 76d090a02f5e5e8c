"""In-memory template gallery with exact cosine search (1:1 verify, 1:N identify).

Templates are kept in one contiguous float32 matrix so a 1:N search is a single
matrix-vector product; removal swaps the last row in, so it is O(d).
The gallery answers with candidates; similarity scores never leave ``appliance.matching``:
``MatchEngine`` turns a ``Candidate`` into a ``Verdict`` and callers see only that.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.vision.templates import Template, check_compatible

INITIAL_CAPACITY = 1024


@dataclass(frozen=True)
class Candidate:
    subject_id: str
    score: float


class Gallery:
    def __init__(self, pack_id: str, pack_version: str, dimension: int):
        self.pack_id, self.pack_version, self.dimension = pack_id, pack_version, dimension
        self._matrix = np.zeros((INITIAL_CAPACITY, dimension), dtype=np.float32)
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, subject_id: str) -> bool:
        return subject_id in self._rows

    def _check(self, template: Template) -> None:
        check_compatible(template, Template(template.vector, self.pack_id, self.pack_version))
        if template.vector.shape != (self.dimension,):
            raise ApplianceError(ErrorCode.PACK_MISMATCH,
                                 f"template of size {template.vector.shape}, gallery {self.dimension}")

    def upsert(self, subject_id: str, template: Template) -> None:
        self._check(template)
        row = self._rows.get(subject_id)
        if row is None:
            row = len(self._ids)
            if row == len(self._matrix):
                self._matrix = np.concatenate([self._matrix, np.zeros_like(self._matrix)])
            self._ids.append(subject_id)
            self._rows[subject_id] = row
        self._matrix[row] = template.vector

    def load(self, subject_ids: list[str], vectors: np.ndarray) -> None:
        """Bulk load (start-up, benchmarks): one copy instead of one upsert per subject."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(subject_ids), self.dimension):
            raise ApplianceError(ErrorCode.PACK_MISMATCH, f"vectors {vectors.shape} for {len(subject_ids)} subjects")
        if len(set(subject_ids)) != len(subject_ids) or self._ids:
            raise ValueError("bulk load needs an empty gallery and distinct subject ids")
        spare = np.zeros((INITIAL_CAPACITY, self.dimension), np.float32)
        self._matrix = np.ascontiguousarray(np.vstack([vectors, spare]))
        self._ids = list(subject_ids)
        self._rows = {subject: row for row, subject in enumerate(self._ids)}

    def remove(self, subject_id: str) -> bool:
        row = self._rows.pop(subject_id, None)
        if row is None:
            return False
        last = len(self._ids) - 1
        if row != last:
            moved = self._ids[last]
            self._matrix[row] = self._matrix[last]
            self._ids[row] = moved
            self._rows[moved] = row
        self._matrix[last] = 0.0  # do not leave the deleted template in memory
        self._ids.pop()
        return True

    def best(self, template: Template) -> Candidate | None:
        """The most similar enrolled subject (1:N), or None for an empty gallery."""
        self._check(template)
        if not self._ids:
            return None
        scores = self._matrix[: len(self._ids)] @ template.vector
        row = int(np.argmax(scores))
        return Candidate(self._ids[row], float(scores[row]))

    def score(self, subject_id: str, template: Template) -> float | None:
        """Similarity to one claimed subject (1:1), None when not enrolled."""
        self._check(template)
        row = self._rows.get(subject_id)
        return None if row is None else float(self._matrix[row] @ template.vector)

"""In-memory template gallery with cosine search (1:1 verify, 1:N identify).

Templates are kept in one contiguous float32 matrix so a 1:N search is a single
matrix-vector product; removal swaps the last row in, so it is O(d).
Up to ``IndexSettings.exact_limit`` templates every search is exact; a batch of probes is
scanned first in int8 by ONNX Runtime (``Int8Scan``, built on the first batch), which proposes
every row that can be a probe's best, and those rows are scored exactly. Above the limit a
``CandidateIndex`` (a FAISS scan of 8-bit codes) proposes a short list of rows and the gallery
re-scores them exactly from the float32 matrix, so a returned score is always exact; adds and
removals update the index row for row (no rebuild). Measured choice: docs/search.md.
The gallery answers with candidates; similarity scores never leave ``appliance.matching``:
``MatchEngine`` turns a ``Candidate`` into a ``Verdict`` and callers see only that.
Every public method holds the gallery's lock, so searches and changes may come from any thread.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.matching.index import CandidateIndex, IndexSettings
from appliance.matching.int8_scan import Int8Scan
from appliance.vision.templates import Template, check_compatible

INITIAL_CAPACITY = 1024
EXACT_BLOCK_ROWS = 65_536  # rows per block of a batched exact search (a 64k x batch score buffer)
DROP_INDEX_BELOW = 0.5  # the index is dropped when the gallery shrinks below this share of exact_limit
# fewest scores (rows x probes) for which a search goes through the int8 scan: below, float32 is
# as cheap (the scan has a fixed cost of ~70 µs a search); measured crossovers: 4-6k rows for one
# probe, 1-2k rows for 8 (docs/search.md)
SCAN_MIN_SCORES = 5_000

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Candidate:
    subject_id: str
    score: float


class Gallery:
    def __init__(self, pack_id: str, pack_version: str, dimension: int, settings: IndexSettings | None = None):
        self.pack_id, self.pack_version, self.dimension = pack_id, pack_version, dimension
        self.settings = settings or IndexSettings()
        self._matrix = np.zeros((INITIAL_CAPACITY, dimension), dtype=np.float32)
        self._ids: list[str] = []
        self._rows: dict[str, int] = {}
        self._index: CandidateIndex | None = None
        self._scan: Int8Scan | None = None  # built on the first batched exact search, dropped with exact search
        self._scan_usable = True  # False once onnxruntime failed to run the scan: float32 from then on
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, subject_id: str) -> bool:
        return subject_id in self._rows

    @property
    def indexed(self) -> bool:
        """True while searches go through the candidate index rather than the whole matrix."""
        return self._index is not None

    @property
    def matrix_bytes(self) -> int:
        """Bytes of the float32 rows in use (not the spare capacity the matrix grows into)."""
        return self._matrix[: len(self._ids)].nbytes

    @property
    def index_bytes(self) -> int:
        """Bytes the candidate index holds beside the float32 matrix (0 while searches are exact)."""
        return 0 if self._index is None else self._index.nbytes

    @property
    def scan_bytes(self) -> int:
        """Bytes the int8 scan of the exact path holds beside the float32 matrix (0 until a batch came)."""
        return 0 if self._scan is None else self._scan.nbytes

    def _check(self, template: Template) -> None:
        check_compatible(template, Template(template.vector, self.pack_id, self.pack_version))
        if template.vector.shape != (self.dimension,):
            raise ApplianceError(ErrorCode.PACK_MISMATCH,
                                 f"template of size {template.vector.shape}, gallery {self.dimension}")

    def _follow_size(self) -> None:
        """Build the index when the gallery reaches ``exact_limit``, drop it well below."""
        size = len(self._ids)
        if self._index is None and size >= self.settings.exact_limit:
            self._index = CandidateIndex(self._matrix[:size], self.settings)
            self._scan = None  # the index answers from now on
        elif self._index is not None and size < DROP_INDEX_BELOW * self.settings.exact_limit:
            self._index.close()  # its range scanners: threads, not memory the collector would free soon
            self._index = None

    def upsert(self, subject_id: str, template: Template) -> None:
        self._check(template)
        with self._lock:
            row = self._rows.get(subject_id)
            if row is None:
                row = len(self._ids)
                if row == len(self._matrix):
                    self._matrix = np.concatenate([self._matrix, np.zeros_like(self._matrix)])
                self._ids.append(subject_id)
                self._rows[subject_id] = row
            self._matrix[row] = template.vector
            if self._index is not None:
                self._index.put(row, self._matrix[row])
            if self._scan is not None:
                self._scan.put(row, self._matrix[row])
            self._follow_size()

    def load(self, subject_ids: list[str], vectors: np.ndarray) -> None:
        """Bulk load (start-up, benchmarks): one copy instead of one upsert per subject."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(subject_ids), self.dimension):
            raise ApplianceError(ErrorCode.PACK_MISMATCH, f"vectors {vectors.shape} for {len(subject_ids)} subjects")
        with self._lock:
            if len(set(subject_ids)) != len(subject_ids) or self._ids:
                raise ValueError("bulk load needs an empty gallery and distinct subject ids")
            spare = np.zeros((INITIAL_CAPACITY, self.dimension), np.float32)
            self._matrix = np.ascontiguousarray(np.vstack([vectors, spare]))
            self._ids = list(subject_ids)
            self._rows = {subject: row for row, subject in enumerate(self._ids)}
            self._scan = None  # rebuilt from the new rows by the next batch
            self._follow_size()

    def remove(self, subject_id: str) -> bool:
        with self._lock:
            row = self._rows.pop(subject_id, None)
            if row is None:
                return False
            last = len(self._ids) - 1
            if self._index is not None:
                self._index.remove(row)  # moves its last row in too, as below
            if self._scan is not None:
                self._scan.remove(row)  # likewise
            if row != last:
                moved = self._ids[last]
                self._matrix[row] = self._matrix[last]
                self._ids[row] = moved
                self._rows[moved] = row
            self._matrix[last] = 0.0  # do not leave the deleted template in memory
            self._ids.pop()
            self._follow_size()
            return True

    def best(self, template: Template) -> Candidate | None:
        """The most similar enrolled subject (1:N), or None for an empty gallery."""
        return self.best_batch([template])[0]

    def best_batch(self, templates: list[Template]) -> list[Candidate | None]:
        """``best`` for several probes at once: one pass over the matrix, or one index search."""
        for template in templates:
            self._check(template)
        if not templates:
            return []
        probes = np.stack([template.vector for template in templates]).astype(np.float32, copy=False)
        with self._lock:
            size = len(self._ids)
            if not size:
                return [None] * len(templates)
            if self._index is None:
                return self._exact(probes, size)
            found = []
            for probe, rows in zip(probes, self._index.candidates(probes)):
                rows = rows[(rows >= 0) & (rows < size)]
                scores = self._matrix[rows] @ probe  # exact re-ranking of the candidates
                best = int(np.argmax(scores))
                found.append(Candidate(self._ids[int(rows[best])], float(scores[best])))
            return found

    def _exact(self, probes: np.ndarray, size: int) -> list[Candidate | None]:
        """Exact search: through the int8 scan and an exact re-score of the rows it proposes when the
        search is big enough (``SCAN_MIN_SCORES``), else or where the scan cannot run through the
        matrix (a batch in row blocks, bounding the score buffer)."""
        if (self.settings.exact_scan and size * len(probes) >= SCAN_MIN_SCORES and np.isfinite(probes).all()
                and self._int8_scan(size) is not None):
            found = self._scan.candidates(probes, self._matrix[:size])
            if found is not None:
                return self._rescored(probes, *found)
        if len(probes) == 1:
            scores = self._matrix[:size] @ probes[0]
            row = int(np.argmax(scores))
            return [Candidate(self._ids[row], float(scores[row]))]
        best_rows = np.zeros(len(probes), dtype=np.int64)
        best_scores = np.full(len(probes), -np.inf, dtype=np.float32)
        for start in range(0, size, EXACT_BLOCK_ROWS):
            scores = self._matrix[start : min(size, start + EXACT_BLOCK_ROWS)] @ probes.T
            rows = scores.argmax(axis=0)
            top = scores[rows, np.arange(len(probes))]
            better = top > best_scores
            best_rows[better], best_scores[better] = rows[better] + start, top[better]
        return [Candidate(self._ids[int(r)], float(s)) for r, s in zip(best_rows, best_scores)]

    def _int8_scan(self, size: int) -> Int8Scan | None:
        """The int8 copy of the rows, built on first use; None where onnxruntime cannot run it."""
        if self._scan is None and self._scan_usable:
            try:
                self._scan = Int8Scan(self._matrix[:size], self.settings.scan_threads)
            except Exception as error:  # noqa: BLE001 - onnxruntime's errors derive from Exception only
                log.warning("int8 scan unavailable, exact search stays float32: %s", error)
                self._scan_usable = False
        return self._scan

    def _rescored(self, probes: np.ndarray, probe_of: np.ndarray, rows: np.ndarray) -> list[Candidate | None]:
        """Each probe's best proposed row by its exact float32 score (the lowest row among equal
        scores, as ``argmax`` picks); the scan proposes at least one row per probe."""
        scores = np.einsum("ij,ij->i", self._matrix[rows], probes[probe_of])
        order = np.lexsort((rows, -scores, probe_of))
        first = order[np.flatnonzero(np.diff(probe_of[order], prepend=-1))]
        return [Candidate(self._ids[int(rows[pick])], float(scores[pick])) for pick in first]

    def score(self, subject_id: str, template: Template) -> float | None:
        """Similarity to one claimed subject (1:1), None when not enrolled."""
        self._check(template)
        with self._lock:
            row = self._rows.get(subject_id)
            return None if row is None else float(self._matrix[row] @ template.vector)

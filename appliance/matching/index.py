"""Candidate index for large galleries: 8-bit scalar-quantised copy of the gallery, scanned by FAISS.

An exact 1:N search reads every float32 template (2 GB per query at a million), so it is
memory-bound. Above ``IndexSettings.exact_limit`` templates the gallery scans this index
instead: one byte per dimension (a quarter of the bytes, per-dimension ranges trained on the
gallery), decoded and scored by FAISS's SIMD kernels, and the best ``rerank`` rows go back to
the gallery, which re-scores them exactly in float32. The returned score is therefore exact and
every template is looked at (no clustering that can miss the nearest one), so only a
quantisation error larger than the gap between the first and the ``rerank``-th candidate could
change an answer. Why this and not IVF, HNSW or PQ: measured in docs/search.md.

Rows of the index are the gallery's rows, kept in the same order: an add appends, a removal
moves the last code into the freed row and zeroes the last code before the buffer shrinks,
so a deleted template leaves no quantised copy behind. Not thread-safe by itself: ``Gallery``
holds its lock around every call.

Threads: FAISS spreads a batch of probes over its OpenMP threads, one probe per thread, so a
single probe would scan on one thread while the others only wait (slower than one thread on a
loaded machine). With fewer probes than threads the rows are cut into one contiguous range per
thread instead, each scanned by a worker pinned to one OpenMP thread, and the per-range best
rows are merged before the exact re-rank: the same candidates, found in parallel.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 200_000  # below this many templates exact float32 search is fast enough (~40 ms at 200k)
EXACT_LIMIT_BOUNDS = (1_000, 10_000_000)
RERANK = 64  # candidates re-scored exactly in float32
RERANK_BOUNDS = (1, 4_096)
SCAN_THREADS = 1  # ONNX Runtime threads of the exact path's int8 scan: the caller's own thread
SCAN_THREADS_BOUNDS = (1, 64)
TRAINING_SAMPLE = 100_000  # rows that set the per-dimension ranges (seeded sample of the gallery)
TRAINING_SEED = 1234
# fewest rows per range worth a thread: ~2 ms of scanning here (~25k rows/ms), against ~0.1 ms
# to hand a range to a worker and merge; the default exact_limit (200k) always gives bigger ranges
SHARD_MIN_ROWS = 50_000


def _bounded(name: str, value: int, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if not low <= value <= high:
        raise ValueError(f"{name} = {value} is outside [{low}, {high}]")
    return value


@dataclass(frozen=True)
class IndexSettings:
    """When the gallery switches from exact search to the index, how many rows it re-ranks, and
    whether and with how many threads exact search scans an int8 copy first (``int8_scan.Int8Scan``)."""

    exact_limit: int = EXACT_LIMIT
    rerank: int = RERANK
    scan_threads: int = SCAN_THREADS
    exact_scan: bool = True  # False: exact search stays float32 throughout (a benchmark's reference)

    def __post_init__(self) -> None:
        _bounded("exact_limit", self.exact_limit, EXACT_LIMIT_BOUNDS)
        _bounded("rerank", self.rerank, RERANK_BOUNDS)
        _bounded("scan_threads", self.scan_threads, SCAN_THREADS_BOUNDS)


class CandidateIndex:
    """FAISS ``IndexScalarQuantizer`` (8 bit, inner product) whose rows mirror the gallery's."""

    def __init__(self, vectors: np.ndarray, settings: IndexSettings):
        import faiss  # a large native library: loaded only when a gallery grows past the limit

        self._faiss = faiss
        self.settings = settings
        size, dimension = vectors.shape
        index = faiss.IndexScalarQuantizer(dimension, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        if size > TRAINING_SAMPLE:
            picked = np.sort(np.random.default_rng(TRAINING_SEED).choice(size, TRAINING_SAMPLE, replace=False))
            index.train(np.ascontiguousarray(vectors[picked]))
        else:
            index.train(np.ascontiguousarray(vectors))
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self._index = index
        self._pool: ThreadPoolExecutor | None = None  # the range scanners, made on first use
        self._pool_size = 0

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def nbytes(self) -> int:
        """Bytes of the quantised codes (what the index adds beside the float32 matrix)."""
        return len(self) * int(self._index.code_size)

    def _codes(self) -> np.ndarray:
        """A view of the codes, one row per template; taken afresh since a resize may move them."""
        index = self._index
        flat = self._faiss.rev_swig_ptr(index.codes.data(), index.ntotal * index.code_size)
        return flat.reshape(index.ntotal, index.code_size)

    def put(self, row: int, vector: np.ndarray) -> None:
        """Set row ``row`` to ``vector``: replace an existing row, or append at the end."""
        vector = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, -1)
        if row == len(self):
            self._index.add(vector)
        elif 0 <= row < len(self):
            self._codes()[row] = self._index.sa_encode(vector)[0]
        else:
            raise IndexError(f"row {row} of an index of {len(self)}")

    def remove(self, row: int) -> None:
        """Move the last code into ``row``, zero the last and shrink (the gallery does the same)."""
        last = len(self) - 1
        codes = self._codes()
        codes[row] = codes[last]
        codes[last] = 0
        self._index.codes.resize(last * self._index.code_size)
        self._index.ntotal = last

    def candidates(self, probes: np.ndarray) -> np.ndarray:
        """The ``rerank`` most promising rows per probe (``-1`` pads short answers).

        As many threads as OpenMP allows the calling thread (``faiss.omp_set_num_threads``,
        threadpoolctl): a batch of at least that many probes goes to FAISS, which gives each
        thread its probes; fewer probes scan one range of rows per thread (module docstring)."""
        probes = np.ascontiguousarray(probes, dtype=np.float32)
        count = min(self.settings.rerank, len(self))
        ranges = min(self._faiss.omp_get_max_threads(), len(self) // SHARD_MIN_ROWS)
        if len(probes) >= ranges:
            _, rows = self._index.search(probes, count)
            return rows
        bounds = np.linspace(0, len(self), ranges + 1).astype(np.int64)
        found = list(self._scanners(ranges).map(lambda low, high: self._scan(probes, count, int(low), int(high)),
                                                bounds[:-1], bounds[1:]))
        scores = np.concatenate([part[0] for part in found], axis=1)
        rows = np.concatenate([part[1] for part in found], axis=1)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :count]  # inner product: higher is nearer
        return np.take_along_axis(rows, best, axis=1)

    def _scan(self, probes: np.ndarray, count: int, low: int, high: int) -> tuple[np.ndarray, np.ndarray]:
        """The best ``count`` rows in ``[low, high)`` (global row numbers), on this worker's one thread."""
        selector = self._faiss.IDSelectorRange(low, high)  # a local: params holds only a pointer to it
        params = self._faiss.SearchParameters()
        params.sel = selector
        return self._index.search(probes, min(count, high - low), params=params)

    def _scanners(self, workers: int) -> ThreadPoolExecutor:
        """Workers that each scan on one OpenMP thread (the setting is per thread)."""
        if self._pool is None or self._pool_size < workers:
            self.close()
            self._pool = ThreadPoolExecutor(workers, thread_name_prefix="index-scan",
                                            initializer=self._faiss.omp_set_num_threads, initargs=(1,))
            self._pool_size = workers
        return self._pool

    def close(self) -> None:
        """Stop the range scanners (idle threads; also stopped when the index is collected)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool, self._pool_size = None, 0

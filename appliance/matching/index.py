"""Candidate index for large galleries: 8-bit scalar-quantised copy of the gallery, scanned by FAISS.

An exact 1:N search reads every float32 template (2 GB per query at a million), so it is
memory-bound. Above ``IndexSettings.exact_limit`` templates the gallery scans this index
instead: one byte per dimension (a quarter of the bytes), decoded and scored by FAISS's SIMD
kernels, and the best ``rerank`` rows go back to the gallery, which re-scores them exactly in
float32. The returned score is therefore exact and
every template is looked at (no clustering that can miss the nearest one), so only a
quantisation error larger than the gap between the first and the ``rerank``-th candidate could
change an answer. Why this and not IVF, HNSW or PQ: measured in docs/search.md.

The codes are FAISS's signed 8-bit "direct" codes: every component times one scale for the whole
index (``CODE_PEAK`` over the largest component at build; a later row's larger component is
clipped), rounded. Decoding is then a plain integer-to-float conversion, where per-dimension
trained ranges (``QT_8bit``) cost a multiply-add per component: on a host without AVX-512 a
million-row scan took 84 ms that way against 37 ms (issue 17). The probe is made integers the
same way, with a scale of its own (FAISS's SIMD kernel for these codes truncates the query's
components to integers: a unit vector's would all be 0), so a score is an integer inner product
(exact in float32 up to 1,040 dimensions: 127 x 127 x 1,040 < 2^24); one scale per index and one
per probe multiply all of a probe's scores by the same factor, so they rank the rows as the
scaled vectors do.

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
CODE_PEAK = 127  # the largest code magnitude: signed 8-bit codes, symmetric around 0
ENCODE_BLOCK_ROWS = 65_536  # rows scaled at once when built (bounds the float32 temporary: 128 MB at 512)
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


SMALLEST_PEAK = float(np.finfo(np.float32).tiny)  # a zero vector's peak: its scale stays finite


def _finite_peak(vectors: np.ndarray, axis: int | None = None) -> np.ndarray:
    """The largest finite component magnitude (at least ``SMALLEST_PEAK``): of all of ``vectors``,
    or per row with ``axis=1`` (kept as a column)."""
    magnitudes = np.abs(vectors)
    peak = np.max(magnitudes, axis=axis, keepdims=axis is not None, where=np.isfinite(magnitudes), initial=0.0)
    return np.maximum(peak, SMALLEST_PEAK)


def _integers(vectors: np.ndarray, scale: float | np.ndarray) -> np.ndarray:
    """``vectors`` times ``scale``, as the integers a code holds (float32, a new array): rounded,
    clipped to ``CODE_PEAK``, a non-finite component 0, so FAISS only ever converts integers in range."""
    scaled = np.multiply(vectors, scale, dtype=np.float32)
    np.nan_to_num(scaled, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    np.rint(scaled, out=scaled)
    return np.clip(scaled, -CODE_PEAK, CODE_PEAK, out=scaled)


class CandidateIndex:
    """FAISS ``IndexScalarQuantizer`` (8 bit, inner product) whose rows mirror the gallery's."""

    def __init__(self, vectors: np.ndarray, settings: IndexSettings):
        import faiss  # a large native library: loaded only when a gallery grows past the limit

        self._faiss = faiss
        self.settings = settings
        size, dimension = vectors.shape
        index = faiss.IndexScalarQuantizer(dimension, faiss.ScalarQuantizer.QT_8bit_direct_signed,
                                           faiss.METRIC_INNER_PRODUCT)
        blocks = range(0, size, ENCODE_BLOCK_ROWS)  # bounded temporaries at a million rows
        peak = max((float(_finite_peak(vectors[row:row + ENCODE_BLOCK_ROWS])) for row in blocks), default=SMALLEST_PEAK)
        self.scale = CODE_PEAK / peak
        for row in blocks:
            index.add(_integers(vectors[row:row + ENCODE_BLOCK_ROWS], self.scale))
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
        vector = _integers(np.reshape(vector, (1, -1)), self.scale)
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
        probes = _integers(probes, CODE_PEAK / _finite_peak(probes, axis=1))  # each to its own full range
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

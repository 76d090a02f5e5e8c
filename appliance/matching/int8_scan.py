"""Candidate rows for a batch of probes from an int8 copy of the gallery (exact-search path).

A batched exact search of a 10k gallery is compute-bound (a float32 matrix product, ~10 MFLOP
per probe). ONNX Runtime's integer kernels (VNNI here) score int8 codes several times faster,
and the gallery then re-scores only the rows this scan proposes, exactly from its float32
matrix, so a returned score is the exact one and the answer cannot change (docs/search.md).

Proven, not sampled: each row ``g`` is kept as ``ĝ = s·c`` (int8 codes ``c``, one scale per row)
with its error ``r = ‖g - ĝ‖``; each probe ``q`` as ``q̂`` with error ``e``. Then
``|q·g - q̂·ĝ| ≤ e·‖g‖ + ‖q̂‖·r =: β`` (Cauchy-Schwarz). The scan returns every row within ``2β``
of the probe's best int8 score (the graph needs its window before any exact score is known);
then the exact score ``s`` of that best int8 row, a lower bound of the probe's best, narrows it
to the rows whose int8 score plus ``β`` reaches ``s``: no other row can score ``s`` or more.

Layout: codes are stored transposed (dimension x rows), the layout the kernel reads without a
copy, in chunks of ``CHUNK_ROWS`` columns; the last chunk grows by ``GROWTH_ROWS`` and its spare
columns score -inf (bias), so they are never the best nor proposed. Rows mirror the gallery's:
a removal moves the last row into the freed one and zeroes the last (no copy of a deleted
template is left). Not thread-safe by itself: ``Gallery`` holds its lock around every call.

Packing: the kernel repacks an input matrix on every run (~0.5 ms for 10k rows, most of a small
batch's time), so each chunk gets a session of its own to which its codes are an external
initializer, packed once. That session is a snapshot: a change to the chunk drops it, the chunk
is scanned with its codes as an input meanwhile, and it is packed again once it has stayed
unchanged for ``REPACK_AFTER_SEARCHES`` searches (a stream of changes never pays a repack per
search).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from appliance.matching.scan_graph import PACKED_CODES, scan_model

CHUNK_ROWS = 16_384  # rows per chunk: bounds the score buffer of one run (4 MB at 64 probes)
GROWTH_ROWS = 512  # columns added to the last chunk at a time: bounds spare columns scanned
PROBE_PEAK = 127  # probes: uint8 with zero point 128, so codes -127..127 -> 1..255
ZERO_POINT = 128
FULL_PEAK, SAFE_PEAK = 127, 63  # row codes: full int8, or 7 bits where the kernel saturates (AVX2 pmaddubsw)
SLACK = 1e-4  # added to the bound: float32 rounding of scales, scores and the exact re-score (~1e-6)
REPACK_AFTER_SEARCHES = 32  # a changed chunk is packed again after this many searches without a change
LOAD_BLOCK_ROWS = 4_096  # rows quantised at once when built (bounds the float64 temporaries: 16 MB at 512)


def quantise(vectors: np.ndarray, peak: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Codes (int8, ``|c| <= peak``), float32 scales and float64 errors ``‖v - s·c‖`` per row."""
    vectors = np.asarray(vectors, dtype=np.float32)
    top = np.abs(vectors).max(axis=1)
    scales = np.where(top > 0, top / peak, 1.0).astype(np.float32)  # a zero row: codes 0, any scale
    codes = np.clip(np.rint(vectors / scales[:, None]), -peak, peak).astype(np.int8)
    errors = np.linalg.norm(vectors.astype(np.float64) - scales[:, None].astype(np.float64) * codes, axis=1)
    return codes, scales, errors


@dataclass
class _Chunk:
    codes: np.ndarray  # int8, dimension x width (transposed rows)
    scales: np.ndarray  # float32, width
    bias: np.ndarray  # float32, width: 0 for a row, -inf for a spare column
    packed: Any = None  # (session, the OrtValue it was given) while the codes are unchanged
    quiet: int = 0  # searches since the last change

    @classmethod
    def empty(cls, dimension: int, width: int) -> _Chunk:
        spare = np.full(width, -np.inf, np.float32)
        return cls(np.zeros((dimension, width), np.int8), np.zeros(width, np.float32), spare)

    def widened(self, width: int) -> _Chunk:
        wider = _Chunk.empty(len(self.codes), width)
        used = self.codes.shape[1]
        wider.codes[:, :used], wider.scales[:used], wider.bias[:used] = self.codes, self.scales, self.bias
        return wider


class Int8Scan:
    """int8 copy of the gallery's rows and the ONNX Runtime session that scans it."""

    def __init__(self, vectors: np.ndarray, intra_op_threads: int = 1):
        """Quantise ``vectors`` (the gallery's rows); ``intra_op_threads`` is bounded by ``IndexSettings``."""
        self.dimension, self._threads = vectors.shape[1], intra_op_threads
        self._session = _session(scan_model(self.dimension), intra_op_threads)  # codes as an input
        self.peak = self._exact_peak()
        self._chunks: list[_Chunk] = []
        # the largest ‖g‖ and ‖g - ĝ‖ of any row put since built: they only grow (a removed row's
        # values still bound the rest), so a search reads two numbers, not two passes over the rows
        self._norm_max = self._error_max = 0.0
        self._finite = True  # False once a row with NaN or inf was put: no bound holds, float32 searches
        self._size = 0
        for row in range(0, len(vectors), LOAD_BLOCK_ROWS):
            self._append_block(vectors[row : row + LOAD_BLOCK_ROWS])
        for chunk in self._chunks:
            self._pack(chunk)

    def __len__(self) -> int:
        return self._size

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held beside the float32 matrix (codes, scales, biases, spare columns
        included); ONNX Runtime's packed copy and score buffers come on top (docs/search.md)."""
        return sum(chunk.codes.nbytes + chunk.scales.nbytes + chunk.bias.nbytes for chunk in self._chunks)

    def _run(self, probes: np.ndarray, chunk: _Chunk, margin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(pairs, each probe's best score, the pairs' scores) of one chunk (``scan_graph``)."""
        feeds = {"probes": probes, "probe_scale": np.ones((), np.float32), "row_scales": chunk.scales,
                 "zero_point": np.full((), ZERO_POINT, np.uint8), "bias": chunk.bias, "margin": margin}
        if chunk.packed is not None:
            pairs, best, values = chunk.packed[0].run(None, feeds)
        else:
            pairs, best, values = self._session.run(None, {**feeds, "codes": chunk.codes})
        return pairs, best[:, 0], values

    def _pack(self, chunk: _Chunk) -> None:
        """A session with ``chunk``'s codes packed once (a snapshot: dropped by any change)."""
        import onnxruntime as ort

        codes = ort.OrtValue.ortvalue_from_numpy(chunk.codes)
        chunk.packed = (_session(scan_model(self.dimension, chunk.codes.shape[1]), self._threads, codes), codes)

    @staticmethod
    def _changed(chunk: _Chunk) -> None:
        chunk.packed, chunk.quiet = None, 0

    def _exact_peak(self) -> int:
        """The widest row codes the kernel sums exactly: full int8 (VNNI, ARM), else 7 bits (x86 AVX2's
        pmaddubsw saturates a pair of full-range products); neither: this runtime cannot be used."""
        probes = np.full((1, self.dimension), ZERO_POINT + PROBE_PEAK, np.uint8)
        ones, no_bias, no_margin = np.ones(1, np.float32), np.zeros(1, np.float32), np.zeros((1, 1), np.float32)
        for peak in (FULL_PEAK, SAFE_PEAK):
            exact = True
            for sign in (1, -1):
                column = _Chunk(np.full((self.dimension, 1), sign * peak, np.int8), ones, no_bias)
                best = self._run(probes, column, no_margin)[1]
                exact &= float(best[0]) == sign * PROBE_PEAK * peak * self.dimension
            if exact:
                return peak
        raise RuntimeError("onnxruntime's integer product is not exact here")

    def _place(self, row: int) -> tuple[_Chunk, int]:
        return self._chunks[row // CHUNK_ROWS], row % CHUNK_ROWS

    def _grow_to(self, rows: int) -> None:
        """Room for ``rows`` rows: full chunks, then a last one as wide as needed (in ``GROWTH_ROWS``
        steps; spare columns score -inf)."""
        while len(self._chunks) * CHUNK_ROWS < rows:
            if self._chunks and self._chunks[-1].codes.shape[1] < CHUNK_ROWS:
                self._chunks[-1] = self._chunks[-1].widened(CHUNK_ROWS)
            self._chunks.append(_Chunk.empty(self.dimension, 0))
        last = self._chunks[-1]
        needed = rows - (len(self._chunks) - 1) * CHUNK_ROWS
        if last.codes.shape[1] < needed:
            width = min(CHUNK_ROWS, -(-needed // GROWTH_ROWS) * GROWTH_ROWS)
            self._chunks[-1] = last.widened(width)

    def _append_block(self, vectors: np.ndarray) -> None:
        """Append rows, quantised at once."""
        codes, scales, errors = quantise(vectors, self.peak)
        start, end = self._size, self._size + len(vectors)
        self._grow_to(end)
        row = start
        while row < end:  # chunk by chunk
            chunk, column = self._place(row)
            take = min(CHUNK_ROWS - column, end - row)
            part = slice(row - start, row - start + take)
            chunk.codes[:, column : column + take] = codes[part].T
            chunk.scales[column : column + take], chunk.bias[column : column + take] = scales[part], 0.0
            self._changed(chunk)
            row += take
        self._bound_rows(vectors, errors)
        self._size += len(vectors)

    def _bound_rows(self, vectors: np.ndarray, errors: np.ndarray) -> None:
        """Raise the largest row norm and quantisation error to cover ``vectors``."""
        self._finite &= bool(np.isfinite(vectors).all())
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
        self._norm_max = max(self._norm_max, float(norms.max(initial=0.0)))
        self._error_max = max(self._error_max, float(errors.max(initial=0.0)))

    def put(self, row: int, vector: np.ndarray) -> None:
        """Set row ``row``: replace an existing row, or append at the end."""
        if row == self._size:
            self._append_block(np.asarray(vector, np.float32).reshape(1, -1))
            return
        if not 0 <= row < self._size:
            raise IndexError(f"row {row} of a scan of {self._size}")
        codes, scales, errors = quantise(np.asarray(vector, np.float32).reshape(1, -1), self.peak)
        chunk, column = self._place(row)
        chunk.codes[:, column], chunk.scales[column] = codes[0], scales[0]
        self._changed(chunk)
        self._bound_rows(np.asarray(vector, np.float32).reshape(1, -1), errors)

    def remove(self, row: int) -> None:
        """Move the last row into ``row`` and zero the last (the gallery does the same)."""
        last = self._size - 1
        (target, column), (source, end) = self._place(row), self._place(last)
        target.codes[:, column], target.scales[column] = source.codes[:, end], source.scales[end]
        source.codes[:, end], source.scales[end], source.bias[end] = 0, 0.0, -np.inf
        self._changed(target)
        self._changed(source)
        self._size = last
        if self._size <= (len(self._chunks) - 1) * CHUNK_ROWS and len(self._chunks) > 1:
            self._chunks.pop()  # an emptied last chunk (all zero already)

    def candidates(self, probes: np.ndarray, matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(probe index, row) of every row that may be a probe's exact best, at least one per probe,
        or None where no bound holds (a non-finite row was put): then search in float32;
        ``matrix``: the gallery's float32 rows, for the exact score that narrows the window."""
        if not self._finite:
            return None
        codes, scales, errors = quantise(probes, PROBE_PEAK)
        quantised_norms = scales.astype(np.float64) * np.linalg.norm(codes.astype(np.float64), axis=1)
        bound = errors * self._norm_max + quantised_norms * self._error_max + SLACK
        margin = (2 * bound / scales).astype(np.float32)[:, None]  # in the scan's units (score / probe scale)
        unsigned = (codes.astype(np.int16) + ZERO_POINT).astype(np.uint8)
        for chunk in self._chunks:
            if chunk.packed is None and chunk.quiet >= REPACK_AFTER_SEARCHES:
                self._pack(chunk)
            chunk.quiet += 1
        found = [self._run(unsigned, chunk, margin) for chunk in self._chunks]
        probe_of = np.concatenate([pairs[0] for pairs, _, _ in found])
        rows = np.concatenate([pairs[1] + number * CHUNK_ROWS for number, (pairs, _, _) in enumerate(found)])
        values = np.concatenate([chunk_values for _, _, chunk_values in found])
        best = np.max([chunk_best for _, chunk_best, _ in found], axis=0)
        tops = np.flatnonzero(values == best[probe_of])  # each probe's best int8 row is among its pairs
        top = np.empty(len(probes), np.int64)
        top[probe_of[tops[::-1]]] = tops[::-1]  # one per probe (the first, as later writes win)
        floor = np.einsum("ij,ij->i", matrix[rows[top]], probes).astype(np.float64)
        keep = values * scales[probe_of].astype(np.float64) + bound[probe_of] >= floor[probe_of]
        return probe_of[keep], rows[keep]


def _session(model: bytes, intra_op_threads: int, codes: Any = None) -> Any:  # an onnxruntime.InferenceSession
    """A CPU session of ``model``; ``codes`` (an OrtValue) is its external initializer."""
    import onnxruntime as ort  # not at import time: loaded by the first search big enough for the scan

    from appliance.inference.providers import CPU_PROVIDER, session_options

    options = session_options(intra_op_threads)
    if codes is not None:
        options.add_external_initializers([PACKED_CODES], [codes])
    return ort.InferenceSession(model, options, providers=[CPU_PROVIDER])

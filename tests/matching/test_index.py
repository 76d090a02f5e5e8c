"""The 8-bit candidate index: settings bounds, rows that mirror the gallery's, scrubbed removals."""
from __future__ import annotations

import numpy as np
import pytest

from appliance.matching.index import (CODE_PEAK, EXACT_LIMIT_BOUNDS, RERANK_BOUNDS, SCAN_THREADS_BOUNDS,
                                     SHARD_MIN_ROWS, CandidateIndex, IndexSettings)

DIM = 32


def units(count: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.mark.parametrize("field, bounds", [("exact_limit", EXACT_LIMIT_BOUNDS), ("rerank", RERANK_BOUNDS),
                                           ("scan_threads", SCAN_THREADS_BOUNDS)])
def test_settings_outside_their_bounds_are_refused(field, bounds):
    for value in (bounds[0] - 1, bounds[1] + 1):
        with pytest.raises(ValueError, match=field):
            IndexSettings(**{field: value})
    assert getattr(IndexSettings(**{field: bounds[0]}), field) == bounds[0]


def test_candidates_hold_the_nearest_rows_and_put_appends_or_replaces():
    vectors = units(500, 0)
    index = CandidateIndex(vectors, IndexSettings(rerank=8))
    assert len(index) == 500 and index.nbytes == 500 * DIM
    rows = index.candidates(vectors[[3, 77]])
    assert rows.shape == (2, 8) and rows[0, 0] == 3 and rows[1, 0] == 77
    fresh = units(2, 1)
    index.put(500, fresh[0])  # append
    index.put(3, fresh[1])  # replace
    assert len(index) == 501
    assert index.candidates(fresh[:1])[0, 0] == 500 and index.candidates(fresh[1:])[0, 0] == 3
    with pytest.raises(IndexError):
        index.put(600, fresh[0])


def test_codes_are_one_scale_for_the_index_and_probes_become_integers():
    """FAISS's SIMD kernel for signed direct codes truncates the query to integers: a unit probe
    scaled by the index itself still finds its row, with an exact integer score."""
    vectors = units(400, 6)
    index = CandidateIndex(vectors, IndexSettings(rerank=4))
    codes = index._codes().astype(np.int16) - 128  # stored with an offset of 128
    assert np.abs(codes).max() == CODE_PEAK  # the build's largest component takes the full range
    np.testing.assert_array_equal(codes, np.rint(vectors * np.float32(index.scale)))
    probes = vectors[:50] + 0.05 * units(50, 7)
    rows = index.candidates(probes / np.linalg.norm(probes, axis=1, keepdims=True))
    exact = np.argmax(probes @ vectors.T, axis=1)
    assert all(best in found for best, found in zip(exact, rows))


def test_a_later_row_beyond_the_build_range_is_clipped_and_non_finite_values_do_not_set_the_scale():
    vectors = units(300, 8)
    vectors[5] = np.nan  # a row the gallery could not use: no scale from it, codes 0
    vectors[6, 0] = np.inf
    index = CandidateIndex(vectors, IndexSettings(rerank=4))
    assert np.isfinite(index.scale) and index.scale > CODE_PEAK
    assert not (index._codes()[5].astype(np.int16) - 128).any()
    spike = np.zeros(DIM, np.float32)
    spike[3] = 1.0  # far beyond any component of the build: clipped to the peak
    index.put(300, spike)
    assert (index._codes()[300].astype(np.int16) - 128).tolist() == [0, 0, 0, CODE_PEAK] + [0] * (DIM - 4)
    assert index.candidates(spike[None])[0, 0] == 300
    assert index.candidates(vectors[10:11])[0, 0] == 10


def test_removal_moves_the_last_code_in_and_scrubs_the_freed_one():
    vectors = units(300, 2)
    index = CandidateIndex(vectors, IndexSettings())
    codes_before = index._codes().copy()
    index.remove(10)
    assert len(index) == 299
    assert np.array_equal(index._codes()[10], codes_before[299])  # the last row moved into row 10
    import faiss

    # the buffer keeps its capacity after shrinking: the freed slot must hold zeros, not the old code
    buffer = faiss.rev_swig_ptr(index._index.codes.data(), 300 * DIM).reshape(300, DIM)
    assert not buffer[299].any()
    assert index.candidates(vectors[299:300])[0, 0] == 10
    assert 10 not in index.candidates(vectors[10:11])[0, :1]  # the removed template is not proposed first


def test_a_small_index_answers_no_more_candidates_than_it_holds():
    vectors = units(5, 3)
    rows = CandidateIndex(vectors, IndexSettings(rerank=64)).candidates(vectors[:1])
    assert sorted(rows[0].tolist()) == [0, 1, 2, 3, 4]


def test_a_single_probe_on_two_threads_scans_one_range_per_thread_and_finds_the_same_rows():
    import faiss

    vectors = units(2 * SHARD_MIN_ROWS + 7, 4)  # two ranges of at least SHARD_MIN_ROWS rows
    index = CandidateIndex(vectors, IndexSettings(rerank=16))
    probes = vectors[[0, SHARD_MIN_ROWS + 3, len(vectors) - 1]] + 0.01 * units(3, 5)
    before = faiss.omp_get_max_threads()
    try:
        faiss.omp_set_num_threads(1)
        alone = index.candidates(probes)  # a batch on one thread: FAISS's own scan of every row
        faiss.omp_set_num_threads(2)
        for probe, expected in zip(probes, alone):
            rows = index.candidates(probe[None])[0]  # one probe, two threads: two ranges, merged
            assert rows[0] == expected[0] and set(rows.tolist()) == set(expected.tolist())
        assert index._pool_size == 2 and faiss.omp_get_max_threads() == 2  # the caller's setting is kept
        assert np.array_equal(index.candidates(probes[:2]), alone[:2])  # two probes: FAISS, a thread each
    finally:
        faiss.omp_set_num_threads(before)
        index.close()

"""The int8 scan of the exact path: its hand-written ONNX graph, its proven candidates, rows in step."""
from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from appliance.matching import int8_scan, scan_graph
from appliance.matching.int8_scan import FULL_PEAK, SAFE_PEAK, Int8Scan, quantise

DIM = 48


def units(count: int, seed: int, dimension: int = DIM) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_varints_and_fields_follow_the_protobuf_wire_format():
    assert scan_graph._varint(1) == b"\x01" and scan_graph._varint(300) == b"\xac\x02"
    assert scan_graph._field(1, 8) == b"\x08\x08"  # field 1, varint
    assert scan_graph._field(2, "ab") == b"\x12\x02ab"  # field 2, length-delimited
    with pytest.raises(ValueError):
        scan_graph._varint(-1)


def test_the_graph_scores_codes_and_keeps_every_pair_within_the_margin():
    session = ort.InferenceSession(scan_graph.scan_model(DIM), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    probes = rng.integers(1, 256, (3, DIM), dtype=np.uint8)
    # codes as wide as this CPU's kernel sums exactly, as the scan makes them (full int8 with VNNI,
    # 7 bits on AVX2 alone, whose pmaddubsw saturates a pair of full-range products)
    peak = Int8Scan(units(2, 9)).peak
    codes = rng.integers(-peak, peak + 1, (DIM, 9), dtype=np.int8)
    scales = rng.uniform(0.5, 2.0, 9).astype(np.float32)
    bias = np.zeros(9, np.float32)
    bias[-2:] = -np.inf  # spare columns
    margin = np.array([[0.0], [500.0], [1e9]], np.float32)
    pairs, best, values = session.run(None, {"probes": probes, "codes": codes, "probe_scale": np.ones((), np.float32),
                                             "row_scales": scales, "zero_point": np.full((), 128, np.uint8),
                                             "bias": bias, "margin": margin})
    scores = (probes.astype(np.int64) - 128) @ codes.astype(np.int64) * scales.astype(np.float64)
    scores[:, -2:] = -np.inf
    np.testing.assert_allclose(best[:, 0], scores.max(axis=1), rtol=1e-6)
    expected = np.argwhere(scores >= scores.max(axis=1, keepdims=True) - margin.astype(np.float64))
    assert pairs.T.tolist() == expected.tolist()
    np.testing.assert_allclose(values, scores[pairs[0], pairs[1]], rtol=1e-6)
    assert 7 not in pairs[1] and 8 not in pairs[1] and (pairs[0] == 2).sum() == 7  # spares never, all real rows


def test_quantised_rows_are_within_their_recorded_error():
    vectors = units(200, 1)
    vectors[0] = 0.0  # a zero row: codes 0, no error
    for peak in (FULL_PEAK, SAFE_PEAK):
        codes, scales, errors = quantise(vectors, peak)
        assert np.abs(codes).max() <= peak and not codes[0].any() and errors[0] == 0.0
        rebuilt = scales[:, None].astype(np.float64) * codes
        np.testing.assert_allclose(np.linalg.norm(vectors - rebuilt, axis=1), errors, rtol=1e-9)
        assert errors[1:].max() < 0.6 * np.sqrt(DIM) * scales[1:].max()  # at most half a step per dimension


def exact_best(vectors: np.ndarray, probes: np.ndarray) -> np.ndarray:
    return np.argmax(probes.astype(np.float64) @ vectors.T.astype(np.float64), axis=1)


def test_candidates_always_hold_the_exact_best_row():
    vectors, probes = units(3_000, 2), units(40, 3)
    probes[:10] = vectors[:10] + 0.01 * units(10, 4)  # near matches
    probes[10] = 0.0  # no information: every row is a candidate
    scan = Int8Scan(vectors)
    probe_of, rows = scan.candidates(probes, vectors)
    best = exact_best(vectors, probes)
    for probe in range(len(probes)):
        assert best[probe] in rows[probe_of == probe]
    assert (probe_of == 10).sum() == len(vectors)
    assert len(rows) < 0.05 * len(vectors) * len(probes)  # a short list, not the gallery


def test_rows_stay_in_step_across_chunks_and_removals_leave_no_copy(monkeypatch):
    monkeypatch.setattr(int8_scan, "CHUNK_ROWS", 16)
    monkeypatch.setattr(int8_scan, "GROWTH_ROWS", 4)
    monkeypatch.setattr(int8_scan, "LOAD_BLOCK_ROWS", 10)  # blocks that straddle chunks
    vectors = units(40, 5)
    scan = Int8Scan(vectors[:21])  # two chunks, the second 8 wide
    assert [chunk.codes.shape[1] for chunk in scan._chunks] == [16, 8]
    assert Int8Scan(vectors[:40])._chunks[1].codes.shape[1] == 16  # a block filling one chunk and starting another
    for row in range(21, 40):
        scan.put(row, vectors[row])  # appends into a third chunk
    scan.put(3, vectors[0])  # replaces
    kept = vectors.copy()
    kept[3] = vectors[0]
    for row in (5, 30, 17):  # as the gallery removes: the last row moves in
        kept[row] = kept[len(kept) - 1]
        kept = kept[:-1]
        scan.remove(row)
    fresh = Int8Scan(kept)
    assert len(scan) == len(fresh) == 37
    for chunk, same in zip(scan._chunks, fresh._chunks):
        used = same.scales.shape[0]
        np.testing.assert_array_equal(chunk.codes[:, :used], same.codes)
        np.testing.assert_array_equal(chunk.scales[:used], same.scales)
        assert not chunk.codes[:, used:].any() and not chunk.scales[used:].any()  # freed columns hold nothing
    last = scan._chunks[-1]
    assert np.isneginf(last.bias[37 - 32:]).all() and not last.bias[: 37 - 32].any()
    probes = units(12, 6)
    probe_of, rows = scan.candidates(probes, kept)
    for probe, best in enumerate(exact_best(kept, probes)):
        assert best in rows[probe_of == probe]
    while len(scan) > 16:
        scan.remove(len(scan) - 1)
    assert len(scan._chunks) == 1  # emptied chunks go
    with pytest.raises(IndexError):
        scan.put(20, vectors[0])


def test_seven_bit_codes_where_the_kernel_saturates(monkeypatch):
    monkeypatch.setattr(Int8Scan, "_exact_peak", lambda self: SAFE_PEAK)
    vectors, probes = units(2_000, 7), units(30, 8)
    scan = Int8Scan(vectors)
    assert scan.peak == SAFE_PEAK and max(np.abs(chunk.codes).max() for chunk in scan._chunks) <= SAFE_PEAK
    probe_of, rows = scan.candidates(probes, vectors)
    for probe, best in enumerate(exact_best(vectors, probes)):
        assert best in rows[probe_of == probe]


def test_the_chosen_peak_is_summed_exactly_at_its_extremes():
    """Full int8 on VNNI and ARM; 7 bits where pmaddubsw would saturate (forced above)."""
    scan = Int8Scan(units(4, 9))
    assert scan.peak in (FULL_PEAK, SAFE_PEAK)
    probes = np.full((1, DIM), 255, np.uint8)
    for sign in (1, -1):
        column = int8_scan._Chunk(np.full((DIM, 1), sign * scan.peak, np.int8), np.ones(1, np.float32),
                                  np.zeros(1, np.float32))
        best = scan._run(probes, column, np.zeros((1, 1), np.float32))[1]
        assert best[0] == sign * 127 * scan.peak * DIM


def test_a_changed_chunk_is_scanned_from_its_codes_until_it_has_stayed_unchanged(monkeypatch):
    monkeypatch.setattr(int8_scan, "REPACK_AFTER_SEARCHES", 3)
    vectors, probes = units(300, 10), units(6, 11)
    scan = Int8Scan(vectors)
    chunk = scan._chunks[0]
    assert chunk.packed is not None  # packed when built
    vectors[7] = probes[0]
    scan.put(7, probes[0])  # the packed session is a snapshot of the old codes: dropped
    assert chunk.packed is None
    for search in range(4):
        probe_of, rows = scan.candidates(probes, vectors)
        for probe, best in enumerate(exact_best(vectors, probes)):
            assert best in rows[probe_of == probe]
        assert (chunk.packed is not None) == (search == 3)  # packed again on the fourth quiet search
    packed = scan._run(np.full((6, DIM), 200, np.uint8), chunk, np.full((6, 1), 1e9, np.float32))
    chunk.packed = None
    plain = scan._run(np.full((6, DIM), 200, np.uint8), chunk, np.full((6, 1), 1e9, np.float32))
    for packed_output, plain_output in zip(packed, plain):
        np.testing.assert_array_equal(packed_output, plain_output)

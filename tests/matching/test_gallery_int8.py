"""Batched exact search through the int8 scan answers as float32 does: real templates, near ties,
changes to the gallery, and the float32 fallback when onnxruntime cannot run the scan."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appliance.bench.search_bench import distractors
from appliance.evaluation.datasets import scan_identities
from appliance.evaluation.runner import extract_dataset
from appliance.matching import Gallery, int8_scan
from appliance.matching import gallery as gallery_module
from appliance.matching.index import IndexSettings
from appliance.vision.templates import Template

PACK = ("int8-test", "1")
IDENTITIES, IMAGES = 60, 2  # celeba-dev identities embedded, images of each
ENROLLED = 42  # identities whose first image is enrolled; the others probe as non-mated
DISTRACTORS = 6_000  # synthetic templates with the real ones' statistics (the search bench's model)
SCORE_TOLERANCE = 1e-6  # float32 sums in another order (BLAS against a gathered dot product)


@pytest.fixture(scope="module", autouse=True)
def scan_every_search():
    """Small galleries and batches go through the scan too (their float32 shortcut is tested apart)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(gallery_module, "SCAN_MIN_SCORES", 1)
        yield


def float32_best(vectors: np.ndarray, probes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The plain float32 answer: argmax of the matrix product (first row among equal scores)."""
    scores = vectors.astype(np.float32) @ probes.astype(np.float32).T
    rows = scores.argmax(axis=0)
    return rows, scores[rows, np.arange(len(probes))]


def assert_same_answers(gallery: Gallery, ids: list[str], vectors: np.ndarray, probes: np.ndarray, batch: int) -> None:
    rows, scores = float32_best(vectors, probes)
    for start in range(0, len(probes), batch):
        found = gallery.best_batch([Template(vector, *PACK) for vector in probes[start : start + batch]])
        for offset, candidate in enumerate(found):
            assert candidate.subject_id == ids[rows[start + offset]]
            assert abs(candidate.score - scores[start + offset]) <= SCORE_TOLERANCE


def loaded(vectors: np.ndarray, settings: IndexSettings | None = None) -> tuple[Gallery, list[str]]:
    ids = [f"s{row}" for row in range(len(vectors))]
    gallery = Gallery(*PACK, vectors.shape[1], settings)
    gallery.load(ids, vectors)
    return gallery, ids


@pytest.fixture(scope="module")
def real(pipeline, faces) -> tuple[np.ndarray, np.ndarray]:
    """(gallery, probes): enrolled first images padded with distractors; second images and the rest."""
    samples = scan_identities(faces / "celeba-dev", min_per_identity=IMAGES)  # by identity, then file
    identities = sorted({sample.identity for sample in samples})[:IDENTITIES]
    chosen = [sample for name in identities for sample in [s for s in samples if s.identity == name][:IMAGES]]
    data = extract_dataset(pipeline, chosen, progress=False)
    enrolled = [row for row in range(0, ENROLLED * IMAGES, IMAGES) if data.acquired[row]]  # first images
    probes = [row for row in range(len(chosen)) if data.acquired[row] and row not in enrolled]
    real_gallery = data.vectors[enrolled]
    padded = np.vstack([real_gallery, distractors(data.vectors[data.acquired], DISTRACTORS, seed=11)])
    return padded, data.vectors[probes]


def test_real_templates_get_float32s_subject_and_exact_score(real):
    vectors, probes = real
    assert len(probes) >= IDENTITIES  # mated and non-mated probes
    gallery, ids = loaded(vectors)
    for batch in (len(probes), 8, 2):
        assert_same_answers(gallery, ids, vectors, probes, batch)
    assert gallery.scan_bytes >= vectors.size  # the int8 scan answered (one byte per dimension and row)
    mated = float32_best(vectors, probes)[1] > 0.3
    assert mated.any() and not mated.all()  # both kinds of probe were searched


@settings(max_examples=60, derandomize=True, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), size=st.integers(2, 600), batch=st.integers(2, 24),
       dimension=st.sampled_from([8, 64, 512]), gap_exponent=st.floats(-5.0, -2.0), ties=st.integers(1, 6))
def test_near_ties_of_random_unit_vectors_resolve_as_in_float32(seed, size, batch, dimension, gap_exponent, ties):
    """Rows planted at cosines ``top, top - gap, top - 2 gap, ...`` from each probe (gap 1e-5 to 1e-2)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((size, dimension)).astype(np.float32)
    probes = rng.standard_normal((batch, dimension))
    probes /= np.linalg.norm(probes, axis=1, keepdims=True)
    per_probe = min(ties, size // batch)
    planted = rng.permutation(size)[: per_probe * batch].reshape(batch, per_probe)
    gap = 10.0**gap_exponent
    for probe, rows in zip(probes, planted):
        top = rng.uniform(0.3, 0.95)
        for rank, row in enumerate(rows):
            other = rng.standard_normal(dimension)
            other -= (other @ probe) * probe
            cosine = top - rank * gap
            vectors[row] = cosine * probe + np.sqrt(1 - cosine**2) * other / np.linalg.norm(other)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    searched, ids = loaded(vectors)
    assert_same_answers(searched, ids, vectors, probes.astype(np.float32), batch)
    assert searched.scan_bytes > 0


def test_small_searches_and_a_disabled_scan_stay_float32(monkeypatch):
    monkeypatch.setattr(gallery_module, "SCAN_MIN_SCORES", 5_000)
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((1_000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    small, ids = loaded(vectors)
    assert_same_answers(small, ids, vectors, vectors[:4], 4)  # 4,000 scores
    assert small.scan_bytes == 0
    assert_same_answers(small, ids, vectors, vectors[:5], 5)  # 5,000 scores
    assert small.scan_bytes > 0
    disabled, _ = loaded(vectors, IndexSettings(exact_scan=False))
    assert_same_answers(disabled, ids, vectors, vectors[:40], 40)
    assert disabled.scan_bytes == 0


def test_changes_after_the_scan_is_built_are_searched_and_deleted_rows_never_answer():
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((3_000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gallery, ids = loaded(vectors)
    probes = vectors[:20] + 0.02 * rng.standard_normal((20, 64)).astype(np.float32)
    assert_same_answers(gallery, ids, vectors, probes, 20)  # builds the scan
    gallery.upsert("new", Template(probes[0], *PACK))  # appended
    gallery.upsert("s1", Template(probes[1], *PACK))  # replaced
    for subject in ("s2", "s3", "s2999"):
        gallery.remove(subject)
    now = {subject: gallery._matrix[gallery._rows[subject]] for subject in gallery._ids}
    found = gallery.best_batch([Template(probe, *PACK) for probe in probes])
    current = list(now)
    rows, scores = float32_best(np.stack(list(now.values())), probes)
    assert [c.subject_id for c in found] == [current[row] for row in rows]
    assert found[0].subject_id == "new" and found[1].subject_id == "s1"
    assert not {"s2", "s3"} & {c.subject_id for c in found}
    assert np.allclose([c.score for c in found], scores, atol=SCORE_TOLERANCE)
    assert len(gallery._scan) == len(gallery)


def test_a_gallery_with_a_non_finite_row_is_searched_in_float32_as_before():
    rng = np.random.default_rng(6)
    vectors = rng.standard_normal((300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[5] = np.nan  # garbage in: no bound holds, so the scan must not answer
    probes = [Template(vector, *PACK) for vector in vectors[10:14]]
    searched, _ = loaded(vectors)
    with np.errstate(invalid="ignore"):
        found = searched.best_batch(probes)
    before = loaded(vectors, IndexSettings(exact_scan=False))[0].best_batch(probes)  # the float32 path
    assert [(c.subject_id, c.score) for c in found] == [(c.subject_id, c.score) for c in before]


def test_the_scan_goes_when_the_index_takes_over():
    rng = np.random.default_rng(4)
    vectors = rng.standard_normal((999, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gallery, ids = loaded(vectors, IndexSettings(exact_limit=1_000))
    assert_same_answers(gallery, ids, vectors, vectors[:4], 4)
    assert gallery.scan_bytes > 0 and not gallery.indexed
    gallery.upsert("one-more", Template(vectors[0], *PACK))
    assert gallery.indexed and gallery.scan_bytes == 0


def test_without_a_usable_onnxruntime_batches_stay_float32(monkeypatch, caplog):
    def unusable(*_args):
        raise RuntimeError("no onnxruntime here")

    monkeypatch.setattr(int8_scan, "_session", unusable)
    rng = np.random.default_rng(5)
    vectors = rng.standard_normal((500, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    gallery, ids = loaded(vectors)
    with caplog.at_level(logging.WARNING, logger="appliance.matching.gallery"):
        assert_same_answers(gallery, ids, vectors, vectors[10:30], 10)
    assert gallery.scan_bytes == 0 and "int8 scan unavailable" in caplog.text
    assert caplog.text.count("int8 scan unavailable") == 1  # tried once, not on every batch

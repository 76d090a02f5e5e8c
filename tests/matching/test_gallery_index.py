"""Gallery above its exact limit: the index gives exact search's answers, adds and deletes in place."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from appliance.matching import Gallery
from appliance.matching.index import EXACT_LIMIT_BOUNDS, IndexSettings
from appliance.vision.templates import Template

PACK = ("pack", "1")
DIM = 128
SIZE = 20_000
LIMIT = 1_000
IDENTITIES = 2_000  # clustered like real templates: several near templates per identity


def clustered(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((IDENTITIES, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, IDENTITIES, count)] + 0.6 * rng.standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def templates(vectors: np.ndarray) -> list[Template]:
    return [Template(vector, *PACK) for vector in vectors]


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return clustered(SIZE, 0)


def galleries(vectors: np.ndarray) -> tuple[Gallery, Gallery]:
    ids = [f"s{i}" for i in range(len(vectors))]
    indexed, exact = Gallery(*PACK, DIM, IndexSettings(exact_limit=LIMIT)), Gallery(
        *PACK, DIM, IndexSettings(exact_limit=EXACT_LIMIT_BOUNDS[1]))
    indexed.load(ids, vectors)
    exact.load(ids, vectors)
    return indexed, exact


def probes(vectors: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    near = vectors[rng.integers(0, len(vectors), 300)] + 0.4 * rng.standard_normal((300, DIM)).astype(np.float32)
    far = rng.standard_normal((200, DIM)).astype(np.float32)
    both = np.vstack([near, far])
    return both / np.linalg.norm(both, axis=1, keepdims=True)


def test_the_index_finds_what_exact_search_finds_with_the_exact_score(vectors):
    indexed, exact = galleries(vectors)
    assert indexed.indexed and not exact.indexed and indexed.index_bytes == SIZE * DIM
    queries = templates(probes(vectors, 1))
    found, truth = indexed.best_batch(queries), exact.best_batch(queries)
    assert [c.subject_id for c in found] == [c.subject_id for c in truth]
    for candidate, query in zip(found, queries):
        row = int(candidate.subject_id[1:])
        assert candidate.score == pytest.approx(float(vectors[row] @ query.vector), abs=1e-6)
    assert indexed.best(queries[0]) == found[0]


def test_deleted_templates_are_never_returned_again_and_adds_need_no_rebuild(vectors):
    indexed, _ = galleries(vectors)
    deleted = range(0, SIZE, 40)
    for row in deleted:
        assert indexed.remove(f"s{row}")
    assert len(indexed) == len(indexed._index) == SIZE - len(deleted)
    gone = {f"s{row}" for row in deleted}
    for candidate in indexed.best_batch(templates(vectors[list(deleted)])):
        assert candidate.subject_id not in gone and candidate.score < 1 - 1e-3
    assert not indexed._matrix[len(indexed)].any()
    fresh = clustered(50, 9)
    for number, vector in enumerate(fresh):
        indexed.upsert(f"new{number}", Template(vector, *PACK))
    indexed.upsert("s1", Template(fresh[0] * -1, *PACK))  # a replaced template is searched as the new one
    assert [c.subject_id for c in indexed.best_batch(templates(fresh[1:]))] == [f"new{i}" for i in range(1, 50)]
    assert indexed.best(Template(-fresh[0], *PACK)).subject_id == "s1"
    assert indexed.best(Template(vectors[1], *PACK)).subject_id != "s1"
    assert len(indexed) == len(indexed._index)


def test_the_index_is_built_at_the_limit_and_dropped_well_below(vectors):
    gallery = Gallery(*PACK, DIM, IndexSettings(exact_limit=LIMIT))
    for row in range(LIMIT - 1):
        gallery.upsert(f"s{row}", Template(vectors[row], *PACK))
    assert not gallery.indexed
    gallery.upsert(f"s{LIMIT - 1}", Template(vectors[LIMIT - 1], *PACK))
    assert gallery.indexed and len(gallery._index) == LIMIT
    for row in range(LIMIT // 2 + 1):
        gallery.remove(f"s{row}")
    assert not gallery.indexed and gallery.index_bytes == 0
    assert gallery.best(Template(vectors[LIMIT - 1], *PACK)).subject_id == f"s{LIMIT - 1}"


def test_searches_and_changes_from_several_threads_leave_a_consistent_gallery(vectors):
    gallery, _ = galleries(vectors[:5_000])
    errors: list[BaseException] = []
    queries = templates(probes(vectors[:5_000], 2)[:100])

    def search() -> None:
        try:
            for _ in range(5):
                for candidate in gallery.best_batch(queries[:20]):
                    assert candidate is not None
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    def change() -> None:
        try:
            for row in range(0, 2_000, 2):
                gallery.remove(f"s{row}")
                gallery.upsert(f"t{row}", Template(vectors[row], *PACK))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    workers = [threading.Thread(target=search) for _ in range(3)] + [threading.Thread(target=change)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors and len(gallery) == len(gallery._index) == 5_000
    for row in (0, 2, 1_998, 1, 4_999):
        expected = f"t{row}" if row % 2 == 0 and row < 2_000 else f"s{row}"
        assert gallery.best(Template(vectors[row], *PACK)).subject_id == expected

"""``SearchedBatch``: the probes of one batch searched together answer as the gallery would
one by one; anything else is still asked of the gallery."""
from __future__ import annotations

import numpy as np

from appliance.matcher.loaded import SearchedBatch
from appliance.matching import Gallery
from appliance.vision.templates import Template

PACK, DIMENSION, SIZE, PROBES = ("pack", "1"), 64, 500, 9


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_a_batch_finds_what_the_gallery_finds_for_each_probe():
    rng = np.random.default_rng(5)
    gallery = Gallery(*PACK, DIMENSION)
    vectors = _unit(rng.normal(size=(SIZE, DIMENSION)))
    gallery.load([f"s{i}" for i in range(SIZE)], vectors)
    probes = [Template(v, *PACK) for v in _unit(vectors[:PROBES] + 0.3 * rng.normal(size=(PROBES, DIMENSION)))]
    batch = SearchedBatch(gallery, probes)
    for probe in probes:
        found, alone = batch.best(probe), gallery.best(probe)
        assert found.subject_id == alone.subject_id and abs(found.score - alone.score) < 1e-5
    outside = Template(_unit(rng.normal(size=(1, DIMENSION)))[0], *PACK)
    assert batch.best(outside) == gallery.best(outside)  # not in the batch: searched alone
    assert "s3" in batch and "nobody" not in batch
    assert batch.score("s3", probes[0]) == gallery.score("s3", probes[0])
    assert SearchedBatch(gallery, []).best(probes[0]) == gallery.best(probes[0])

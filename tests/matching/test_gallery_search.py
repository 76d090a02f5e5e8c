"""Gallery search, pure: exact cosine 1:N and 1:1, upsert, bulk load, removal, checks."""
from __future__ import annotations

import numpy as np
import pytest

from appliance.errors import ApplianceError, ErrorCode
from appliance.matching import Gallery
from appliance.matching.gallery import INITIAL_CAPACITY
from appliance.vision.templates import Template, normalise

PACK = ("pack", "1")
DIM = 16


def unit(seed: int) -> np.ndarray:
    return normalise(np.random.default_rng(seed).normal(size=DIM)).astype(np.float32)


def template(vector: np.ndarray, pack: tuple[str, str] = PACK) -> Template:
    return Template(vector, *pack)


def gallery_of(count: int) -> Gallery:
    gallery = Gallery(*PACK, DIM)
    for index in range(count):
        gallery.upsert(f"s{index}", template(unit(index)))
    return gallery


def test_an_empty_gallery_has_no_best_candidate_and_no_score():
    gallery = Gallery(*PACK, DIM)
    assert len(gallery) == 0 and gallery.best(template(unit(0))) is None
    assert gallery.score("s0", template(unit(0))) is None


def test_best_is_the_most_similar_subject_and_score_is_the_cosine():
    gallery = gallery_of(20)
    for index in (0, 7, 19):
        best = gallery.best(template(unit(index)))
        assert best.subject_id == f"s{index}" and best.score == pytest.approx(1.0, abs=1e-5)
    probe = unit(3)
    assert gallery.score("s5", template(probe)) == pytest.approx(float(unit(5) @ probe), abs=1e-6)
    assert gallery.score("nobody", template(probe)) is None


def test_upsert_replaces_a_subjects_template():
    gallery = gallery_of(3)
    gallery.upsert("s1", template(unit(100)))
    assert len(gallery) == 3 and gallery.best(template(unit(100))).subject_id == "s1"
    assert gallery.score("s1", template(unit(1))) < 0.99  # the old template is gone


def test_removal_moves_the_last_row_in_and_forgets_the_subject():
    gallery = gallery_of(5)
    assert gallery.remove("s1") and not gallery.remove("s1")
    assert "s1" not in gallery and len(gallery) == 4
    for index in (0, 2, 3, 4):  # the moved subject (s4) is still found under its own id
        assert gallery.best(template(unit(index))).subject_id == f"s{index}"
    assert not np.any(gallery._matrix[4])  # the freed row holds no template any more


def test_the_gallery_grows_past_its_initial_capacity():
    gallery = Gallery(*PACK, 4)
    vectors = np.eye(4, dtype=np.float32)
    for index in range(INITIAL_CAPACITY + 3):
        gallery.upsert(f"s{index}", template(vectors[index % 4]))
    assert len(gallery) == INITIAL_CAPACITY + 3
    assert gallery.score(f"s{INITIAL_CAPACITY + 2}", template(vectors[(INITIAL_CAPACITY + 2) % 4])) == 1.0


def test_bulk_load_needs_an_empty_gallery_and_distinct_ids():
    vectors = np.stack([unit(i) for i in range(3)])
    gallery = Gallery(*PACK, DIM)
    gallery.load(["a", "b", "c"], vectors)
    assert gallery.best(template(unit(2))).subject_id == "c"
    gallery.upsert("d", template(unit(9)))  # room after a bulk load
    assert gallery.best(template(unit(9))).subject_id == "d"
    with pytest.raises(ValueError):
        gallery.load(["x"], vectors[:1])
    with pytest.raises(ValueError):
        Gallery(*PACK, DIM).load(["a", "a"], vectors[:2])
    with pytest.raises(ApplianceError):
        Gallery(*PACK, DIM).load(["a", "b"], vectors)  # 3 vectors for 2 subjects


def test_templates_of_another_pack_or_size_are_refused():
    gallery = gallery_of(2)
    with pytest.raises(ApplianceError) as other_pack:
        gallery.best(template(unit(0), ("other", "1")))
    assert other_pack.value.code is ErrorCode.PACK_MISMATCH
    with pytest.raises(ApplianceError) as other_size:
        gallery.upsert("s9", template(normalise(np.ones(DIM + 1)).astype(np.float32)))
    assert other_size.value.code is ErrorCode.PACK_MISMATCH

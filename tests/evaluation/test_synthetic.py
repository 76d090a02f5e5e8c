"""The SYNTHETIC attack generator: deterministic, changes the image, masks worn by another face."""
from __future__ import annotations

import numpy as np
import pytest

from appliance.evaluation.synthetic import SPECIES, paper_mask, synthesize
from appliance.evaluation.synthetic_set import write_set


def test_generator_is_deterministic_and_changes_the_image(photos):
    for species in (*SPECIES, "photo"):
        a, b = synthesize(photos[0], species, 3), synthesize(photos[0], species, 3)
        assert np.array_equal(a, b) and a.shape == photos[0].shape
        assert not np.array_equal(a, synthesize(photos[0], species, 4))
        assert np.abs(a.astype(int) - photos[0].astype(int)).mean() > 5


def test_paper_mask_is_worn_by_another_face(pipeline, photos, tmp_path):
    source, wearer = photos[0], photos[2]
    box, wearer_box = (pipeline.detect(p).subject.box for p in (source, wearer))
    mask = paper_mask(source, box, wearer, wearer_box, seed=4)
    assert mask.shape == wearer.shape and np.array_equal(mask, paper_mask(source, box, wearer, wearer_box, seed=4))
    assert pipeline.detect(mask).subject is not None  # still a face to the detector
    x, y, w, h = (int(v) for v in wearer_box)
    changed = np.abs(mask.astype(int) - wearer.astype(int)).mean(axis=2) > 20
    assert changed[y : y + h, x : x + w].mean() > 0.5 > changed.mean()  # the face, not the frame
    with pytest.raises(ValueError):
        write_set(tmp_path, tmp_path / "out", species=("mask",))

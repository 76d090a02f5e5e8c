"""The Human liveness models as a cue: TF.js-like crops, lazy sessions, scores on real images."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from appliance import paths
from appliance.capture.images import read_image
from appliance.liveness import human_antispoof
from appliance.liveness.human_antispoof import HumanModels, crop_and_resize, face_crop, resize_bilinear
from appliance.packs import PackRegistry


def registry() -> PackRegistry:
    return PackRegistry(paths.model_search_path())


def test_resize_bilinear_samples_like_tfjs_without_half_pixel_centres():
    image = np.arange(16, dtype=np.float32).reshape(4, 4, 1)
    # source = target x 2: rows/columns 0 and 2 exactly, no averaging (TF.js default)
    assert resize_bilinear(image, 2)[:, :, 0].tolist() == [[0.0, 2.0], [8.0, 10.0]]
    # upsampling interpolates between neighbours and clamps at the last pixel
    assert resize_bilinear(image, 8)[0, :, 0].tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.0]


def test_crop_and_resize_is_identity_on_the_whole_image_and_zero_outside():
    image = np.random.default_rng(3).uniform(0, 255, (6, 6, 3)).astype(np.float32)
    # TF: pixel = (y0 / H + i (y1 - y0) / H / (n - 1)) (H - 1): the whole box at n = H is the image
    np.testing.assert_allclose(crop_and_resize(image, (0, 0, 6, 6), 6), image, atol=1e-4)
    outside = crop_and_resize(image, (-10, -10, -4, -4), 3)
    assert not outside.any()  # extrapolation value 0, as TF


def test_face_crop_follows_the_pack_colour_order_and_size():
    pack = registry().get("human-liveness")
    frame = np.zeros((120, 120, 3), np.uint8)
    frame[:, :, 2] = 200  # red in BGR
    rgb = face_crop(frame, (40, 40, 40, 40), pack)
    assert rgb.shape == (1, 3, 32, 32) and rgb.dtype == np.float32
    assert rgb[0, 0].min() == pytest.approx(200) and rgb[0, 2].max() == 0  # R plane first
    bgr = face_crop(frame, (40, 40, 40, 40), replace(pack, input={**pack.input, "colour": "BGR"}))
    assert bgr[0, 2].min() == pytest.approx(200)


def test_models_load_lazily_and_score_the_shared_samples(shared: Path, pipeline):
    models = HumanModels(registry())
    assert models._sessions == {}  # nothing opened until a face is scored
    samples = shared / "data" / "spoof" / "samples"
    for path in sorted(samples.glob("*.jpg")):
        image = read_image(path)
        face = pipeline.detect(image).subject
        scores = models.score(image, face.box)
        assert set(scores.per_model) == set(human_antispoof.PACKS)
        assert all(0.0 <= value <= 1.0 for value in scores.per_model.values())
        assert scores.live == pytest.approx(np.mean(list(scores.per_model.values())))
    assert set(models._sessions) == set(human_antispoof.PACKS)

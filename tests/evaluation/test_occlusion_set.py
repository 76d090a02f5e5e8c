"""The SYNTHETIC occlusion set: seeded and deterministic; ``appliance eval occlusion`` writes its report."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from appliance.capture.images import read_image
from appliance.evaluation.occlusion import KINDS, SYNTHETIC_MARKER, generate, occlude

IDENTITIES = 2  # per split: a quick subset of celeba-dev


@pytest.fixture(scope="module")
def small_set(faces, tmp_path_factory):
    """Four identities of celeba-dev (two per split), two photos each, linked into a folder."""
    root = tmp_path_factory.mktemp("faces")
    for folder in sorted((faces / "celeba-dev").iterdir())[: 2 * IDENTITIES]:
        (root / folder.name).mkdir()
        for photo in sorted(folder.glob("*.jpg"))[:2]:
            (root / folder.name / photo.name).symlink_to(photo)
    return root


def test_the_generator_is_deterministic_with_a_seed(pipeline, small_set):
    def locate(image):
        subject = pipeline.detect(image).subject
        return None if subject is None else subject.mesh

    first = list(generate(small_set, locate, split="a", per_identity=1, seed=5))
    again = list(generate(small_set, locate, split="a", per_identity=1, seed=5))
    other = list(generate(small_set, locate, split="a", per_identity=1, seed=6))
    # the first identity has no other identity's skin for a hand yet
    assert [i.kind for i in first] == ["clean", "mask", "sunglasses", "bar", *KINDS]
    assert all(np.array_equal(a.image, b.image) for a, b in zip(first, again))
    assert all(np.array_equal(i.image, read_image(i.path)) for i in first if i.kind == "clean")  # untouched
    assert any(a.path != b.path or not np.array_equal(a.image, b.image) for a, b in zip(first, other))
    clean = first[0].image
    assert all((np.abs(i.image.astype(int) - clean.astype(int)).max(axis=2) > 40).sum() > 200 for i in first[1:4])
    assert {i.identity for i in first} == {p.name for p in sorted(small_set.iterdir())[::2]}
    with pytest.raises(ValueError):
        occlude(clean, locate(clean), "scarf", 0)


def test_the_command_writes_its_report(small_set, tmp_path):
    out = tmp_path / "report"
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "eval", "occlusion", str(small_set), "--out", str(out),
         "--per-identity", "1", "--images", str(tmp_path / "set")],
        capture_output=True, text=True, env=dict(os.environ), timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "occlusion.json").read_text())
    assert report["synthetic"] is True and set(report["splits"]) == {"a", "b"}
    for summary in report["splits"].values():
        assert set(summary) == set(KINDS)
        assert 0.0 <= summary["clean"]["false_occlusion_rate"] <= 1.0
        assert all(0.0 <= summary[k]["detection_rate"] <= 1.0 for k in KINDS[1:])
    assert set(report["suggested_limits"]) == {"max_eyes_occlusion", "max_mouth_occlusion", "max_face_occlusion"}
    table = (out / "occlusion.md").read_text()
    assert "| mask |" in table and "SYNTHETIC" in table and "| mask |" in result.stdout
    images = json.loads((out / "images.json").read_text())
    assert len(images["a"]) == len(list((tmp_path / "set" / "a").rglob("*.png")))
    assert json.loads((tmp_path / "set" / SYNTHETIC_MARKER).read_text())["synthetic"] is True

"""Leave-one-species-out PAD evaluation and the wider synthetic species (issue 15)."""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest

from appliance.cli.main import main
from appliance.evaluation.pad_loso import identity_of
from appliance.evaluation.synthetic import synthesize, synthesize_sequence
from appliance.evaluation.synthetic_set import write_set
from appliance.evaluation.synthetic_species import WIDE_SPECIES, is_held_out
from appliance.liveness import grey_path

LOSO_SPECIES = ("print", "screen_pentile", "print_handheld")


@pytest.mark.parametrize("species", sorted(WIDE_SPECIES))
def test_each_wide_species_is_deterministic_and_frame_sized(photos, species):
    photo = photos[0]
    first = synthesize(photo, species, seed=7)
    assert first.shape == photo.shape and first.dtype == np.uint8
    assert np.array_equal(first, synthesize(photo, species, seed=7))
    assert not np.array_equal(first, synthesize(photo, species, seed=8))
    held = synthesize(photo, species, seed=7, held_out=True)
    assert held.shape == photo.shape and not np.array_equal(first, held)  # another part of the parameter space


@pytest.mark.parametrize("species", sorted(WIDE_SPECIES))
def test_wide_species_bursts_draw_from_the_held_out_range_too(photos, species):
    seen = synthesize_sequence(photos[0], species, seed=7, frames=2)
    held = synthesize_sequence(photos[0], species, seed=7, frames=2, held_out=True)
    assert len(held) == 2 and held[0].shape == photos[0].shape
    assert not np.array_equal(seen[0], held[0])


def _grain(frame: np.ndarray) -> float:
    """Sensor noise of the whole frame, by the grey path's own estimate (its too-dark gate)."""
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    return grey_path.noise(grey, (0, 0, grey.shape[1], grey.shape[0]))


def test_a_low_light_burst_carries_the_dark_cameras_gain_noise(photos):
    """Every frame of a low-light burst went through the dark camera (its amplified noise), and
    the held-out part of the range is darker still, as for single captures."""
    for seed in (7, 8):
        lit = [_grain(f) for f in synthesize_sequence(photos[0], "print_hd_glossy", seed, frames=3)]
        dark = [_grain(f) for f in synthesize_sequence(photos[0], "low_light", seed, frames=3)]
        darker = [_grain(f) for f in synthesize_sequence(photos[0], "low_light", seed, frames=3, held_out=True)]
        assert np.median(dark) > 1.5 * np.median(lit) and np.median(darker) > 1.4 * np.median(dark)


def test_held_out_identities_are_a_fixed_share():
    names = [f"id{n:05d}" for n in range(400)]
    held = [name for name in names if is_held_out(name)]
    assert 120 < len(held) < 280 and held == [name for name in names if is_held_out(name)]
    assert identity_of("id00012__003.jpg") == "id00012"


@pytest.fixture(scope="module")
def loso_set(tmp_path_factory, faces):
    """Two photos of each of 8 celeba-dev identities (both identity halves) and 8 attacks per species."""
    source = tmp_path_factory.mktemp("src")
    identities = sorted((faces / "celeba-dev").iterdir())
    picked = [i for i in identities if is_held_out(i.name)][:4] + [i for i in identities if not is_held_out(i.name)][:4]
    for identity in picked:
        (source / identity.name).mkdir()
        for image in sorted(identity.glob("*.jpg"))[:2]:
            shutil.copy(image, source / identity.name / image.name)
    out = tmp_path_factory.mktemp("loso")
    write_set(source, out, per_species=8, species=LOSO_SPECIES, seed=3)
    return out


def test_leave_one_out_table(loso_set, tmp_path, capsys):
    out, table = tmp_path / "loso.json", tmp_path / "loso.md"
    assert main(["eval", "pad", str(loso_set), "--leave-one-out", "--out", str(out), "--markdown", str(table)]) == 0
    result = json.loads(out.read_text())
    assert set(result["species"]) == set(LOSO_SPECIES)
    for row in result["species"].values():
        assert {"unseen_apcer", "seen_apcer", "seen_apcer_worst", "bpcer", "threshold"} <= set(row)
        assert row["unseen_apcer"] is None or 0.0 <= row["unseen_apcer"] <= 1.0
    assert result["worst_unseen_species"] in LOSO_SPECIES and result["synthetic"] is True
    assert result["bona_fide"]["calibration"] > 0 and result["bona_fide"]["held_out"] > 0
    assert "| left-out species |" in table.read_text() and "Worst unseen species" in capsys.readouterr().out


def test_cut_out_holes_are_cut_where_the_located_eyes_are_and_show_the_wearers(faces, pipeline, tmp_path):
    """In-the-wild photos are not centred portraits: the holes follow the detector's eyes, and
    through them shows the face of the person holding the print, eyes behind holes."""
    from appliance.evaluation.synthetic import artefact
    from appliance.evaluation.synthetic_species import Holes, behind_holes

    photo, wearer = (cv2.imread(str(p)) for p in sorted((faces / "celeba-dev").glob("*/*.jpg"))[0:40:39])

    def eyes_of(image):
        return tuple((float(x), float(y)) for x, y in pipeline.detect(image).subject.five_points[:2])

    eyes = eyes_of(photo)
    behind = behind_holes(wearer, eyes_of(wearer), eyes, photo.shape)
    for held_out in (False, True):
        flat = artefact(photo, "cutout_eyes", np.random.default_rng(5), held_out, Holes(eyes))
        worn = artefact(photo, "cutout_eyes", np.random.default_rng(5), held_out, Holes(eyes, behind))
        for x, y in eyes:
            patch = (slice(int(y) - 2, int(y) + 3), slice(int(x) - 2, int(x) + 3))
            assert np.ptp(flat[patch].reshape(-1, 3), axis=0).max() < 1e-3  # a hole: one flat colour
            assert np.array_equal(worn[patch], behind[patch])  # the wearer's own eye behind it
        moved = Holes(((eyes[0][0] + 30, eyes[0][1] + 20), (eyes[1][0] + 30, eyes[1][1] + 20)))
        elsewhere = artefact(photo, "cutout_eyes", np.random.default_rng(5), held_out, moved)
        assert not np.allclose(elsewhere[int(eyes[0][1]), int(eyes[0][0])], flat[int(eyes[0][1]), int(eyes[0][0])])
    placed = eyes_of(behind.astype(np.uint8))  # the wearer's eyes found where the print's are
    assert max(abs(a - b) for p, q in zip(placed, eyes) for a, b in zip(p, q)) < 0.15 * abs(eyes[1][0] - eyes[0][0])
    with pytest.raises(ValueError):
        write_set(tmp_path, tmp_path / "out", species=("cutout_eyes",))

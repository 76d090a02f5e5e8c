"""A synthetic attack set on disk: ``write_set`` puts links to the bona fide photos and the
attacks of each species (``synthetic``) in the folder layout ``appliance eval pad`` reads,
with a ``SYNTHETIC.json`` marker that every report built on it repeats."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

from appliance.capture.images import read_image
from appliance.evaluation.datasets import Sample, scan_identities
from appliance.evaluation.synthetic import SPECIES, Box, paper_mask, synthesize, synthesize_sequence
from appliance.evaluation.synthetic_species import Eyes, Holes, behind_holes, is_held_out

SYNTHETIC_MARKER = "SYNTHETIC.json"  # written at the root of every generated set


def _worn(image: np.ndarray, sample: Sample, samples: list[Sample], rng: np.random.Generator,
          locate: Callable[[np.ndarray], Any]) -> tuple[Any, np.ndarray, Any] | None:
    """For an instrument worn by someone else (a mask, a cut-out): what ``locate`` finds in
    ``image``, the photo of a wearer drawn from ``samples``, and what it finds there; None when
    the wearer is the same person or either face is not found."""
    wearer_sample = samples[int(rng.integers(len(samples)))]
    if wearer_sample.identity == sample.identity:
        return None
    wearer = read_image(wearer_sample.path)
    found, wearer_found = locate(image), locate(wearer)
    if found is None or wearer_found is None:
        return None
    return found, wearer, wearer_found


def write_set(source: str | Path, out: str | Path, split: str = "all", per_species: int = 400,
              species: tuple[str, ...] = SPECIES, seed: int = 0, frames: int = 0,
              locate: Callable[[np.ndarray], Box | None] | None = None,
              locate_eyes: Callable[[np.ndarray], Eyes | None] | None = None) -> dict:
    """Write ``out/bona_fide/`` (links to the source images) and ``out/attack/<species>/``.

    Source images are sampled per species with ``seed``; ``frames`` > 0 writes each attack
    as a folder of that many frames (flat-plane motion) instead of one image. Masks need
    ``locate`` (image -> face box) to cut the face and to place it on the wearer; cut-outs
    need ``locate_eyes`` (image -> the two eye centres) to cut the holes where the eyes are and
    to put another person's eyes behind them. An image whose face is not found gives no attack
    of those species.
    """
    if "mask" in species and locate is None:
        raise ValueError("the mask species needs a face locator")
    if "cutout_eyes" in species and locate_eyes is None:
        raise ValueError("the cut-out species needs an eye locator")
    out = Path(out)
    samples = scan_identities(source, split=split)
    bona = out / "bona_fide"
    bona.mkdir(parents=True, exist_ok=True)
    for sample in samples:
        link = bona / f"{sample.identity}__{sample.path.name}"
        if not link.exists():
            try:
                link.symlink_to(sample.path.resolve())
            except OSError:
                link.write_bytes(sample.path.read_bytes())
    counts = {}
    for species_index, name in enumerate(species):
        rng = np.random.default_rng([seed, species_index])
        chosen = rng.choice(len(samples), size=min(per_species, len(samples)), replace=False)
        folder = out / "attack" / name
        folder.mkdir(parents=True, exist_ok=True)
        for index in sorted(chosen):
            sample = samples[index]
            stem = f"{sample.identity}__{sample.path.stem}"
            item_seed = int(seed * 1_000_003 + species_index * 100_003 + index)
            held_out = is_held_out(sample.identity)
            image = read_image(sample.path)
            if name == "mask":
                worn = _worn(image, sample, samples, rng, locate)
                if worn is None:
                    continue
                face, wearer, wearer_face = worn
                cv2.imwrite(str(folder / f"{stem}.png"), paper_mask(image, face, wearer, wearer_face, item_seed))
                continue
            holes = None
            if name == "cutout_eyes":
                worn = _worn(image, sample, samples, rng, locate_eyes)
                if worn is None:
                    continue
                eyes, wearer, wearer_eyes = worn
                holes = Holes(eyes, behind_holes(wearer, wearer_eyes, eyes, image.shape))
            if frames > 0:
                target = folder / stem
                target.mkdir(exist_ok=True)
                shown: np.ndarray | list[np.ndarray] = image
                if name == "replay":  # a replayed "recording": the identity's photos in turn
                    same = [x.path for x in samples if x.identity == sample.identity and x.path != sample.path]
                    shown = [image] + [read_image(p) for p in same[: frames - 1]]
                burst = synthesize_sequence(shown, name, item_seed, frames, held_out, holes)
                for number, frame in enumerate(burst):
                    cv2.imwrite(str(target / f"frame_{number:03d}.png"), frame)
            else:
                attack = synthesize(image, name, item_seed, held_out, holes)
                cv2.imwrite(str(folder / f"{stem}.png"), attack)
        counts[name] = sum(1 for _ in folder.iterdir())
    info = {"synthetic": True, "source": str(Path(source).resolve()), "split": split, "seed": seed,
            "frames": frames, "bona_fide": len(samples), "attacks": counts,
            "generator": "appliance.evaluation.synthetic",
            "held_out": "wide species: identities picked by synthetic_species.is_held_out use the held-out ranges"}
    (out / SYNTHETIC_MARKER).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return info

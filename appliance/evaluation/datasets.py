"""Labelled image folders: one sub-folder per identity (``DIR/<identity>/<image>``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from appliance.capture.image_headers import IMAGE_SUFFIXES
from appliance.errors import ApplianceError, ErrorCode


@dataclass(frozen=True)
class Sample:
    identity: str
    path: Path


SPLITS = ("all", "a", "b")


def scan_identities(root: str | Path, min_per_identity: int = 1, split: str = "all") -> list[Sample]:
    """Samples sorted by identity then file name, so 'the first images' are well defined.

    ``split`` "a" keeps the identities of even index (in name order), "b" those of odd
    index: calibrate on one, report on the other, with no identity in both.
    """
    if split not in SPLITS:
        raise ApplianceError(ErrorCode.DATASET_INVALID, f"split {split!r} is not one of {SPLITS}")
    root = Path(root)
    if not root.is_dir():
        if root.exists():
            raise ApplianceError(ErrorCode.DATASET_INVALID, f"{root} is a file, not a dataset folder (one "
                                                            "sub-folder of images per identity)")
        raise ApplianceError(ErrorCode.FILE_NOT_FOUND, f"dataset folder {root}")
    samples = []
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if split != "all":
        folders = folders[0 if split == "a" else 1 :: 2]
    for folder in folders:
        files = sorted(
            (p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
            key=lambda p: str(p.relative_to(folder)),
        )
        if len(files) >= min_per_identity:
            samples.extend(Sample(folder.name, f) for f in files)
    if not samples:
        raise ApplianceError(
            ErrorCode.DATASET_INVALID, f"{root}: expected one sub-folder of images per identity, found no images"
        )
    return samples

"""``scan_identities``: a labelled folder read in a defined order, and a clear error for anything else."""
from __future__ import annotations

from pathlib import Path

import pytest

from appliance.errors import ApplianceError, ErrorCode
from appliance.evaluation.datasets import scan_identities


def _folder(root: Path, layout: dict[str, int]) -> Path:
    root.mkdir(parents=True)
    for identity, images in layout.items():
        (root / identity).mkdir(parents=True)
        for index in range(images):
            (root / identity / f"{index}.jpg").write_bytes(b"")  # scanning reads names, not pixels
    return root


def test_samples_come_in_identity_then_name_order_and_the_splits_share_no_identity(tmp_path):
    root = _folder(tmp_path / "faces", {"carol": 2, "alice": 3, "bob": 1, "dave": 2})
    (root / "notes.txt").write_text("a file beside the identities is not one")
    samples = scan_identities(root)
    assert [(s.identity, s.path.name) for s in samples][:4] == [("alice", "0.jpg"), ("alice", "1.jpg"),
                                                                 ("alice", "2.jpg"), ("bob", "0.jpg")]
    assert {s.identity for s in scan_identities(root, min_per_identity=2)} == {"alice", "carol", "dave"}
    split_a, split_b = ({s.identity for s in scan_identities(root, split=part)} for part in ("a", "b"))
    assert split_a == {"alice", "carol"} and split_b == {"bob", "dave"}


@pytest.mark.parametrize("make, code, words", [
    (lambda root: root / "absent", ErrorCode.FILE_NOT_FOUND, "dataset folder"),
    (lambda root: _file(root / "one.jpg"), ErrorCode.DATASET_INVALID, "is a file, not a dataset folder"),
    (lambda root: _folder(root / "flat", {}), ErrorCode.DATASET_INVALID, "one sub-folder of images per identity"),
])
def test_a_path_that_is_no_labelled_folder_is_refused_with_what_it_is(tmp_path, make, code, words):
    with pytest.raises(ApplianceError) as refused:
        scan_identities(make(tmp_path))
    assert refused.value.code is code and words in str(refused.value)


def test_an_unknown_split_is_refused(tmp_path):
    with pytest.raises(ApplianceError) as refused:
        scan_identities(_folder(tmp_path / "faces", {"alice": 1}), split="c")
    assert refused.value.code is ErrorCode.DATASET_INVALID


def _file(path: Path) -> Path:
    path.write_bytes(b"\xff\xd8")
    return path

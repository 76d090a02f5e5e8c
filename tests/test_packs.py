"""Model packs: manifests, checksums, licences, and templates that refuse to mix packs."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from appliance import paths
from appliance.errors import ApplianceError, ErrorCode
from appliance.packs import PackRegistry
from appliance.vision.templates import Template, similarity


def registry() -> PackRegistry:
    return PackRegistry(paths.model_search_path())


def test_every_pack_records_licence_and_commercial_flag():
    packs = registry().packs()
    assert {"mediapipe-face-landmarker", "w600k-mbf", "dlib-resnet-v1", "yunet-2026may"} <= set(packs)
    for pack in packs.values():
        assert pack.licence and isinstance(pack.commercial_use, bool)
    # a non-commercial embedder is never the only choice
    embedders = [p for p in packs.values() if p.kind == "embedding"]
    assert any(p.commercial_use for p in embedders)
    assert not packs["w600k-mbf"].commercial_use


def test_installed_model_files_verify():
    reg = registry()
    for pack in reg.packs().values():
        assert reg.model_file(pack).is_file()


def test_checksum_mismatch_is_refused(tmp_path: Path):
    source = registry().get("w600k-mbf")
    folder = tmp_path / "w600k-mbf"
    folder.mkdir()
    shutil.copy(source.directory / "manifest.toml", folder / "manifest.toml")
    (folder / source.file_name).write_bytes(b"not the model")
    reg = PackRegistry([tmp_path])
    with pytest.raises(ApplianceError) as error:
        reg.model_file(reg.get("w600k-mbf"))
    assert error.value.code is ErrorCode.PACK_CHECKSUM


def test_missing_file_and_unknown_pack_errors(tmp_path: Path):
    source = registry().get("w600k-mbf")
    folder = tmp_path / "w600k-mbf"
    folder.mkdir()
    shutil.copy(source.directory / "manifest.toml", folder / "manifest.toml")
    reg = PackRegistry([tmp_path])
    with pytest.raises(ApplianceError) as missing:
        reg.model_file(reg.get("w600k-mbf"))
    assert missing.value.code is ErrorCode.PACK_FILE_MISSING
    assert "appliance models install" in str(missing.value)
    with pytest.raises(ApplianceError) as unknown:
        reg.get("no-such-pack")
    assert unknown.value.code is ErrorCode.PACK_NOT_FOUND


def test_invalid_manifest_is_reported(tmp_path: Path):
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "manifest.toml").write_text("[pack]\nid = 'broken'\n")
    with pytest.raises(ApplianceError) as error:
        PackRegistry([tmp_path]).packs()
    assert error.value.code is ErrorCode.PACK_INVALID


def test_templates_of_different_packs_are_not_compared():
    vector = np.ones(4, dtype=np.float32) / 2
    a = Template(vector, "w600k-mbf", "1.0.0")
    b = Template(vector, "dlib-resnet-v1", "1.0.0")
    assert similarity(a, Template(vector, "w600k-mbf", "1.0.0")) == pytest.approx(1.0)
    with pytest.raises(ApplianceError) as error:
        similarity(a, b)
    assert error.value.code is ErrorCode.PACK_MISMATCH
    with pytest.raises(ApplianceError):
        similarity(a, Template(vector, "w600k-mbf", "2.0.0"))

"""Signed updates: unsigned, foreign-signed and tampered packages are refused before use; a
pack that fails its start-up self-test (real model load, real faces) is rolled back."""
from __future__ import annotations

import io
import shutil
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance import paths
from appliance.errors import ApplianceError, ErrorCode
from appliance.ops.selftest import default_images, embedding_selftest
from appliance.ops.updates import ACTIVE, Slots, apply_update, build_package, run_selftest, verify_package
from appliance.packs.registry import PackRegistry
from appliance.digests import sha256_file

PACK = "w600k-mbf"
PUBLISHER = Ed25519PrivateKey.generate()
TRUSTED = [PUBLISHER.public_key()]


def _pack_folder(tmp: Path, version: str, model_bytes: bytes | None = None) -> Path:
    """The repo's w600k-mbf pack re-versioned (the model file itself, or other bytes)."""
    registry = PackRegistry(paths.model_search_path())
    pack = registry.get(PACK)
    installed = registry.model_file(pack)  # wherever 'appliance models install' put it
    folder = tmp / f"src-{version}"
    folder.mkdir()
    model = folder / "w600k_mbf.onnx"
    if model_bytes is None:
        shutil.copy(installed, model)
    else:
        model.write_bytes(model_bytes)
    manifest = (pack.directory / "manifest.toml").read_text()
    manifest = manifest.replace('version = "1.0.0"', f'version = "{version}"', 1)
    manifest = manifest.replace(pack.sha256, sha256_file(model))
    (folder / "manifest.toml").write_text(manifest)
    return folder


def _small(tmp: Path, version: str = "2.0.0") -> Path:
    folder = tmp / f"small-{version}"
    folder.mkdir()
    (folder / "manifest.toml").write_text(f'[pack]\nid = "tiny"\nversion = "{version}"\n')
    (folder / "model.bin").write_bytes(b"\x00" * 1000)
    return folder


def _never_called(root, pack_id):
    raise AssertionError("a refused package must not reach the self-test")


def _rewrite(package: Path, change) -> None:
    """Re-pack with ``change(name, data) -> data`` applied to each member."""
    with tarfile.open(package) as tar:
        members = [(m, tar.extractfile(m).read()) for m in tar]
    with tarfile.open(package, "w") as tar:
        for member, data in members:
            data = change(member.name, data)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))


def test_unsigned_package_is_refused(tmp_path):
    package = tmp_path / "tiny.pack"
    build_package(_small(tmp_path), package, PUBLISHER, "model-pack", "tiny", "2.0.0")
    with tarfile.open(package) as tar:
        kept = [(m, tar.extractfile(m).read()) for m in tar if m.name != "RELEASE.sig"]
    with tarfile.open(package, "w") as tar:
        for member, data in kept:
            tar.addfile(member, io.BytesIO(data))
    with pytest.raises(ApplianceError) as refused:
        apply_update(package, tmp_path / "models", TRUSTED, _never_called)
    assert refused.value.code is ErrorCode.UPDATE_REJECTED and "unsigned" in refused.value.detail
    assert not (tmp_path / "models" / "tiny").exists()


def test_package_signed_by_another_key_is_refused(tmp_path):
    package = tmp_path / "tiny.pack"
    build_package(_small(tmp_path), package, Ed25519PrivateKey.generate(), "model-pack", "tiny", "2.0.0")
    with pytest.raises(ApplianceError) as refused:
        apply_update(package, tmp_path / "models", TRUSTED, _never_called)
    assert "untrusted" in refused.value.detail
    with pytest.raises(ApplianceError):
        verify_package(package, [])  # no trusted key at all: nothing is accepted


@pytest.mark.parametrize("tamper", ["payload byte", "release document", "extra file", "path traversal"])
def test_tampered_package_is_refused(tmp_path, tamper):
    package = tmp_path / "tiny.pack"
    build_package(_small(tmp_path), package, PUBLISHER, "model-pack", "tiny", "2.0.0")
    if tamper == "payload byte":
        _rewrite(package, lambda n, d: d[:-1] + b"\x01" if n == "payload/model.bin" else d)
    elif tamper == "release document":
        _rewrite(package, lambda n, d: d.replace(b'"2.0.0"', b'"2.0.1"') if n == "RELEASE.json" else d)
    else:
        name = "payload/evil.py" if tamper == "extra file" else "../../evil.py"
        with tarfile.open(package, "a") as tar:
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, io.BytesIO(b"evil"))
    with pytest.raises(ApplianceError) as refused:
        apply_update(package, tmp_path / "models", TRUSTED, _never_called)
    assert refused.value.code is ErrorCode.UPDATE_REJECTED
    assert not (tmp_path / "models" / "tiny").exists() and not (tmp_path.parent / "evil.py").exists()


def test_good_pack_activates_and_failing_pack_is_rolled_back(tmp_path, config, shared):
    root = tmp_path / "models"
    selftest = embedding_selftest(config, default_images())
    good = tmp_path / "good.pack"
    build_package(_pack_folder(tmp_path, "1.0.1"), good, PUBLISHER, "model-pack", PACK, "1.0.1")
    apply_update(good, root, TRUSTED, selftest)
    slots = Slots(root, PACK)
    assert slots.state().active == "1.0.1"
    assert (root / ACTIVE / PACK).resolve() == (root / PACK / "1.0.1").resolve()

    # signed by the publisher, hashes right - but the model is not a model
    broken = tmp_path / "broken.pack"
    build_package(_pack_folder(tmp_path, "1.0.2", b"\x08\x01" + bytes(range(256)) * 64), broken, PUBLISHER,
                  "model-pack", PACK, "1.0.2")
    with pytest.raises(ApplianceError) as failed:
        apply_update(broken, root, TRUSTED, selftest)
    assert failed.value.code is ErrorCode.SELFTEST_FAILED
    state = slots.state()
    assert state.active == "1.0.1" and "1.0.2" in state.failed
    assert (root / ACTIVE / PACK).resolve() == (root / PACK / "1.0.1").resolve()
    assert (root / PACK / "1.0.2").is_dir()  # kept for diagnosis, never active


def test_startup_selftest_rolls_back_a_version_that_broke_on_disk(tmp_path, config, shared):
    root = tmp_path / "models"
    slots = Slots(root, PACK)
    for version in ("1.0.1", "1.0.2"):
        package = tmp_path / f"{version}.pack"
        build_package(_pack_folder(tmp_path, version), package, PUBLISHER, "model-pack", PACK, version)
        apply_update(package, root, TRUSTED, lambda r, p: None)
    assert slots.state().active == "1.0.2"
    model = root / PACK / "1.0.2" / "w600k_mbf.onnx"
    model.write_bytes(model.read_bytes()[: model.stat().st_size // 2])  # SD card damage
    with pytest.raises(ApplianceError) as failed:
        run_selftest(slots, embedding_selftest(config, default_images()))
    assert failed.value.code is ErrorCode.SELFTEST_FAILED
    assert slots.state().active == "1.0.1"
    run_selftest(slots, embedding_selftest(config, default_images()))  # the previous one passes

"""The publisher's side of updates, as commands: ``appliance publish key`` and ``publish pack``
on the publisher's machine, ``appliance update`` on a device that trusts the public half. A
folder a device could not load, an existing key, and an application package are refused."""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance import paths
from appliance.errors import ApplianceError, ErrorCode
from appliance.ops.publishing import build_package, load_publisher_key
from appliance.ops.updates import ACTIVE, Slots, apply_update
from appliance.packs.registry import PackRegistry

PACK = "w600k-mbf"
VERSION = "1.0.7"


def appliance(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "appliance", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})})


def _pack_folder(tmp: Path) -> Path:
    """The shipped w600k-mbf pack as a publisher would re-issue it: a new version number."""
    registry = PackRegistry(paths.model_search_path())
    pack = registry.get(PACK)
    folder = tmp / "pack"
    folder.mkdir()
    shutil.copy(registry.model_file(pack), folder / pack.file_name)
    manifest = (pack.directory / "manifest.toml").read_text()
    (folder / "manifest.toml").write_text(manifest.replace('version = "1.0.0"', f'version = "{VERSION}"', 1))
    return folder


def test_a_published_pack_is_installed_by_a_device_that_trusts_the_publisher(tmp_path, shared):
    keys = tmp_path / "publisher"
    made = appliance("publish", "key", "acme", "--out", str(keys))
    assert made.returncode == 0, made.stderr
    assert stat.S_IMODE((keys / "acme.key").stat().st_mode) == 0o600
    again = appliance("publish", "key", "acme", "--out", str(keys))
    assert again.returncode == ErrorCode.UPDATE_REJECTED.exit_status and "not overwritten" in again.stderr

    package = tmp_path / "w600k-mbf-1.0.7.pack"
    published = appliance("publish", "pack", str(_pack_folder(tmp_path)), "--key", str(keys / "acme.key"),
                          "--out", str(package))
    assert published.returncode == 0, published.stderr
    assert published.stdout.splitlines()[0] == f"{package}: {PACK}@{VERSION}, 2 files signed"
    assert "not for commercial use" in published.stdout  # the pack's licence travels with it

    device = tmp_path / "device"
    trusted = device / "publishers"
    trusted.mkdir(parents=True)
    shutil.copy(keys / "acme.pub", trusted)  # what the integrator copies onto each device
    env = {"APPLIANCE__OPS__MODELS_ROOT": str(device / "packs"), "APPLIANCE__OPS__PUBLISHER_KEYS_DIR": str(trusted),
           "APPLIANCE_DATA_DIR": str(device / "data")}
    updated = appliance("update", str(package), env=env)
    assert updated.returncode == 0, updated.stderr[-2000:]
    assert updated.stdout.strip() == f"{PACK}@{VERSION} installed, self-test passed, active"
    assert (device / "packs" / ACTIVE / PACK).resolve() == device / "packs" / PACK / VERSION


def test_a_folder_a_device_could_not_load_is_not_signed(tmp_path):
    key = tmp_path / "acme.key"
    key.write_text(Ed25519PrivateKey.generate().private_bytes_raw().hex())
    folder = _pack_folder(tmp_path)
    (folder / "w600k_mbf.onnx").write_bytes(b"not the model the manifest names")
    changed = appliance("publish", "pack", str(folder), "--key", str(key), "--out", str(tmp_path / "p.pack"))
    assert changed.returncode == ErrorCode.UPDATE_REJECTED.exit_status
    assert "differs from the manifest's sha256" in changed.stderr and not (tmp_path / "p.pack").exists()
    (folder / "manifest.toml").unlink()
    bare = appliance("publish", "pack", str(folder), "--key", str(key), "--out", str(tmp_path / "p.pack"))
    assert bare.returncode == ErrorCode.UPDATE_REJECTED.exit_status and "no manifest.toml" in bare.stderr
    liveness = tmp_path / "liveness"
    shutil.copytree(paths.resource("models") / "human-antispoof", liveness)
    refused = appliance("publish", "pack", str(liveness), "--key", str(key), "--out", str(tmp_path / "l.pack"))
    assert refused.returncode == ErrorCode.UPDATE_REJECTED.exit_status and "cannot be self-tested" in refused.stderr
    key.write_text("feed")
    with pytest.raises(ApplianceError, match="not 64 hex digits"):
        load_publisher_key(key)


def test_an_application_package_is_verified_but_never_installed(tmp_path):
    """The application ships as a .deb; a signed 'app' release is refused before anything is written."""
    signer = Ed25519PrivateKey.generate()
    source = tmp_path / "app"
    source.mkdir()
    (source / "appliance.whl").write_bytes(b"wheel")
    package = tmp_path / "app.pack"
    build_package(source, package, signer, "app", "appliance", "9.9.9")
    with pytest.raises(ApplianceError) as refused:
        apply_update(package, tmp_path / "packs", [signer.public_key()], lambda root, pack_id: None)
    assert refused.value.code is ErrorCode.UPDATE_REJECTED and ".deb" in refused.value.detail
    assert not (tmp_path / "packs").exists() and Slots(tmp_path / "packs", "appliance").state().active is None

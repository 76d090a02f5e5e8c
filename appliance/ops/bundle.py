"""A device's provisioning bundle: what a door needs from the site, in one file.

The matcher host provisions a device (certificate, envelope keys, directory entry); the
door is another machine. ``export_device`` packs exactly what the door's daemon reads — the
CA certificate, the device's certificate and private key, its envelope key pair and the
public-key directory — into a gzip tar written 0600; ``import_device`` unpacks it into the
door's data folder, accepting only those member names (no links, no paths outside), with the
same modes the provisioning wrote. The CA key, other devices' keys and the stores never
leave the matcher host.
"""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from appliance.durable_file import SHARED, write_durably
from appliance.broker.pki import ProjectPKI
from appliance.errors import ApplianceError, ErrorCode

BUNDLE_MODE = 0o600
FOLDER_MODE = 0o700
DIRECTORY_FILE = "directory.json"
MAX_MEMBER_BYTES = 1024 * 1024  # certificates and keys are a few KB; anything larger is not a bundle


def _members(data_dir: Path, device: str) -> dict[str, Path]:
    """Bundle member name -> the file in a site folder (the same relative path on both sides)."""
    pki = ProjectPKI(data_dir / "pki")
    files = {pki.ca_cert, pki.cert(device), pki.key(device), data_dir / DIRECTORY_FILE}
    nodes = data_dir / "nodes" / device
    if nodes.is_dir():
        files.update(p for p in nodes.iterdir() if p.is_file())
    return {path.relative_to(data_dir).as_posix(): path for path in sorted(files)}


def export_device(data_dir: Path, device: str, out: Path) -> list[str]:
    """Write the bundle of ``device`` to ``out`` (never overwriting); returns its member names."""
    members = _members(data_dir, device)
    missing = [name for name, path in members.items() if not path.is_file()]
    if missing or not any(name.startswith(f"nodes/{device}/") for name in members):
        raise ApplianceError(ErrorCode.FILE_NOT_FOUND, f"device {device!r} is not provisioned in {data_dir} "
                             f"(missing: {', '.join(missing) or 'envelope keys'})")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, BUNDLE_MODE)
    with os.fdopen(fd, "wb") as handle, tarfile.open(fileobj=handle, mode="w:gz") as bundle:
        for name, path in members.items():
            info = tarfile.TarInfo(name)
            data = path.read_bytes()
            info.size, info.mode = len(data), path.stat().st_mode & 0o777
            bundle.addfile(info, io.BytesIO(data))
    return list(members)


def import_device(bundle_path: Path, data_dir: Path) -> str:
    """Unpack a bundle into ``data_dir``; returns the device name it provisions."""
    try:
        bundle = tarfile.open(bundle_path, mode="r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise ApplianceError(ErrorCode.FILE_NOT_FOUND, f"{bundle_path}: not a device bundle ({exc})") from None
    with bundle:
        infos = bundle.getmembers()
        devices = {Path(i.name).parts[1] for i in infos if i.name.startswith("nodes/") and len(Path(i.name).parts) == 3}
        if len(devices) != 1:
            raise ApplianceError(
                ErrorCode.CONFIG_INVALID, f"{bundle_path}: a bundle holds one device, found {sorted(devices)}"
            )
        device = devices.pop()
        expected = set(_expected_names(device))
        for info in infos:
            allowed = info.name in expected or (info.name.startswith(f"nodes/{device}/") and info.name.count("/") == 2)
            if not info.isfile() or not allowed or info.size > MAX_MEMBER_BYTES:
                raise ApplianceError(ErrorCode.CONFIG_INVALID, f"{bundle_path}: unexpected member {info.name!r}")
        for info in infos:
            target = data_dir / info.name
            target.parent.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
            source = bundle.extractfile(info)
            assert source is not None  # a regular file, checked above
            # whole or not at all (a door unplugged right after its set-up keeps its keys); keys
            # stay 0600, certificates at most 0644
            write_durably(target, source.read(), info.mode & SHARED)
    return device


def _expected_names(device: str) -> list[str]:
    pki = ProjectPKI(Path("pki"))
    return [p.as_posix() for p in (pki.ca_cert, pki.cert(device), pki.key(device))] + [DIRECTORY_FILE]

"""Systemd unit files in tests: installed as the project's script installs them, and the
``[Service]`` section as systemd sees its keys."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from appliance import paths


def install_units(root: Path) -> Path:
    """``scripts/install-systemd.sh --root root``: the folder of the installed units."""
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze missing: scripts/bootstrap.sh installs Debian's systemd package")
    subprocess.run(["bash", str(paths.REPO_ROOT / "scripts" / "install-systemd.sh"), "--root", str(root),
                    "--prefix", str(paths.REPO_ROOT)], check=True, capture_output=True, text=True)
    return root / "etc" / "systemd" / "system"


def service_section(path: Path) -> dict[str, list[str]]:
    """Every ``Key=value`` of ``[Service]``, repeated keys in order (systemd appends them)."""
    values: dict[str, list[str]] = {}
    section = None
    for line in path.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values

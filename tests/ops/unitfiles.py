"""Reading systemd unit files in tests: the ``[Service]`` section as systemd sees its keys."""
from __future__ import annotations

from pathlib import Path


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

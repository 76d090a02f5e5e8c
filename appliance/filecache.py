"""Small JSON files read on hot paths (the PKI registry, device policies), parsed once per
version of the file: the matcher checks a device's policy on every request."""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

_cache: dict[Path, tuple[tuple[int, int, int], Any]] = {}
_lock = threading.Lock()


def file_stamp(path: str | Path) -> tuple[int, int, int] | None:
    """What changes when the file is replaced or written (None: absent); the project's writers
    replace these files atomically, so a new version has a new inode or time."""
    try:
        stat = os.stat(path)  # not ``Path.stat``: its wrapper doubled a hot-path check's cost (issue 17)
    except FileNotFoundError:
        return None
    return stat.st_mtime_ns, stat.st_size, stat.st_ino


def read_json(path: Path, default: Any) -> Any:
    """The parsed file, re-read only when it was replaced or changed; ``default`` when absent.
    Callers must not mutate the result (it is shared)."""
    stamp = file_stamp(path)
    if stamp is None:
        return default
    with _lock:
        cached = _cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    value = json.loads(path.read_text())
    with _lock:
        _cache[path] = (stamp, value)
    return value

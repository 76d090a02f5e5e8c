"""Small JSON files read on hot paths (the PKI registry, device policies), parsed once per
version of the file: the matcher checks a device's policy on every request."""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

_cache: dict[Path, tuple[tuple[int, int, int], Any]] = {}
_lock = threading.Lock()


def read_json(path: Path, default: Any) -> Any:
    """The parsed file, re-read only when it was replaced or changed; ``default`` when absent.
    Callers must not mutate the result (it is shared)."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return default
    stamp = (stat.st_mtime_ns, stat.st_size, stat.st_ino)  # writers replace the file atomically
    with _lock:
        cached = _cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    value = json.loads(path.read_text())
    with _lock:
        _cache[path] = (stamp, value)
    return value

"""Small files written so that a power cut or a full disk never leaves half of one: the bytes go
to a temporary file beside it, are synced, and replace the file in one rename (then the folder
is synced, so the new name survives a power cut too). A reader sees the old file or the new.

A disk that cannot take the file (full, out of quota, an I/O error) is ``STORE_UNWRITABLE``, the
error every store gives for it, and nothing of the new file is left behind.
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from appliance.errors import ApplianceError, ErrorCode

TMP_SUFFIX = ".tmp"
# what a disk that cannot take more says: the same refusal as a store's "database or disk is full"
UNWRITABLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


def write_durably(path: str | Path, data: bytes, mode: int = 0o600) -> None:
    """``path`` holds ``data`` - completely, or (on any failure) as it was before."""
    target = Path(path)
    tmp = target.with_name(target.name + TMP_SUFFIX)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            view = memoryview(data)
            while view:  # a short write is not a failure: the rest follows
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in UNWRITABLE:
            raise ApplianceError(ErrorCode.STORE_UNWRITABLE, f"{target.name}: {exc.strerror}") from exc
        raise

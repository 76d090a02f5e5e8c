"""Small files written so that a power cut or a full disk never leaves half of one: the bytes go
to a temporary file beside it, are synced, and replace the file in one rename (then the folder
is synced, so the new name survives a power cut too). A reader sees the old file or the new.

A disk that cannot take the file (full, out of quota, an I/O error) is ``STORE_UNWRITABLE``, the
error every store gives for it, and nothing of the new file is left behind.
"""
from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from appliance.errors import ApplianceError, ErrorCode

TMP_SUFFIX = ".tmp"
OWNER_ONLY = 0o600  # the default: keys, markers, anything only its owner reads
SHARED = 0o644  # read by another account (a service's user), never a secret: certificates, models, state
# what a disk that cannot take more says: the same refusal as a store's "database or disk is full"
UNWRITABLE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


def write_durably(path: str | Path, data: bytes, mode: int = OWNER_ONLY) -> None:
    """``path`` holds ``data`` - completely, or (on any failure) as it was before."""
    target = Path(path)
    tmp = target.with_name(target.name + TMP_SUFFIX)
    with disk_errors(target.name):
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            try:
                os.fchmod(fd, mode)  # whatever the umask, or a stale temporary file's own mode
                view = memoryview(data)
                while view:  # a short write is not a failure: the rest follows
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, target)
            sync_folder(target.parent)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise


def replace_durably(finished: str | Path, target: str | Path) -> None:
    """Rename the written and closed file ``finished`` over ``target`` (same folder), so that a
    power cut leaves the old file or the new one whole: its bytes are synced before the rename,
    the folder after it."""
    descriptor = os.open(finished, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    os.replace(finished, target)
    sync_folder(Path(target).parent)


def sync_folder(folder: str | Path) -> None:
    """Make the names in ``folder`` (a file renamed or created there) survive a power cut."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def unwritable(exc: OSError, what: str) -> ApplianceError | None:
    """``STORE_UNWRITABLE`` when ``exc`` says the disk cannot take the write, else None."""
    if exc.errno in UNWRITABLE:
        return ApplianceError(ErrorCode.STORE_UNWRITABLE, f"{what}: {exc.strerror}")
    return None


@contextmanager
def disk_errors(what: str) -> Iterator[None]:
    """A disk that cannot take what the block writes is ``STORE_UNWRITABLE`` (about ``what``)."""
    try:
        yield
    except OSError as exc:
        error = unwritable(exc, what)
        if error is None:
            raise
        raise error from exc

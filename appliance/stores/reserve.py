"""Room kept on a store's disk for its last write: a file of zeros, allocated while there is
room and deleted when a full disk would otherwise lose what only memory holds.

The audit log keeps one beside its database: a matcher stopped while its disk is full would
lose the audit entries waiting in memory for room (``audit_writer``); deleting the reserve
makes room for them. The reserve is made again at the next start if the disk has room, and a
host without room for it runs without one (logged).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

SUFFIX = ".reserve"
# the audit log's: a full queue of entries waiting for room (``audit_writer.MAX_QUEUED``, 10,000
# decisions) took 2.8 MiB, 3.6 MiB at its peak with the WAL
AUDIT_RESERVE_BYTES = 16 * 1024 * 1024


def reserve_path(store: Path) -> Path:
    return store.with_name(store.name + SUFFIX)


class DiskReserve:
    def __init__(self, path: Path, size: int):
        self.path, self.size = Path(path), size

    def ensure(self) -> bool:
        """The reserve exists at its full size (made now if missing); False when the disk has
        no room for it (nothing is left behind). Allocated blocks, not a sparse file: a full
        disk must not be able to take them."""
        if self.size <= 0:
            return False
        try:
            if self.path.stat().st_size >= self.size:
                return True
        except FileNotFoundError:
            pass
        staged = self.path.with_name(f"{self.path.name}.{os.getpid()}.part")
        try:
            descriptor = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                os.posix_fallocate(descriptor, 0, self.size)
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
            os.replace(staged, self.path)  # another process making it at once: one of the two stays
        except OSError as exc:
            staged.unlink(missing_ok=True)
            log.warning("%s: no room kept for a last write (%d MiB): %s", self.path.name, self.size >> 20, exc)
            return False
        return True

    def release(self) -> bool:
        """Delete the reserve, making its room free; whether there was one to delete."""
        try:
            self.path.unlink()
        except FileNotFoundError:
            return False
        log.warning("%s: reserve deleted to make room (%d MiB) on a full disk; it is made again at the next start "
                    "once there is room", self.path.name, self.size >> 20)
        return True

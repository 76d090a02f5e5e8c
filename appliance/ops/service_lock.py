"""One process per service identity on a host (``appliance matcher --name``, ``appliance edge``).

A second process under a name that already runs would connect with the same MQTT client id,
and the broker would hand the connection back and forth between the two (each connect takes
over the other's session) while both write one status record; two edge daemons of one door
would also share its camera and cache. So the first holds an exclusive ``flock`` on a file
beside its status record (the kernel releases it when the process ends, however it ends) and a
second refuses to start, naming the process that holds the name. Further replicas on one host
run under names of their own (``appliance-matcher@NAME``, docs/deployment.md).
"""
from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from types import TracebackType

from appliance.errors import ApplianceError, ErrorCode

log = logging.getLogger(__name__)

LOCK_SUFFIX = ".lock"
LOCK_FILE_MODE = 0o600
PID_BYTES = 32  # what a holder's pid line can take


class ServiceLock:
    """The held name; closing its file releases it."""

    def __init__(self, path: Path, fd: int | None):
        self.path, self._fd = path, fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ServiceLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.release()


def lock_path(status_file: Path) -> Path:
    """``<service>-<name>.lock`` beside the status record ``<service>-<name>.json``."""
    return status_file.with_suffix(LOCK_SUFFIX)


def hold(status_file: Path, what: str) -> ServiceLock:
    """Hold the identity whose status record is ``status_file``; ``what`` names it for a person
    ("matcher replica matcher-1"). Raises SERVICE_RUNNING while another process holds it. A
    folder that cannot take the lock file (read-only, no inodes left) does not keep a door or a
    replica from starting: it is logged and the service runs unguarded."""
    path = lock_path(Path(status_file))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, LOCK_FILE_MODE)
    except OSError as exc:
        log.warning("%s: lock file %s not made (%s); a second process under this name would not be stopped",
                    what, path, exc)
        return ServiceLock(path, None)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, PID_BYTES, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise ApplianceError(ErrorCode.SERVICE_RUNNING,
                             f"{what} (pid {holder}); start another under a name of its own") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    except OSError:
        pass  # the pid is for the message above only; the lock itself is held
    return ServiceLock(path, fd)

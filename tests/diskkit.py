"""A real, small file system to fill: a tmpfs mounted for one test (root only, as CI runs)."""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

DISK_BYTES = 8 * 1024 * 1024
FILL_CHUNK = 64 * 1024


@contextmanager
def small_disk(folder: Path, size: int = DISK_BYTES) -> Iterator[Path]:
    """``folder`` on its own tmpfs of ``size`` bytes, its files (if any) copied onto it. At the
    end the tmpfs goes (with what was written on it) and ``folder`` is as it was before (close
    the stores on it first). Mounting needs root: CI runs as root, so there a machine that
    cannot mount fails the test (``unavailable``); a developer's non-root run skips it, saying why."""
    if os.geteuid() != 0:
        unavailable("mounting a small tmpfs needs root (CI runs the suite as root)")
    kept = folder.with_name(folder.name + ".before-tmpfs")
    folder.mkdir(parents=True, exist_ok=True)
    folder.rename(kept)
    folder.mkdir(mode=0o700)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        folder.rmdir()
        kept.rename(folder)
        unavailable(f"this machine does not let root mount a tmpfs: {mounted.stderr.strip()}")
    try:
        shutil.copytree(kept, folder, dirs_exist_ok=True)
        yield folder
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=False)
        folder.rmdir()
        kept.rename(folder)


def unavailable(reason: str) -> None:
    """No tmpfs here: a failure in CI (``CI=true``: the full-disk tests must run there), a
    skip with ``reason`` elsewhere."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"the full-disk tests cannot run: {reason}")
    pytest.skip(reason)


def fill(folder: Path) -> Path:
    """A file that takes every free byte of ``folder``'s file system; delete it to make room."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:  # unbuffered: nothing left over for close to write
        try:
            while True:
                out.write(b"\0" * FILL_CHUNK)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return filler

"""The cyclic garbage collector and a long-running service's start-up heap.

Everything a service builds before it serves - imported code, configuration, keys, stores, the
matcher's gallery and directories - lives as long as the process. Left in the collector's oldest
generation, every full collection walks all of it again while every thread of the process waits:
in ``bench load`` the matcher's full collections took up to 50 ms each, nine a minute, each one a
stall of every request in flight (issue 17). ``settle`` moves what is alive at that point out of
the collector's reach (``gc.freeze``); full collections then walk only what came after (up to
7 ms in the same run). Objects freed by their reference count are still freed; only a cycle
among the frozen objects that later becomes garbage would stay, which a start-up heap does not
make. Call it once, after start-up, in the process's entry point - never in library code, which
would freeze a test process's garbage.
"""
from __future__ import annotations

import gc


def settle() -> int:
    """Collect what start-up left behind, then freeze the rest; the objects now frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def thaw() -> None:
    """Give the frozen objects back to the collector (a benchmark that settled a run in a process
    that goes on, such as a test's)."""
    gc.unfreeze()

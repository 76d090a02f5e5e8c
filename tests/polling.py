"""Waiting for something asynchronous (a broker delivery, a service counter) with a bound."""
from __future__ import annotations

import time
from collections.abc import Callable

POLL_S = 0.05


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> bool:
    """True as soon as ``predicate()`` is truthy, False when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(POLL_S)
    return False

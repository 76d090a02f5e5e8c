"""Failure limits: consecutive failures per key (a device, a claimed identity), lock-out and
the back-off a refused person is told (``retry_after``).

After ``limit`` consecutive failures a key is locked for ``backoff_s``; the decision while
locked is ``locked_out`` with the seconds left, and afterwards the person must use the
non-face alternative until a success (or an operator) clears the key. Pure: the caller
gives the time, so tests need no clock.
"""
from __future__ import annotations

from dataclasses import dataclass, field

MAX_CONSECUTIVE_FAILURES = 5
BACKOFF_S = 30.0


@dataclass
class FailureTracker:
    """Consecutive failures per key; after ``limit`` failures the key is locked for
    ``backoff_s`` and then must use the non-face alternative until an operator or a
    successful alternative clears it."""

    limit: int = MAX_CONSECUTIVE_FAILURES
    backoff_s: float = BACKOFF_S
    _failures: dict[str, int] = field(default_factory=dict)
    _locked_until: dict[str, float] = field(default_factory=dict)

    def retry_after(self, key: str, now: float) -> float:
        """Seconds ``key`` stays locked at ``now`` (0 when it is not locked)."""
        return max(0.0, self._locked_until.get(key, 0.0) - now)

    def record(self, key: str, success: bool, now: float) -> None:
        if success:
            self.clear(key)
            return
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        if count >= self.limit:
            self._locked_until[key] = now + self.backoff_s

    def clear(self, key: str) -> None:
        self._failures.pop(key, None)
        self._locked_until.pop(key, None)

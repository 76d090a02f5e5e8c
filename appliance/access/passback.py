"""Anti-passback state: who is inside which area, as the passes seen by one decider say.

An entry door of an area records the person inside; an exit door records them outside. A
second entry while inside is a passback violation (refused in hard mode, recorded in soft
mode). Presence is forgotten ``reset_s`` after the last pass (a timed reset, so a missed exit
does not lock someone out for ever; 0: never). The state is a ``PresenceBook``: a door keeps
its own in its cache, the matcher in the sync store (shared by its replicas); ``MemoryPresence``
is for a policy without a store.
"""
from __future__ import annotations

import threading
from typing import Protocol


class PresenceBook(Protocol):
    def presence(self, area: str, subject_id: str) -> tuple[bool, float] | None:
        """(inside, when) of the subject's last pass in ``area``; None: never seen."""

    def set_presence(self, area: str, subject_id: str, inside: bool, at: float) -> None: ...


class MemoryPresence:
    """A presence book in memory (lost when the process ends)."""

    def __init__(self) -> None:
        self._book: dict[tuple[str, str], tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def presence(self, area: str, subject_id: str) -> tuple[bool, float] | None:
        with self._lock:
            return self._book.get((area, subject_id))

    def set_presence(self, area: str, subject_id: str, inside: bool, at: float) -> None:
        with self._lock:
            self._book[(area, subject_id)] = (inside, at)


class PassbackTracker:
    def __init__(self, book: PresenceBook | None = None):
        self.book = book if book is not None else MemoryPresence()

    def inside(self, area: str, subject_id: str, now: float, reset_s: float) -> bool:
        """The subject entered ``area`` and has not left (nor been reset) since."""
        found = self.book.presence(area, subject_id)
        if found is None or not found[0]:
            return False
        return not (reset_s > 0 and now - found[1] >= reset_s)

    def record(self, area: str, subject_id: str, inside: bool, at: float) -> None:
        self.book.set_presence(area, subject_id, inside, at)

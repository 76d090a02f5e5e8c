"""Anti-passback state: who is inside which area, as the passes seen by one decider say.

An entry door of an area records the person inside; an exit door records them outside. A
second entry while inside is a passback violation (refused in hard mode, recorded in soft
mode). Presence is forgotten ``reset_s`` after the last pass (a timed reset, so a missed exit
does not lock someone out for ever; 0: never). The state is a ``PresenceBook``: a door keeps
its own in its cache, the matcher in the sync store (shared by its replicas); ``MemoryPresence``
is for a policy without a store.

A pass carries its id (the request id). The same pass asked again - a door whose answer was lost
retries, and with two matcher replicas the retry may reach the one that did not decide it - finds
the person inside by its own entry, which is no second entry: a grant the door never received
must not turn into a refusal (issue 17).
"""
from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any, Protocol

# the subject's last pass in an area: (inside, when, the pass's id - "" for none)
Presence = tuple[bool, float, str]


class PresenceBook(Protocol):
    def presence(self, area: str, subject_id: str) -> Presence | None:
        """The subject's last pass in ``area``; None: never seen."""

    def set_presence(self, area: str, subject_id: str, inside: bool, at: float, pass_id: str = "") -> None: ...

    def passing(self) -> AbstractContextManager[Any]:
        """Hold the book for one pass's read and record: no other decider (thread, process)
        reads or records in between, so two entries decided at once cannot both be first."""


class MemoryPresence:
    """A presence book in memory (lost when the process ends)."""

    def __init__(self) -> None:
        self._book: dict[tuple[str, str], Presence] = {}
        self._lock = threading.RLock()

    def presence(self, area: str, subject_id: str) -> Presence | None:
        with self._lock:
            return self._book.get((area, subject_id))

    def set_presence(self, area: str, subject_id: str, inside: bool, at: float, pass_id: str = "") -> None:
        with self._lock:
            self._book[(area, subject_id)] = (inside, at, pass_id)

    def passing(self) -> AbstractContextManager[Any]:
        return self._lock


class PassbackTracker:
    def __init__(self, book: PresenceBook | None = None):
        self.book = book if book is not None else MemoryPresence()

    def inside(self, area: str, subject_id: str, now: float, reset_s: float, pass_id: str = "") -> bool:
        """The subject entered ``area`` by a pass other than ``pass_id`` and has not left (nor
        been reset) since; the entry ``pass_id`` itself recorded is this pass asked again."""
        found = self.book.presence(area, subject_id)
        if found is None:
            return False
        entered, at, by = found
        if not entered or (pass_id and by == pass_id):
            return False
        return not (reset_s > 0 and now - at >= reset_s)

    def record(self, area: str, subject_id: str, inside: bool, at: float, pass_id: str = "") -> None:
        self.book.set_presence(area, subject_id, inside, at, pass_id)

    def merge(self, area: str, subject_id: str, inside: bool, at: float, pass_id: str) -> bool:
        """Take a pass decided elsewhere (a door deciding alone) into the book if it is newer
        than what the book holds for the person in ``area``; whether it was taken."""
        with self.book.passing():
            held = self.book.presence(area, subject_id)
            if held is not None and held[1] >= at:
                return False
            self.record(area, subject_id, inside, at, pass_id)
        return True

    def pass_through(self, area: str, subject_id: str, entering: bool, now: float, reset_s: float, pass_id: str,
                     refuse_second_entry: bool) -> bool:
        """Whether this pass is a second entry (``inside``), and record it unless it is one that
        is refused - read and record as one step of the book (``PresenceBook.passing``)."""
        with self.book.passing():
            second = entering and self.inside(area, subject_id, now, reset_s, pass_id)
            if not (second and refuse_second_entry):
                self.record(area, subject_id, entering, now, pass_id)
        return second

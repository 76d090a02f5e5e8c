"""What the door reports: one small record per state change or alarm, handed to a callback.

The daemon turns each ``DoorEvent`` into an outbox event; the kinds in ``ALARMS`` are alarms
(someone should look at the door), the others are the door's log.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

RELEASED = "released"
REQUEST_TO_EXIT = "request_to_exit"
DOOR_OPENED = "door_opened"
DOOR_CLOSED = "door_closed"
FORCED_OPEN = "forced_open"
HELD_OPEN = "held_open"
HELD_OPEN_CLEARED = "held_open_cleared"
TAMPER = "tamper"
TAMPER_CLEARED = "tamper_cleared"

KINDS = (RELEASED, REQUEST_TO_EXIT, DOOR_OPENED, DOOR_CLOSED, FORCED_OPEN, HELD_OPEN, HELD_OPEN_CLEARED, TAMPER,
         TAMPER_CLEARED)
ALARMS = (FORCED_OPEN, HELD_OPEN, TAMPER)


@dataclass(frozen=True)
class DoorEvent:
    """``kind`` is one of ``KINDS``; ``at`` the wall-clock time (epoch seconds); ``detail`` says why."""

    kind: str
    at: float
    detail: str = ""

    @property
    def is_alarm(self) -> bool:
        return self.kind in ALARMS


EventSink = Callable[[DoorEvent], None]

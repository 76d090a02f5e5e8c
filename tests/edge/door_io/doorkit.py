"""Door I/O test kit: fast timings, the event recorder, the far end of a pseudo-terminal line."""
from __future__ import annotations

import errno
import os
import threading

from appliance.edge.door_io.events import DoorEvent

# fast timings so the alarms show within a test's patience
DEBOUNCE_S = 0.02
OPEN_S = 0.4
HELD_OPEN_S = 0.3


class Events:
    """The controller's ``on_event`` listener: every DoorEvent, in order."""

    def __init__(self) -> None:
        self.seen: list[DoorEvent] = []
        self._lock = threading.Lock()

    def __call__(self, event: DoorEvent) -> None:
        with self._lock:
            self.seen.append(event)

    @property
    def kinds(self) -> list[str]:
        with self._lock:
            return [event.kind for event in self.seen]


class PeerChannel:
    """The far end of the line: the master side of a pseudo-terminal, for libosdp's own peer."""

    def __init__(self, fd: int) -> None:
        self.fd, self.id = fd, 0

    def read(self, max_bytes: int) -> bytes:
        try:
            return os.read(self.fd, max_bytes)
        except BlockingIOError:
            return b""
        except OSError as error:  # EIO while the near end is closed
            if error.errno == errno.EIO:
                return b""
            raise

    def write(self, buf: bytes) -> int:
        return os.write(self.fd, buf)

    def flush(self) -> None:
        return None

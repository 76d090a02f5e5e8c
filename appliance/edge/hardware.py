"""The door's hardware behind small interfaces: actuator, display, credential reader.

Fail-secure: an actuator is locked unless a decision opens it, and it re-locks after the
open time whatever else happens (and when the service stops). On a Pi the relay is driven
through gpiozero (imported only there) on the pin ``[device] relay_pin`` names
(``actuator_from``); without one the log actuator stands in, fed by the same code path. The
display is a protocol (``Display``) fed structured screens (``edge.kiosk.screen.ScreenState``) and
preview frames: the console display here logs them for headless installs, the kiosk screen
(``edge.kiosk.server``) serves them to the page; ``Displays`` feeds several.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from appliance.edge.kiosk.screen import FaceBox, ScreenState
from appliance.errors import ApplianceError, ErrorCode

log = logging.getLogger(__name__)
DEFAULT_OPEN_S = 3.0


class DoorActuator(Protocol):
    def open_for(self, seconds: float) -> None: ...

    @property
    def is_open(self) -> bool: ...

    def lock(self) -> None: ...

    def decided(self, granted: bool, card: str = "") -> None:
        """A decision was made at this door: tell the reader (LED, beep) and, on a grant with a
        presented ``card``, the access panel (Wiegand, OSDP). Nothing to tell without them."""


class _TimedActuator:
    """Shared timing: energise, then de-energise after ``seconds`` on a timer thread."""

    def __init__(self) -> None:
        self._timer: threading.Timer | None = None
        self._open = False
        self.openings = 0

    def _energise(self, on: bool) -> None:  # overridden by real hardware
        return None

    def decided(self, granted: bool, card: str = "") -> None:
        return None  # a bare relay has no reader or panel to tell

    @property
    def is_open(self) -> bool:
        return self._open

    def open_for(self, seconds: float = DEFAULT_OPEN_S) -> None:
        if self._timer:
            self._timer.cancel()
        self._energise(True)
        self._open = True
        self.openings += 1
        self._timer = threading.Timer(seconds, self.lock)
        self._timer.daemon = True
        self._timer.start()

    def lock(self) -> None:
        if self._timer is not None and self._timer is not threading.current_thread():
            self._timer.cancel()
        self._energise(False)
        self._open = False


class LogActuator(_TimedActuator):
    """No relay on this machine: log the door state instead."""

    def _energise(self, on: bool) -> None:
        log.info("door %s", "OPEN" if on else "locked")


class GpioRelayActuator(_TimedActuator):
    """A relay on a Raspberry Pi GPIO pin (active_high per wiring); locked at start."""

    def __init__(self, pin: int, active_high: bool = True) -> None:
        super().__init__()
        try:
            from gpiozero import OutputDevice
        except ImportError:
            raise ApplianceError(ErrorCode.DEPENDENCY_MISSING, "the door relay needs gpiozero: on a Pi apt install "
                                 "python3-gpiozero, else pip install 'face-appliance[gpio]'") from None
        self._relay = OutputDevice(pin, active_high=active_high, initial_value=False)

    def _energise(self, on: bool) -> None:
        if on:
            self._relay.on()
        else:
            self._relay.off()


def actuator_from(device) -> DoorActuator:
    """The door's actuator from ``[device]``: the relay on GPIO ``relay_pin`` (BCM numbering,
    energised to open unless ``relay_active_high`` is false), else the log actuator."""
    if device.relay_pin is None:
        return LogActuator()
    return GpioRelayActuator(device.relay_pin, active_high=device.relay_active_high)


# What the person at the door reads when the door cannot decide: why, and what to do instead.
# A refusal must not look like "not recognised" when nobody could check (docs/offline.md).
UNAVAILABLE_TEXT = "Face recognition unavailable — use your card"
READY_TEXT = "Face recognition ready"


class Display(Protocol):
    def show(self, screen: ScreenState) -> None: ...

    def preview(self, image: np.ndarray, face: FaceBox | None) -> None: ...


class ConsoleDisplay:
    """The display of a headless door: each screen's English text logged (printed with ``echo``)
    and kept in ``lines``/``screens`` for tests; preview frames are dropped."""

    def __init__(self, echo: bool = False) -> None:
        self.echo = echo
        self.lines: list[str] = []
        self.screens: list[ScreenState] = []

    def show(self, screen: ScreenState) -> None:
        self.screens.append(screen)
        self.lines.append(screen.text)
        log.info("screen %s: %s", screen.state.value, screen.text)
        if self.echo:
            print(f"[display] {screen.text}", flush=True)

    def preview(self, image: np.ndarray, face: FaceBox | None) -> None:
        return None


class Displays:
    """Several displays fed the same screens and frames (the log and the kiosk page)."""

    def __init__(self, *displays: Display) -> None:
        self.displays = displays

    def show(self, screen: ScreenState) -> None:
        for display in self.displays:
            display.show(screen)

    def preview(self, image: np.ndarray, face: FaceBox | None) -> None:
        for display in self.displays:
            display.preview(image, face)


@dataclass(frozen=True)
class Credential:
    """A card number, PIN or QR code presented at the door (the 1:1 claim, or the
    non-face alternative)."""

    value: str
    kind: str = "card"
    at: float = 0.0


class CredentialReader:
    """Cards/PINs arrive asynchronously (reader thread, keypad); the daemon polls."""

    def __init__(self) -> None:
        self._queue: queue.Queue[Credential] = queue.Queue()

    def present(self, value: str, kind: str = "card") -> None:
        self._queue.put(Credential(value, kind, time.time()))

    def poll(self) -> Credential | None:
        try:
            return self._queue.get_nowait()
        except queue.Empty:
            return None

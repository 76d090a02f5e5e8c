"""The door's GPIO lines through gpiozero: the lock relay and the contact inputs.

gpiozero is imported only when a pin is configured. The pin factory is injected: ``None``
lets gpiozero pick the board's (lgpio on a Pi 5), tests pass gpiozero's own ``MockFactory``
so the same device classes run. An input reports its raw level and leaves the meaning
(open, pressed, tampered) to the configured active level, so any wiring maps onto it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from appliance.errors import ApplianceError, ErrorCode

log = logging.getLogger(__name__)
GPIOZERO_HINT = "door I/O needs gpiozero: on a Pi apt install python3-gpiozero, else pip install 'face-appliance[gpio]'"


def gpiozero_module() -> Any:
    try:
        import gpiozero
    except ImportError:
        raise ApplianceError(ErrorCode.DEPENDENCY_MISSING, GPIOZERO_HINT) from None
    return gpiozero


class Relay(Protocol):
    def energise(self, on: bool) -> None: ...

    def close(self) -> None: ...


class ContactInput(Protocol):
    """A contact: ``active`` while the configured level is on the pin; ``on_change`` fires on any edge."""

    @property
    def active(self) -> bool: ...

    def on_change(self, callback: Callable[[], None]) -> None: ...

    def close(self) -> None: ...


class LogRelay:
    """No relay fitted: log what the relay would do (the same controller code runs)."""

    def __init__(self) -> None:
        self.energised = False

    def energise(self, on: bool) -> None:
        self.energised = on
        log.info("lock relay %s", "energised" if on else "released")

    def close(self) -> None:
        self.energise(False)


class GpioRelay:
    """A relay board on one pin, de-energised at start."""

    def __init__(self, pin: int, active_high: bool = True, pin_factory: Any = None) -> None:
        gpiozero = gpiozero_module()
        self._device = gpiozero.OutputDevice(pin, active_high=active_high, initial_value=False,
                                             pin_factory=pin_factory)

    @property
    def energised(self) -> bool:
        return bool(self._device.value)

    def energise(self, on: bool) -> None:
        if on:
            self._device.on()
        else:
            self._device.off()

    def close(self) -> None:
        self._device.close()


class GpioContact:
    """One contact input. ``pull`` is 'up', 'down' or 'off' (external resistors);
    ``active_level`` is 'high' or 'low': the pin level that means the contact's state is on."""

    def __init__(self, pin: int, pull: str, active_level: str, pin_factory: Any = None) -> None:
        gpiozero = gpiozero_module()
        pull_up = {"up": True, "down": False, "off": None}[pull]
        # gpiozero takes active_state only without a pull; the level is read raw in any case
        active_state = True if pull_up is None else None
        self._device = gpiozero.DigitalInputDevice(pin, pull_up=pull_up, active_state=active_state,
                                                   pin_factory=pin_factory)
        self._active_level = 1 if active_level == "high" else 0

    @property
    def active(self) -> bool:
        return int(self._device.pin.state) == self._active_level

    def on_change(self, callback: Callable[[], None]) -> None:
        self._device.when_activated = callback
        self._device.when_deactivated = callback

    def close(self) -> None:
        self._device.close()

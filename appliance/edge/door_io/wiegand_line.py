"""A Wiegand output to an access panel that owns the lock: D0/D1 bit-banged through gpiozero.

Both lines idle high; a 0 pulls DATA0 low for ``PULSE_S``, a 1 pulls DATA1 low, one bit every
``INTERVAL_S`` (the usual reader timing: panels accept pulses of 20-100 us and gaps of
0.2-20 ms). On a grant the door sends the site's facility code with the person's card number,
so the panel decides as if its own reader had read the card.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from appliance.edge.door_io import wiegand
from appliance.edge.door_io.gpio import gpiozero_module
from appliance.edge.door_io.wiegand import WiegandFormat

PULSE_S = 50e-6  # one bit's low pulse
INTERVAL_S = 2e-3  # from one bit's pulse to the next one's


def _hold(seconds: float) -> None:
    """Busy-wait for a pulse: ``time.sleep`` wakes up too late for 50 us on a loaded CPU."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class WiegandLine:
    """Sends frames of one format on two pins; frames never interleave."""

    def __init__(self, d0_pin: int, d1_pin: int, fmt: WiegandFormat, facility: int, pin_factory: Any = None) -> None:
        gpiozero = gpiozero_module()
        # active_high=False: "on" pulls the line low; initial_value=False leaves both lines idle (high)
        self._lines = [gpiozero.OutputDevice(pin, active_high=False, initial_value=False, pin_factory=pin_factory)
                       for pin in (d0_pin, d1_pin)]
        self.format, self.facility = fmt, facility
        wiegand.encode(fmt, facility, 0)  # a facility code the format cannot carry fails at start
        self._lock = threading.Lock()

    def send(self, bits: list[int]) -> None:
        with self._lock:
            for index, bit in enumerate(bits):
                line = self._lines[bit]
                line.on()
                # timed from when the line is low, not before: a pre-emption inside on() must not
                # shorten the gap to the next bit below what the panel expects
                started = time.perf_counter()
                _hold(PULSE_S)
                line.off()
                if index < len(bits) - 1:
                    time.sleep(max(0.0, INTERVAL_S - (time.perf_counter() - started)))

    def announce(self, card_no: int) -> None:
        """The granted person's card number with the site's facility code."""
        self.send(wiegand.encode(self.format, self.facility, card_no))

    def close(self) -> None:
        for line in self._lines:
            line.close()

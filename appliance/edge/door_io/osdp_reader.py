"""An OSDP reader at the door: this device is its control panel (libosdp ``ControlPanel``).

Card reads and PIN entries on the reader become ``Credential``s in the daemon's
``CredentialReader`` (the card of a card + face pass, or the non-face alternative); the
decision comes back as the reader's LED and beeper. The secure channel is enforced: a reader
without the site's key is never listened to.

Keypad data is ASCII per OSDP: digits, ``*`` sent as DEL (0x7F, clears the entry) and ``#``
sent as CR (0x0D, ends it); a pause longer than ``PIN_KEY_TIMEOUT_S`` drops a half-typed PIN.
"""
from __future__ import annotations

import logging
import time

from appliance.edge.door_io import wiegand
from appliance.edge.door_io.serial_line import Pump, osdp_module
from appliance.edge.hardware import CredentialReader
from appliance.errors import ApplianceError

log = logging.getLogger(__name__)

PIN_KEY_TIMEOUT_S = 10.0
PIN_MAX_DIGITS = 12
PIN_CLEAR_KEYS = (0x7F, ord("*"))
PIN_ENTER_KEYS = (0x0D, ord("#"))
READER_NO = 0
SECURE_POLL_S = 0.01
LED_NO = 0
FEEDBACK_TENTHS = 20  # LED colour held for 2 s (OSDP counts in 100 ms)
BEEP_TENTHS = 2
GRANT_BEEPS, REFUSE_BEEPS = 1, 3
LED_TEMPORARY, BUZZER_DEFAULT_TONE = 1, 2  # OSDP control codes: temporary LED state; the buzzer's tone


def card_value(event: dict, facility: int | None = None) -> str | None:
    """A card read as the credential's value: the card number of a known Wiegand format (``None`` when
    its facility code is not this site's), the raw frame as an integer otherwise, ASCII as sent."""
    osdp = osdp_module()
    if event["format"] == osdp.CardFormat.ASCII:
        return bytes(event["data"]).decode("ascii", "replace").strip()
    bits = wiegand.from_bytes(event["data"], event.get("length", len(event["data"]) * 8))
    if len(bits) not in wiegand.FORMATS:
        return str(wiegand.to_int(bits))
    _, card_facility, card = wiegand.decode(bits)
    if facility is not None and card_facility != facility:
        log.warning("card of facility %d ignored (this site: %d)", card_facility, facility)
        return None
    return str(card)


class OsdpReader:
    """Control panel of one secure OSDP reader on ``channel`` (a ``SerialChannel``)."""

    def __init__(self, channel, address: int, scbk: bytes, credentials: CredentialReader,
                 facility: int | None = None) -> None:
        osdp = osdp_module()
        self._osdp, self._channel, self.address = osdp, channel, address
        self.credentials, self.facility = credentials, facility
        self._keys: list[str] = []
        self._last_key = 0.0
        info = osdp.PDInfo(address, channel, scbk=scbk, flags=[osdp.LibFlag.EnforceSecure])
        self._cp = osdp.ControlPanel([info], log_level=osdp.LogLevel.Warning)
        self._cp.start()
        self._pump = Pump("osdp-reader", lambda wait: self._cp.get_event(address, timeout=wait), self._on_event)

    @property
    def secure(self) -> bool:
        return self._cp.is_sc_active(self.address)

    def wait_secure(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.secure:
                return True
            time.sleep(SECURE_POLL_S)
        return self.secure

    def _on_event(self, event: dict) -> None:
        kind = event["event"]
        if kind == self._osdp.Event.CardRead:
            try:
                value = card_value(event, self.facility)
            except ApplianceError as error:
                log.warning("card read refused: %s", error)
                return
            if value:
                self.credentials.present(value, "card")
        elif kind == self._osdp.Event.KeyPress:
            self._on_keys(bytes(event["data"]))

    def _on_keys(self, data: bytes) -> None:
        now = time.monotonic()
        if now - self._last_key > PIN_KEY_TIMEOUT_S:
            self._keys.clear()
        self._last_key = now
        for key in data:
            if key in PIN_CLEAR_KEYS:
                self._keys.clear()
            elif key in PIN_ENTER_KEYS:
                if self._keys:
                    self.credentials.present("".join(self._keys), "pin")
                self._keys.clear()
            elif chr(key).isdigit() and len(self._keys) < PIN_MAX_DIGITS:
                self._keys.append(chr(key))
            else:  # a letter key, or a PIN too long: start again
                self._keys.clear()

    def feedback(self, granted: bool) -> None:
        """Green and one beep, or red and three beeps, on the reader."""
        osdp = self._osdp
        colour = osdp.CommandLEDColor.Green if granted else osdp.CommandLEDColor.Red
        led = {"command": osdp.Command.LED, "reader": READER_NO, "led_number": LED_NO, "control_code": LED_TEMPORARY,
               "on_count": FEEDBACK_TENTHS, "off_count": 0, "on_color": colour, "off_color": osdp.CommandLEDColor.Black,
               "timer_count": FEEDBACK_TENTHS, "temporary": True}
        beeps = GRANT_BEEPS if granted else REFUSE_BEEPS
        buzzer = {"command": osdp.Command.Buzzer, "reader": READER_NO, "control_code": BUZZER_DEFAULT_TONE,
                  "on_count": BEEP_TENTHS, "off_count": BEEP_TENTHS, "rep_count": beeps}
        for command in (led, buzzer):
            if not self._cp.submit_command(self.address, command):
                log.warning("reader %d: %s command not queued", self.address, command["command"])

    def close(self) -> None:
        self._pump.stop()
        self._cp.teardown()
        self._channel.close()

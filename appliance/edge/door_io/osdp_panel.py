"""This door as an OSDP reader on an access panel's bus (libosdp ``PeripheralDevice``).

When the door grants, it reports a card read carrying the person's card number (a Wiegand
frame with the site's facility code, as a card reader would), so a panel that owns the lock
applies its own rules. A grant is only reported over an established secure channel: a report
queued for a panel that is not listening could open its door long after the person left.
"""
from __future__ import annotations

import logging
import time

from appliance.edge.door_io import wiegand
from appliance.edge.door_io.serial_line import Pump, osdp_module
from appliance.edge.door_io.wiegand import WiegandFormat
from appliance.errors import ApplianceError, ErrorCode

log = logging.getLogger(__name__)
READER_NO = 0
SECURE_POLL_S = 0.01
COMPLIANCE_LEVEL = 1  # OSDP capability compliance level declared for each function


class OsdpPanelLink:
    """A secure OSDP peripheral at ``address`` on ``channel`` (a ``SerialChannel``)."""

    def __init__(self, channel, address: int, scbk: bytes, fmt: WiegandFormat, facility: int) -> None:
        osdp = osdp_module()
        wiegand.encode(fmt, facility, 0)  # a facility code the format cannot carry fails at start
        self._osdp, self._channel, self.address = osdp, channel, address
        self.format, self.facility = fmt, facility
        capabilities = osdp.PDCapabilities([
            (osdp.Capability.CardDataFormat, COMPLIANCE_LEVEL, 1),
            (osdp.Capability.LEDControl, COMPLIANCE_LEVEL, 1),
            (osdp.Capability.AudibleControl, COMPLIANCE_LEVEL, 1),
        ])
        info = osdp.PDInfo(address, channel, scbk=scbk, flags=[osdp.LibFlag.EnforceSecure])
        self._pd = osdp.PeripheralDevice(info, capabilities, log_level=osdp.LogLevel.Warning)
        self._pd.start()
        self.commands: list[dict] = []  # the panel's last LED/buzzer commands, for the log and the tests
        self._pump = Pump("osdp-panel", lambda wait: self._pd.get_command(timeout=wait), self._on_command)

    @property
    def secure(self) -> bool:
        return bool(self._pd.is_sc_active())

    def wait_secure(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.secure:
            time.sleep(SECURE_POLL_S)
        return self.secure

    def announce(self, card_no: int) -> None:
        """Report a card read of ``card_no`` with the site's facility code."""
        bits = wiegand.encode(self.format, self.facility, card_no)
        if not self.secure:
            raise ApplianceError(ErrorCode.DOOR_IO_FAILED, "OSDP panel link has no secure channel: grant not reported")
        event = {"event": self._osdp.Event.CardRead, "reader_no": READER_NO, "direction": 0,
                 "length": len(bits), "format": self._osdp.CardFormat.Wiegand, "data": wiegand.to_bytes(bits)}
        if not self._pd.submit_event(event):
            raise ApplianceError(ErrorCode.DOOR_IO_FAILED, "OSDP panel link: event queue full, grant not reported")

    def _on_command(self, command: dict) -> None:
        log.info("panel command %s", command)
        self.commands = [*self.commands[-9:], command]

    def close(self) -> None:
        self._pump.stop()
        self._pd.teardown()
        self._channel.close()

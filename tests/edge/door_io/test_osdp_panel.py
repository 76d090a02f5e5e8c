"""The door as an OSDP reader on a panel's bus, over a pseudo-terminal: libosdp's own
ControlPanel plays the access panel and receives the granted person's card as a card read."""
from __future__ import annotations

import pytest

from appliance.edge.door_io import wiegand
from appliance.edge.door_io.osdp_panel import OsdpPanelLink
from appliance.edge.door_io.serial_line import SerialChannel
from appliance.edge.door_io.wiegand import H10301, H10306
from appliance.errors import ApplianceError, ErrorCode
from polling import wait_for

ADDRESS = 7
FACILITY = 18
SECURE_WITHIN_S = 5.0


def _panel(osdp, peer, key):
    panel = osdp.ControlPanel([osdp.PDInfo(ADDRESS, peer, scbk=key, flags=[osdp.LibFlag.EnforceSecure])],
                              log_level=osdp.LogLevel.Error)
    panel.start()
    return panel


@pytest.mark.parametrize("fmt", [H10301, H10306])
def test_a_grant_reaches_the_panel_as_a_card_read(osdp, line, scbk, fmt):
    peer, path = line
    key, _ = scbk
    link = OsdpPanelLink(SerialChannel(path, 9600), ADDRESS, key, fmt, FACILITY)
    panel = _panel(osdp, peer, key)
    try:
        assert link.wait_secure(SECURE_WITHIN_S) and wait_for(lambda: panel.is_sc_active(ADDRESS), SECURE_WITHIN_S)
        link.announce(4242)
        event = panel.get_event(ADDRESS, timeout=3)
        assert event["event"] == osdp.Event.CardRead and event["format"] == osdp.CardFormat.Wiegand
        bits = wiegand.from_bytes(event["data"], event["length"])
        assert wiegand.decode(bits) == (fmt, FACILITY, 4242)
    finally:
        panel.teardown()
        link.close()


def test_no_grant_is_reported_without_a_secure_channel(osdp, line, scbk):
    _, path = line
    key, _ = scbk
    link = OsdpPanelLink(SerialChannel(path, 9600), ADDRESS, key, H10301, FACILITY)  # no panel on the line
    try:
        with pytest.raises(ApplianceError) as refused:
            link.announce(4242)
        assert refused.value.code is ErrorCode.DOOR_IO_FAILED and "secure channel" in refused.value.detail
        with pytest.raises(ApplianceError) as too_big:
            link.announce(1 << 16)
        assert too_big.value.code is ErrorCode.CARD_NUMBER_INVALID
    finally:
        link.close()

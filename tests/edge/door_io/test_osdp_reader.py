"""An OSDP reader over a pseudo-terminal: libosdp's own PeripheralDevice plays the reader, the
door is its secure control panel; card reads and PIN entries arrive as Credentials and the
decision goes back as LED and buzzer commands."""
from __future__ import annotations

import time

import pytest

from appliance.edge.door_io import wiegand
from appliance.edge.door_io.osdp_reader import OsdpReader
from appliance.edge.door_io.serial_line import SerialChannel
from appliance.edge.door_io.wiegand import H10301
from appliance.edge.hardware import CredentialReader
from polling import wait_for

ADDRESS = 101
FACILITY = 18
SECURE_WITHIN_S = 5.0


@pytest.fixture
def reader_pair(osdp, line, scbk):
    """(the door's OsdpReader, libosdp's PeripheralDevice as the reader), in a secure session."""
    peer, path = line
    key, _ = scbk
    capabilities = osdp.PDCapabilities([(osdp.Capability.LEDControl, 1, 1), (osdp.Capability.AudibleControl, 1, 1)])
    device = osdp.PeripheralDevice(osdp.PDInfo(ADDRESS, peer, scbk=key, flags=[osdp.LibFlag.EnforceSecure]),
                                   capabilities, log_level=osdp.LogLevel.Error)
    device.start()
    reader = OsdpReader(SerialChannel(path, 9600), ADDRESS, key, CredentialReader(), facility=FACILITY)
    assert reader.wait_secure(SECURE_WITHIN_S), "no secure channel with the reader"
    yield reader, device
    reader.close()
    device.teardown()


def _card(osdp, facility: int, card: int) -> dict:
    bits = wiegand.encode(H10301, facility, card)
    return {"event": osdp.Event.CardRead, "reader_no": 0, "direction": 0, "length": len(bits),
            "format": osdp.CardFormat.Wiegand, "data": wiegand.to_bytes(bits)}


def _next_credential(reader: OsdpReader):
    found = []
    wait_for(lambda: found.append(reader.credentials.poll()) or found[-1] is not None, timeout=3)
    return found[-1]


def test_a_card_read_arrives_as_a_card_credential(osdp, reader_pair):
    reader, device = reader_pair
    assert device.submit_event(_card(osdp, FACILITY, 4242))
    credential = _next_credential(reader)
    assert (credential.value, credential.kind) == ("4242", "card") and credential.at > 0


def test_a_card_of_another_site_is_ignored(osdp, reader_pair):
    reader, device = reader_pair
    assert device.submit_event(_card(osdp, FACILITY + 1, 4242))
    assert device.submit_event(_card(osdp, FACILITY, 7))
    assert _next_credential(reader).value == "7"
    assert reader.credentials.poll() is None


def test_a_pin_typed_on_the_keypad_arrives_as_a_pin_credential(osdp, reader_pair):
    reader, device = reader_pair
    keys = [b"98", b"\x7f", b"12", b"34", b"\r"]  # "98", clear (*), then 1234 and enter (#)
    for chunk in keys:
        assert device.submit_event({"event": osdp.Event.KeyPress, "reader_no": 0, "data": chunk})
    credential = _next_credential(reader)
    assert (credential.value, credential.kind) == ("1234", "pin")


def test_the_decision_shows_on_the_reader(osdp, reader_pair):
    reader, device = reader_pair
    reader.feedback(True)
    led, buzzer = device.get_command(timeout=3), device.get_command(timeout=3)
    assert led["command"] == osdp.Command.LED and led["on_color"] == osdp.CommandLEDColor.Green
    assert buzzer["command"] == osdp.Command.Buzzer and buzzer["rep_count"] == 1
    reader.feedback(False)
    led, buzzer = device.get_command(timeout=3), device.get_command(timeout=3)
    assert led["on_color"] == osdp.CommandLEDColor.Red and buzzer["rep_count"] == 3


def test_a_reader_without_the_sites_key_is_not_listened_to(osdp, line, scbk):
    peer, path = line
    key, _ = scbk
    stranger = osdp.PeripheralDevice(
        osdp.PDInfo(ADDRESS, peer, scbk=bytes(16), flags=[osdp.LibFlag.EnforceSecure]),
        osdp.PDCapabilities([(osdp.Capability.LEDControl, 1, 1)]), log_level=osdp.LogLevel.Emergency)
    stranger.start()
    reader = OsdpReader(SerialChannel(path, 9600), ADDRESS, key, CredentialReader(), facility=FACILITY)
    try:
        assert not reader.wait_secure(1.0)
        stranger.submit_event(_card(osdp, FACILITY, 4242))
        time.sleep(0.5)
        assert reader.credentials.poll() is None
    finally:
        reader.close()
        stranger.teardown()

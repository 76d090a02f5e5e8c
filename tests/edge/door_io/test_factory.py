"""``controller_from(config)``: the drivers ``[door_io]`` names, end to end on gpiozero's
MockFactory pins and a pseudo-terminal OSDP line; nothing configured behaves as before."""
from __future__ import annotations

import logging

import pytest

from appliance.config import with_overrides
from appliance.config.tables import Config
from appliance.edge.door_io import controller_from, wiegand
from appliance.edge.hardware import CredentialReader
from appliance.errors import ApplianceError, ErrorCode
from polling import wait_for

WIRED = {"relay_pin": 17, "door_sensor_pin": 27, "exit_button_pin": 22, "tamper_pin": 23, "wiegand_d0_pin": 5,
         "wiegand_d1_pin": 6, "facility_code": 18, "open_s": 30.0, "debounce_ms": 10}


def test_without_pins_the_door_logs_as_before(events, caplog):
    caplog.set_level(logging.INFO, logger="appliance.edge.door_io.gpio")
    door = controller_from(Config(), on_event=events)
    door.open_for(0.05)
    assert "lock relay energised" in caplog.messages
    assert door.is_open and events.kinds == ["released"]
    assert wait_for(lambda: not door.is_open, timeout=2)
    door.stop()


def test_the_device_relay_pin_still_drives_the_relay(pins):
    config = with_overrides(Config(), device={"relay_pin": 4, "relay_active_high": False})
    door = controller_from(config, pin_factory=pins)
    assert pins.pin(4).state  # active low: released is high
    door.open_for(5.0)
    assert not pins.pin(4).state
    door.stop()


def test_a_wired_door_end_to_end(pins, events):
    door = controller_from(with_overrides(Config(), door_io=WIRED), on_event=events, pin_factory=pins)
    pins.pin(27).drive_low()  # door closed
    pins.pin(23).drive_low()  # case closed
    pins.pin(22).drive_low()  # exit button
    assert wait_for(lambda: "released" in events.kinds, timeout=2) and pins.pin(17).state
    pins.pin(5).clear_states()
    pins.pin(6).clear_states()
    door.announce_grant(4242)
    ones = len(pins.pin(6).states) // 2
    zeros = len(pins.pin(5).states) // 2
    frame = wiegand.encode(wiegand.H10301, 18, 4242)
    assert (zeros, ones) == (frame.count(0), frame.count(1))
    door.stop()


def test_a_part_that_fails_at_start_releases_the_pins_it_took(pins, tmp_path):
    config = with_overrides(Config(), door_io={**WIRED, "osdp_role": "reader", "osdp_port": "/dev/null",
                                               "osdp_scbk_file": str(tmp_path / "absent")})
    with pytest.raises(ApplianceError) as failed:
        controller_from(config, pin_factory=pins)
    assert failed.value.code is ErrorCode.KEY_MISSING
    controller_from(with_overrides(Config(), door_io=WIRED), pin_factory=pins).stop()  # the pins are free again


def test_an_osdp_reader_feeds_the_credentials_and_shows_the_decision(osdp, pins, line, scbk):
    peer, path = line
    key, key_file = scbk
    device = osdp.PeripheralDevice(
        osdp.PDInfo(3, peer, scbk=key, flags=[osdp.LibFlag.EnforceSecure]),
        osdp.PDCapabilities([(osdp.Capability.LEDControl, 1, 1), (osdp.Capability.AudibleControl, 1, 1)]),
        log_level=osdp.LogLevel.Error)
    device.start()
    credentials = CredentialReader()
    config = with_overrides(Config(), door_io={"osdp_role": "reader", "osdp_port": path, "osdp_address": 3,
                                               "osdp_scbk_file": str(key_file), "facility_code": 18})
    door = controller_from(config, credentials=credentials, pin_factory=pins)
    try:
        assert wait_for(device.is_sc_active, timeout=5)
        bits = wiegand.encode(wiegand.H10301, 18, 99)
        assert wait_for(lambda: device.submit_event({
            "event": osdp.Event.CardRead, "reader_no": 0, "direction": 0, "length": len(bits),
            "format": osdp.CardFormat.Wiegand, "data": wiegand.to_bytes(bits)}), timeout=2)
        found = []
        assert wait_for(lambda: found.append(credentials.poll()) or found[-1] is not None, timeout=3)
        assert (found[-1].value, found[-1].kind) == ("99", "card")
        door.feedback(True)
        assert device.get_command(timeout=3)["on_color"] == osdp.CommandLEDColor.Green
    finally:
        door.stop()
        device.teardown()


def test_an_osdp_panel_link_reports_the_grant(osdp, line, scbk):
    peer, path = line
    key, key_file = scbk
    config = with_overrides(Config(), door_io={"osdp_role": "panel", "osdp_port": path, "osdp_address": 9,
                                               "osdp_scbk_file": str(key_file), "wiegand_format": 34,
                                               "facility_code": 1000})
    door = controller_from(config)
    panel = osdp.ControlPanel([osdp.PDInfo(9, peer, scbk=key, flags=[osdp.LibFlag.EnforceSecure])],
                              log_level=osdp.LogLevel.Error)
    panel.start()
    try:
        assert wait_for(lambda: panel.is_sc_active(9), timeout=5)
        door.announce_grant(65000)
        event = panel.get_event(9, timeout=3)
        assert wiegand.decode(wiegand.from_bytes(event["data"], event["length"])) == (wiegand.H10306, 1000, 65000)
    finally:
        panel.teardown()
        door.stop()

"""The GPIO drivers on gpiozero's MockFactory: a contact reads its configured active level under
each pull, the relay follows its active level, and a missing gpiozero names the extra."""
from __future__ import annotations

import sys

import pytest

from appliance.edge.door_io.gpio import GpioContact, GpioRelay, LogRelay
from appliance.errors import ApplianceError, ErrorCode


@pytest.mark.parametrize("pull, idle_active", [("up", False), ("down", True)])
def test_a_contact_active_low_follows_the_pin(pins, pull, idle_active):
    contact = GpioContact(12, pull, "low", pins)
    assert contact.active is idle_active  # the pull alone: high with 'up', low with 'down'
    changes = []
    contact.on_change(lambda: changes.append(contact.active))
    pins.pin(12).drive_high()
    pins.pin(12).drive_low()
    assert contact.active and changes[-1] is True
    contact.close()


def test_a_contact_without_pull_reads_the_level_given_by_external_resistors(pins):
    contact = GpioContact(13, "off", "high", pins)
    pins.pin(13).drive_high()
    assert contact.active
    pins.pin(13).drive_low()
    assert not contact.active
    contact.close()


def test_an_active_low_relay_board(pins):
    relay = GpioRelay(18, active_high=False, pin_factory=pins)
    assert pins.pin(18).state and not relay.energised
    relay.energise(True)
    assert not pins.pin(18).state and relay.energised
    relay.close()


def test_the_log_relay_stands_in():
    relay = LogRelay()
    relay.energise(True)
    assert relay.energised
    relay.close()
    assert not relay.energised


def test_without_gpiozero_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiozero", None)
    with pytest.raises(ApplianceError) as missing:
        GpioRelay(18)
    assert missing.value.code is ErrorCode.DEPENDENCY_MISSING and "face-appliance[gpio]" in missing.value.detail

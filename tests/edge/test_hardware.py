"""The door relay from ``[device] relay_pin``: fail-secure timing on a stand-in gpiozero."""
from __future__ import annotations

import sys
import time
import types

import pytest

from appliance.config import DeviceConfig
from appliance.edge.hardware import GpioRelayActuator, LogActuator, actuator_from
from appliance.errors import ApplianceError, ErrorCode
from polling import wait_for


class OutputDevice:
    """gpiozero.OutputDevice as the actuator uses it: created off, switched on and off."""

    made: list[OutputDevice] = []

    def __init__(self, pin, active_high=True, initial_value=False):
        self.pin, self.active_high, self.value = pin, active_high, initial_value
        self.switched: list[bool] = []
        OutputDevice.made.append(self)

    def on(self) -> None:
        self.value = True
        self.switched.append(True)

    def off(self) -> None:
        self.value = False
        self.switched.append(False)


@pytest.fixture
def gpiozero(monkeypatch):
    OutputDevice.made.clear()
    monkeypatch.setitem(sys.modules, "gpiozero", types.SimpleNamespace(OutputDevice=OutputDevice))
    return OutputDevice.made


def test_no_relay_pin_is_the_log_actuator():
    assert isinstance(actuator_from(DeviceConfig(name="door-1")), LogActuator)
    assert isinstance(actuator_from(DeviceConfig(relay_pin=None)), LogActuator)


def test_relay_pin_drives_the_relay_and_it_relocks(gpiozero):
    actuator = actuator_from(DeviceConfig(relay_pin=17))
    assert isinstance(actuator, GpioRelayActuator)
    (relay,) = gpiozero
    assert (relay.pin, relay.active_high, relay.value) == (17, True, False)  # locked at start
    actuator.open_for(0.2)
    assert relay.value is True and actuator.is_open
    assert wait_for(lambda: relay.value is False, 2.0) and not actuator.is_open  # re-locked by itself
    actuator.open_for(30.0)
    actuator.lock()  # the service stops: locked now, and the pending timer is cancelled
    time.sleep(0.1)
    assert relay.switched == [True, False, True, False] and not actuator.is_open


def test_active_low_wiring(gpiozero):
    actuator_from(DeviceConfig(relay_pin=4, relay_active_high=False))
    assert gpiozero[0].active_high is False


def test_relay_without_gpiozero_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiozero", None)  # import fails as on a machine without it
    with pytest.raises(ApplianceError) as failure:
        actuator_from(DeviceConfig(relay_pin=17))
    assert failure.value.code is ErrorCode.DEPENDENCY_MISSING and "gpiozero" in str(failure.value)

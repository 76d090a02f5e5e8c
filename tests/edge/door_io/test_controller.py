"""The door controller on gpiozero's MockFactory pins: fail-secure relay, exit button,
forced-open, held-open, tamper and debounce, each raising the right DoorEvent."""
from __future__ import annotations

import time

import pytest
from doorkit import DEBOUNCE_S, HELD_OPEN_S, OPEN_S

from appliance.edge.door_io import DoorController, DoorTiming
from appliance.edge.door_io.controller import Contacts
from appliance.edge.door_io.gpio import GpioContact, GpioRelay
from appliance.errors import ApplianceError, ErrorCode
from polling import wait_for

RELAY, SENSOR, EXIT, TAMPER = 17, 27, 22, 23


def _door(pins, events, *, fail_safe: bool = False, debounce_s: float = DEBOUNCE_S, tamper_open: bool = False,
          open_s: float = OPEN_S):
    """A door wired as docs/door-io.md draws it: contacts to ground with the pull-ups; the door and
    the case closed (their contacts pull low), the exit button released (high)."""
    relay = GpioRelay(RELAY, pin_factory=pins)
    contacts = Contacts(door_sensor=GpioContact(SENSOR, "up", "high", pins),
                        exit_button=GpioContact(EXIT, "up", "low", pins),
                        tamper=GpioContact(TAMPER, "up", "high", pins))
    pins.pin(SENSOR).drive_low()
    if not tamper_open:
        pins.pin(TAMPER).drive_low()
    timing = DoorTiming(open_s=open_s, held_open_s=HELD_OPEN_S, debounce_s=debounce_s, fail_safe_lock=fail_safe)
    return DoorController(relay, timing, contacts, on_event=events), relay


def _relay_high(pins) -> bool:
    return bool(pins.pin(RELAY).state)


def test_the_relay_is_locked_at_start_released_for_the_open_time_and_locked_on_stop(pins, events):
    door, _ = _door(pins, events)
    assert not door.is_open and not _relay_high(pins) and events.kinds == []
    door.open_for()
    assert door.is_open and _relay_high(pins) and events.kinds == ["released"]
    assert wait_for(lambda: not door.is_open, timeout=OPEN_S * 5)
    assert not _relay_high(pins)
    door.open_for(10.0)
    door.stop()
    assert not door.is_open and not _relay_high(pins)


def test_a_fail_safe_lock_is_energised_to_stay_locked(pins, events):
    door, _ = _door(pins, events, fail_safe=True)
    assert _relay_high(pins) and not door.is_open
    door.open_for()
    assert not _relay_high(pins)
    door.lock()
    assert _relay_high(pins) and not door.is_open
    door.stop()
    assert _relay_high(pins)  # a magnet stays energised (locked) while the process lives


def test_a_relay_that_cannot_be_driven_is_an_error_and_the_door_stays_locked(pins, events):
    door, relay = _door(pins, events)
    relay.close()
    with pytest.raises(ApplianceError) as failed:
        door.open_for()
    assert failed.value.code is ErrorCode.DOOR_IO_FAILED and not door.is_open
    assert "released" not in events.kinds


def test_the_exit_button_opens_the_door_without_a_face_and_is_logged(pins, events):
    door, _ = _door(pins, events, open_s=30.0)
    pins.pin(EXIT).drive_low()
    assert wait_for(lambda: "released" in events.kinds, timeout=2)
    assert events.kinds[:2] == ["request_to_exit", "released"]
    assert events.seen[1].detail == "exit button" and door.is_open and _relay_high(pins)
    pins.pin(EXIT).drive_high()
    door.stop()
    assert not door.is_open and not _relay_high(pins)


def test_a_door_opened_while_locked_raises_the_forced_open_alarm(pins, events):
    door, _ = _door(pins, events)
    pins.pin(SENSOR).drive_high()
    assert wait_for(lambda: "forced_open" in events.kinds, timeout=2)
    assert events.kinds == ["door_opened", "forced_open"] and events.seen[1].is_alarm
    assert door.door_is_open is True and not door.is_open
    door.stop()


def test_held_open_after_the_limit_clears_when_the_door_closes_and_the_door_relocks(pins, events):
    door, _ = _door(pins, events)
    door.open_for(10.0)
    pins.pin(SENSOR).drive_high()  # the person walks through
    assert wait_for(lambda: "held_open" in events.kinds, timeout=HELD_OPEN_S * 10)
    assert events.kinds == ["released", "door_opened", "held_open"]  # opened in a release: not forced
    pins.pin(SENSOR).drive_low()
    assert wait_for(lambda: "held_open_cleared" in events.kinds, timeout=2)
    assert events.kinds[3:] == ["door_closed", "held_open_cleared"]
    assert not door.is_open and not _relay_high(pins)  # relocked on close, long before the 10 s
    door.stop()


def test_a_door_closed_in_time_raises_no_alarm(pins, events):
    door, _ = _door(pins, events)
    door.open_for()
    pins.pin(SENSOR).drive_high()
    assert wait_for(lambda: "door_opened" in events.kinds, timeout=2)
    pins.pin(SENSOR).drive_low()
    assert wait_for(lambda: "door_closed" in events.kinds, timeout=2)
    time.sleep(HELD_OPEN_S * 1.5)
    assert events.kinds == ["released", "door_opened", "door_closed"]
    door.stop()


def test_tamper_is_raised_and_cleared_and_reported_at_start(pins, events):
    door, _ = _door(pins, events)
    pins.pin(TAMPER).drive_high()
    assert wait_for(lambda: "tamper" in events.kinds, timeout=2)
    pins.pin(TAMPER).drive_low()
    assert wait_for(lambda: "tamper_cleared" in events.kinds, timeout=2)
    assert events.kinds == ["tamper", "tamper_cleared"] and events.seen[0].is_alarm
    door.stop()
    pins.pin(TAMPER).drive_high()
    at_start, _ = _door(pins, events, tamper_open=True)
    assert events.kinds[-1] == "tamper" and events.seen[-1].detail == "the case is open at start"
    at_start.stop()


def test_a_glitch_shorter_than_the_debounce_is_ignored_and_a_level_counts_after_it(pins, events):
    debounce_s = 0.2
    door, _ = _door(pins, events, debounce_s=debounce_s)
    sensor = pins.pin(SENSOR)
    sensor.drive_high()
    sensor.drive_low()  # contact bounce: back at once
    time.sleep(debounce_s * 2)
    assert events.kinds == []
    started = time.monotonic()
    sensor.drive_high()
    assert events.kinds == []  # not before the debounce time
    assert wait_for(lambda: "forced_open" in events.kinds, timeout=2)
    assert time.monotonic() - started >= debounce_s
    door.stop()


def test_a_failing_listener_does_not_stop_the_door(pins):
    def broken(event):
        raise RuntimeError("listener down")

    door, _ = _door(pins, broken)
    door.open_for()
    assert door.is_open
    door.stop()


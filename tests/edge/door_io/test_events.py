"""The door's event kinds are the ones the daemon maps to outbox events; three are alarms."""
from __future__ import annotations

from appliance.edge.door_io import ALARMS, KINDS, DoorEvent


def test_the_kinds_and_the_alarms():
    assert set(KINDS) == {"released", "request_to_exit", "door_opened", "door_closed", "forced_open", "held_open",
                          "held_open_cleared", "tamper", "tamper_cleared"}
    assert set(ALARMS) == {"forced_open", "held_open", "tamper"}
    assert DoorEvent("forced_open", 1.0).is_alarm and not DoorEvent("held_open_cleared", 1.0).is_alarm

"""The door's I/O behind one controller: lock relay, door contact, exit button, tamper switch,
forced/held-open alarms, Wiegand output and OSDP (reader in, panel out); ``docs/door-io.md``.

The daemon builds it with ``controller_from(config, on_event, credentials)`` and uses it as its
``DoorActuator`` (``open_for``, ``lock``, ``is_open``); on a grant it calls ``feedback(True)``
and ``announce_grant(card_no)``, on a refusal ``feedback(False)``; ``stop()`` at shutdown.
"""
from appliance.edge.door_io.controller import Contacts, DoorController, DoorTiming
from appliance.edge.door_io.events import ALARMS, KINDS, DoorEvent
from appliance.edge.door_io.factory import controller_from

__all__ = ["ALARMS", "KINDS", "Contacts", "DoorController", "DoorEvent", "DoorTiming", "controller_from"]

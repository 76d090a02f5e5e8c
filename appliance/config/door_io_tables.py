"""The ``[door_io]`` table: the door's wiring (relay, contacts, Wiegand lines, OSDP link).

Split from ``tables`` (which composes it into ``Config``) to keep each module small. Every
pin is a BCM number; an unset pin means the part is not fitted. ``docs/door-io.md`` draws
the wiring these keys describe.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import Field, model_validator

from appliance.config.fields import Bool, Float, Int, Refused, Str, Table

BCM_PINS = (0, 40)  # a Raspberry Pi header has GPIO 0-27; compute modules and Jetsons more
LEVELS = ("high", "low")
PULLS = ("up", "down", "off")
LOCK_TYPES = ("fail-secure", "fail-safe")
WIEGAND_FORMATS = (26, 34)
WIEGAND_26_MAX_FACILITY = 0xFF  # H10301: 8-bit facility code
WIEGAND_34_MAX_FACILITY = 0xFFFF  # H10306: 16-bit facility code
OSDP_ROLES = ("off", "reader", "panel")
OSDP_BAUDS = (9600, 19200, 38400, 57600, 115200)
OSDP_MAX_ADDRESS = 126  # 0x7F is the broadcast address
PIN_KEYS = ("relay_pin", "door_sensor_pin", "exit_button_pin", "tamper_pin", "wiegand_d0_pin", "wiegand_d1_pin")

Pin = Annotated[Int | None, Field(ge=BCM_PINS[0], le=BCM_PINS[1])]


@dataclass(frozen=True)
class DoorIOConfig(Table):
    """The door's inputs and outputs; see ``appliance.edge.door_io`` and ``docs/door-io.md``."""

    lock_type: Annotated[Literal[LOCK_TYPES], Field(description=(
        "'fail-secure': the lock opens while the relay is energised (strike, motor lock); 'fail-safe': it opens "
        "while the relay is released (magnetic lock, opens on power loss)"))] = "fail-secure"
    relay_pin: Annotated[Pin, Field(description=(
        "BCM pin of the lock relay; unset: [device] relay_pin, and without that no relay (the door logs)"))] = None
    relay_active_high: Annotated[Bool, Field(description=(
        "the relay is energised by a high level; false for active-low relay boards"))] = True
    open_s: Annotated[Float, Field(ge=0.5, le=60.0, description=(
        "the lock stays released this long after a grant or the exit button, seconds"))] = 3.0
    held_open_s: Annotated[Float, Field(ge=1.0, le=600.0, description=(
        "a door left open longer than this after a release raises the held-open alarm, seconds"))] = 30.0
    relock_on_close: Annotated[Bool, Field(description=(
        "lock as soon as the released door has opened and closed again (no second person on one release)"))] = True
    debounce_ms: Annotated[Int, Field(ge=1, le=1000, description=(
        "an input level must hold this long before it counts (contact bounce, noise on long wires), ms"))] = 50
    input_pull: Annotated[Literal[PULLS], Field(description=(
        "internal resistor on the contact inputs: 'up' for contacts to ground (usual), 'down', or 'off' with "
        "external resistors"))] = "up"
    door_sensor_pin: Annotated[Pin, Field(description="BCM pin of the door contact; unset: no door sensor")] = None
    door_open_level: Annotated[Literal[LEVELS], Field(description=(
        "level of the door-contact pin while the door is open ('high' for a normally-closed contact to ground "
        "with the pull-up)"))] = "high"
    exit_button_pin: Annotated[Pin, Field(description=(
        "BCM pin of the request-to-exit button; unset: no exit button"))] = None
    exit_pressed_level: Annotated[Literal[LEVELS], Field(description=(
        "level of the exit-button pin while pressed ('low' for a normally-open button to ground)"))] = "low"
    tamper_pin: Annotated[Pin, Field(description="BCM pin of the case (tamper) switch; unset: none")] = None
    tamper_level: Annotated[Literal[LEVELS], Field(description=(
        "level of the tamper pin while the case is open ('high' for a normally-closed switch to ground)"))] = "high"
    wiegand_d0_pin: Annotated[Pin, Field(description="BCM pin of the Wiegand DATA0 line to a panel; unset: none")] \
        = None
    wiegand_d1_pin: Annotated[Pin, Field(description="BCM pin of the Wiegand DATA1 line to a panel; unset: none")] \
        = None
    wiegand_format: Annotated[Literal[WIEGAND_FORMATS], Field(description=(
        "Wiegand frame sent on a grant: 26 (H10301, 8-bit facility + 16-bit card) or 34 (H10306, 16 + 16)"))] = 26
    facility_code: Annotated[Int, Field(ge=0, le=WIEGAND_34_MAX_FACILITY, description=(
        "the site's facility code sent with every card number (at most 255 for the 26-bit format)"))] = 0
    osdp_role: Annotated[Literal[OSDP_ROLES], Field(description=(
        "'reader': control an OSDP reader (card and PIN in, LED and buzzer out); 'panel': report grants to an "
        "access panel as an OSDP reader does; 'off'"))] = "off"
    osdp_port: Annotated[Str, Field(description="serial device of the RS-485 adapter, e.g. /dev/ttyUSB0")] = ""
    osdp_baud: Annotated[Literal[OSDP_BAUDS], Field(description="OSDP line speed, bits per second")] = 9600
    osdp_address: Annotated[Int, Field(ge=0, le=OSDP_MAX_ADDRESS, description=(
        "OSDP address of the reader (role 'reader') or of this door on the panel's bus (role 'panel')"))] = 0
    osdp_scbk_file: Annotated[Str, Field(description=(
        "file holding the 16-byte secure-channel base key as 32 hex digits (owner-only); the secure channel is "
        "always on"))] = ""

    @model_validator(mode="after")
    def _wiring_is_consistent(self) -> DoorIOConfig:
        taken: dict[int, str] = {}
        for key in PIN_KEYS:
            pin = getattr(self, key)
            if pin is not None and pin in taken:
                raise Refused(f"BCM pin {pin} is already {taken[pin]}", key)
            if pin is not None:
                taken[pin] = key
        if (self.wiegand_d0_pin is None) != (self.wiegand_d1_pin is None):
            raise Refused("Wiegand needs both wiegand_d0_pin and wiegand_d1_pin, or neither", "wiegand_d0_pin")
        if self.wiegand_format == 26 and self.facility_code > WIEGAND_26_MAX_FACILITY:
            raise Refused(f"the 26-bit format carries facility codes up to {WIEGAND_26_MAX_FACILITY}",
                          "facility_code")
        if self.osdp_role != "off" and not (self.osdp_port and self.osdp_scbk_file):
            raise Refused("an OSDP role needs osdp_port and osdp_scbk_file", "osdp_port")
        return self

    @property
    def wiegand_fitted(self) -> bool:
        return self.wiegand_d0_pin is not None

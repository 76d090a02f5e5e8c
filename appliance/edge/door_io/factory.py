"""``controller_from(config)``: the door controller with the drivers ``[door_io]`` names.

No pin configured: the log relay, exactly as a door without hardware behaved before (and
``[device] relay_pin`` still drives a relay when ``[door_io]`` names none). Every fitted part
is opened here, so a wrong pin, a missing library or an unreadable key fails at start with
its error code, never in the middle of a pass.
"""
from __future__ import annotations

from typing import Any

from appliance.edge.door_io.controller import Contacts, DoorController, DoorTiming, GrantAnnouncer, ResultIndicator
from appliance.edge.door_io.events import EventSink
from appliance.edge.door_io.gpio import GpioContact, GpioRelay, LogRelay, Relay
from appliance.edge.hardware import CredentialReader

MS_PER_S = 1000.0


def _relay(config: Any, pin_factory: Any) -> Relay:
    door_io, device = config.door_io, config.device
    if door_io.relay_pin is not None:
        return GpioRelay(door_io.relay_pin, door_io.relay_active_high, pin_factory)
    if device.relay_pin is not None:
        return GpioRelay(device.relay_pin, device.relay_active_high, pin_factory)
    return LogRelay()


def _contacts(door_io: Any, pin_factory: Any) -> Contacts:
    def contact(pin: int | None, level: str) -> GpioContact | None:
        return None if pin is None else GpioContact(pin, door_io.input_pull, level, pin_factory)

    opened: list[GpioContact | None] = []
    try:
        for pin, level in ((door_io.door_sensor_pin, door_io.door_open_level),
                           (door_io.exit_button_pin, door_io.exit_pressed_level),
                           (door_io.tamper_pin, door_io.tamper_level)):
            opened.append(contact(pin, level))
    except BaseException:
        for part in opened:
            if part is not None:
                part.close()
        raise
    return Contacts(*opened)


def _links(door_io: Any, credentials: CredentialReader | None, pin_factory: Any
           ) -> tuple[list[GrantAnnouncer], list[ResultIndicator]]:
    announcers: list[GrantAnnouncer] = []
    indicators: list[ResultIndicator] = []
    try:
        _open_links(door_io, credentials, pin_factory, announcers, indicators)
    except BaseException:  # nothing half-opened stays claimed
        for link in (*announcers, *indicators):
            link.close()
        raise
    return announcers, indicators


def _open_links(door_io: Any, credentials: CredentialReader | None, pin_factory: Any,
                announcers: list[GrantAnnouncer], indicators: list[ResultIndicator]) -> None:
    from appliance.edge.door_io import wiegand

    fmt = wiegand.format_for(door_io.wiegand_format)  # the format's name is its length
    if door_io.wiegand_fitted:
        from appliance.edge.door_io.wiegand_line import WiegandLine

        announcers.append(WiegandLine(door_io.wiegand_d0_pin, door_io.wiegand_d1_pin, fmt, door_io.facility_code,
                                      pin_factory))
    if door_io.osdp_role == "off":
        return
    from appliance.edge.door_io.serial_line import SerialChannel, load_scbk

    scbk = load_scbk(door_io.osdp_scbk_file)
    channel = SerialChannel(door_io.osdp_port, door_io.osdp_baud)
    try:
        if door_io.osdp_role == "reader":
            from appliance.edge.door_io.osdp_reader import OsdpReader

            indicators.append(OsdpReader(channel, door_io.osdp_address, scbk, credentials or CredentialReader(),
                                         door_io.facility_code))
        else:
            from appliance.edge.door_io.osdp_panel import OsdpPanelLink

            announcers.append(OsdpPanelLink(channel, door_io.osdp_address, scbk, fmt, door_io.facility_code))
    except BaseException:
        channel.close()
        raise


def controller_from(config: Any, on_event: EventSink | None = None, credentials: CredentialReader | None = None,
                    pin_factory: Any = None) -> DoorController:
    """The door from ``config`` (a ``Config``): relay, contacts, Wiegand and OSDP links. Card reads and PINs of
    an OSDP reader go to ``credentials`` (the daemon's ``CredentialReader``); ``pin_factory`` is gpiozero's
    (``None``: the board's)."""
    door_io = config.door_io
    timing = DoorTiming(open_s=door_io.open_s, held_open_s=door_io.held_open_s,
                        debounce_s=door_io.debounce_ms / MS_PER_S, relock_on_close=door_io.relock_on_close,
                        fail_safe_lock=door_io.lock_type == "fail-safe")
    relay = _relay(config, pin_factory)
    contacts = Contacts()
    try:
        contacts = _contacts(door_io, pin_factory)
        announcers, indicators = _links(door_io, credentials, pin_factory)
    except BaseException:  # nothing half-opened stays claimed
        for part in (contacts.door_sensor, contacts.exit_button, contacts.tamper, relay):
            if part is not None:
                part.close()
        raise
    return DoorController(relay, timing, contacts, announcers=announcers, indicators=indicators, on_event=on_event)

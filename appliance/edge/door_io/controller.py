"""One door controller: the lock relay, the door contact, the exit button and the tamper switch.

It is the daemon's ``DoorActuator`` (``open_for``, ``is_open``, ``lock``) and adds what a
commercial terminal watches: the door opened without a release (forced open), left open too
long after one (held open), the exit button (request to exit: opens without a face) and the
case switch (tamper). Every change goes to ``on_event`` as a ``DoorEvent``.

Fail-secure: the lock is locked at start, after each release, on ``stop`` and when driving
the relay fails. With a ``fail-safe`` lock (a magnet that holds while powered) the relay is
energised to lock, so the same code keeps the door locked. Inputs are debounced here (a level
counts once it has held ``debounce_s``), the same on every pin factory.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from appliance.edge.door_io import events as kinds
from appliance.edge.door_io.events import DoorEvent, EventSink
from appliance.edge.door_io.gpio import ContactInput, Relay
from appliance.errors import ApplianceError, ErrorCode

log = logging.getLogger(__name__)
# a door opened this many debounce times after its release ended still counts as released (the contact
# reports an opening only once it has held for the debounce time)
RELEASE_GRACE_DEBOUNCES = 2


@dataclass(frozen=True)
class DoorTiming:
    """``[door_io]`` timing: release length, held-open limit, debounce, relock on close."""

    open_s: float = 3.0
    held_open_s: float = 30.0
    debounce_s: float = 0.05
    relock_on_close: bool = True
    fail_safe_lock: bool = False  # a magnetic lock: energised = locked


@dataclass(frozen=True)
class Contacts:
    """The inputs fitted at this door (``None``: not fitted)."""

    door_sensor: ContactInput | None = None
    exit_button: ContactInput | None = None
    tamper: ContactInput | None = None


class GrantAnnouncer(Protocol):
    """Tells an access panel who was granted (Wiegand line, OSDP peripheral link)."""

    def announce(self, card_no: int) -> None: ...

    def close(self) -> None: ...


class ResultIndicator(Protocol):
    """Shows the decision on a reader (LED colour, beeps)."""

    def feedback(self, granted: bool) -> None: ...

    def close(self) -> None: ...


class _Debounced:
    """A contact whose level counts once it has held ``debounce_s``; ``settled(level)`` then fires."""

    def __init__(self, contact: ContactInput, debounce_s: float, settled: Callable[[bool], None]) -> None:
        self.contact, self._debounce_s, self._settled = contact, debounce_s, settled
        self.level = contact.active
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()
        contact.on_change(self._edge)

    def _edge(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self._debounce_s, self._settle)
            self._timer.daemon = True
            self._timer.start()

    def _settle(self) -> None:
        level = self.contact.active
        with self._lock:
            if level == self.level:
                return
            self.level = level
        self._settled(level)

    def close(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
        self.contact.close()


class DoorController:
    """The door's actuator and inputs behind one object (see the module docstring)."""

    def __init__(self, relay: Relay, timing: DoorTiming | None = None, contacts: Contacts | None = None, *,
                 announcers: Sequence[GrantAnnouncer] = (), indicators: Sequence[ResultIndicator] = (),
                 on_event: EventSink | None = None, clock: Callable[[], float] = time.time) -> None:
        self.timing = timing or DoorTiming()
        self.on_event = on_event
        self.openings = 0
        self._relay, self._clock = relay, clock
        self._announcers, self._indicators = list(announcers), list(indicators)
        self._lock = threading.RLock()
        self._released = False
        self._release_ended_at = float("-inf")  # monotonic
        self._opened_in_release = False
        self._held_alarm = False
        self._relock_timer: threading.Timer | None = None
        self._held_timer: threading.Timer | None = None
        self._drive(released=False)
        contacts = contacts or Contacts()
        self._inputs: dict[str, _Debounced] = {}
        for name, contact, settled in (("door_sensor", contacts.door_sensor, self._door_settled),
                                       ("exit_button", contacts.exit_button, self._exit_settled),
                                       ("tamper", contacts.tamper, self._tamper_settled)):
            if contact is not None:
                self._inputs[name] = _Debounced(contact, self.timing.debounce_s, settled)
        self._report_start()

    # -- DoorActuator -------------------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        """The lock is released (the door may be opened)."""
        return self._released

    @property
    def door_is_open(self) -> bool | None:
        """The door contact's settled state; ``None`` without a door sensor."""
        sensor = self._inputs.get("door_sensor")
        return None if sensor is None else sensor.level

    def open_for(self, seconds: float | None = None, reason: str = "grant") -> None:
        """Release the lock for ``seconds`` (``[door_io] open_s`` by default), then lock again."""
        seconds = self.timing.open_s if seconds is None else seconds
        with self._lock:
            self._cancel_relock()
            self._drive(released=True)
            self._released, self._opened_in_release = True, False
            self.openings += 1
            self._relock_timer = self._start_timer(seconds, self._release_ended)
        self._emit(kinds.RELEASED, reason)

    def lock(self) -> None:
        with self._lock:
            self._cancel_relock()
            self._drive(released=False)
            if self._released:
                self._release_ended_at = time.monotonic()
            self._released = False

    # -- outputs to a panel and a reader ------------------------------------------------------
    def announce_grant(self, card_no: int) -> None:
        """Send the granted person's card number to every panel link (Wiegand, OSDP)."""
        failures = []
        for announcer in self._announcers:
            try:
                announcer.announce(card_no)
            except ApplianceError as error:
                log.error("grant not announced on %s: %s", type(announcer).__name__, error)
                failures.append(error)
        if failures:
            raise failures[0]

    def decided(self, granted: bool, card: str = "") -> None:
        """``DoorActuator.decided``: the readers show the result; a grant for a presented card
        number goes to the panel links (a card that is not a number is not announced)."""
        self.feedback(granted)
        if not (granted and card):
            return
        if not card.isdigit():
            log.warning("grant not announced: the card is not a number a panel format can carry")
            return
        try:
            self.announce_grant(int(card))
        except ApplianceError:
            return  # logged per link; the door itself has opened

    def feedback(self, granted: bool) -> None:
        """Show the decision on the readers (green and one beep, or red and three)."""
        for indicator in self._indicators:
            try:
                indicator.feedback(granted)
            except ApplianceError as error:
                log.warning("reader feedback failed: %s", error)

    def stop(self) -> None:
        """Lock, stop the timers and release the pins and links."""
        with self._lock:
            self._cancel_relock()
            if self._held_timer is not None:
                self._held_timer.cancel()
            self._drive(released=False)
            self._released = False
        for closable in (*self._inputs.values(), *self._announcers, *self._indicators):
            closable.close()
        if not self.timing.fail_safe_lock:
            # a fail-secure lock stays locked unpowered; a magnet is kept energised (locked) until the process ends
            self._relay.close()

    # -- inside ---------------------------------------------------------------------------------
    def _drive(self, released: bool) -> None:
        energised = released != self.timing.fail_safe_lock
        try:
            self._relay.energise(energised)
        except Exception as error:  # a pin driver error must never leave the door released
            if released:
                self._safe_lock()
            raise ApplianceError(ErrorCode.DOOR_IO_FAILED, f"lock relay: {error}") from error

    def _safe_lock(self) -> None:
        try:
            self._relay.energise(self.timing.fail_safe_lock)
        except Exception:
            log.exception("cannot lock the door")
        self._released = False

    def _start_timer(self, seconds: float, action: Callable[[], None]) -> threading.Timer:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        timer.start()
        return timer

    def _cancel_relock(self) -> None:
        if self._relock_timer is not None and self._relock_timer is not threading.current_thread():
            self._relock_timer.cancel()
        self._relock_timer = None

    def _release_ended(self) -> None:
        try:
            self.lock()
        except ApplianceError:
            log.exception("relock failed")

    def _recently_released(self) -> bool:
        """Released now, or until just now: a door opened at the last moment shows after the debounce."""
        grace_s = RELEASE_GRACE_DEBOUNCES * self.timing.debounce_s
        return self._released or time.monotonic() - self._release_ended_at <= grace_s

    def _door_settled(self, opened: bool) -> None:
        out: list[tuple[str, str]] = []
        with self._lock:
            if opened:
                out.append((kinds.DOOR_OPENED, ""))
                if self._recently_released():
                    self._opened_in_release = self._released
                    self._held_timer = self._start_timer(self.timing.held_open_s, self._held_expired)
                else:
                    out.append((kinds.FORCED_OPEN, "the door opened while locked"))
            else:
                out.append((kinds.DOOR_CLOSED, ""))
                if self._held_timer is not None:
                    self._held_timer.cancel()
                    self._held_timer = None
                if self._held_alarm:
                    self._held_alarm = False
                    out.append((kinds.HELD_OPEN_CLEARED, "the door closed"))
                if self._released and self._opened_in_release and self.timing.relock_on_close:
                    self._release_ended()
        for kind, detail in out:
            self._emit(kind, detail)

    def _held_expired(self) -> None:
        with self._lock:
            if self.door_is_open is not True or self._held_alarm:
                return
            self._held_alarm = True
        self._emit(kinds.HELD_OPEN, f"open longer than {self.timing.held_open_s:g} s after a release")

    def _exit_settled(self, pressed: bool) -> None:
        if not pressed:
            return
        self._emit(kinds.REQUEST_TO_EXIT, "exit button")
        try:
            self.open_for(reason="exit button")
        except ApplianceError:
            log.exception("exit button: the lock could not be released")

    def _tamper_settled(self, active: bool) -> None:
        if active:
            self._emit(kinds.TAMPER, "the case is open")
        else:
            self._emit(kinds.TAMPER_CLEARED, "the case is closed")

    def _report_start(self) -> None:
        """A case already open, or a door already open, is reported when the controller starts."""
        if "tamper" in self._inputs and self._inputs["tamper"].level:
            self._emit(kinds.TAMPER, "the case is open at start")
        if self.door_is_open:
            self._emit(kinds.DOOR_OPENED, "open at start")

    def _emit(self, kind: str, detail: str) -> None:
        log.info("door %s %s", kind, detail)
        if self.on_event is None:
            return
        try:
            self.on_event(DoorEvent(kind, self._clock(), detail))
        except Exception:  # the door keeps working whatever the listener does
            log.exception("door event listener failed on %s", kind)

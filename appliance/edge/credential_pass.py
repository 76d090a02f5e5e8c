"""Cards and PINs in the pass loop, in every door mode (issue 14 part 4).

The daemon hands every credential the reader gives (``hardware.CredentialReader``: an OSDP
reader or keypad, ``edge.door_io``) to ``CredentialPass.offer``; what happens depends on the
door's mode now (``edge.door_modes``):

* ``card|pin`` and ``face|card``: a card alone is decided at once (``CredentialDecider``: the
  matcher, else the device cache) and the door opens or the screen says why not;
* ``card+face`` and ``face``: the card is held for ``CARD_HOLD_S`` as the claim of the face
  pass (1:1 against the card's person), and the screen asks for the face or the PIN: a person
  who refused face recognition is always offered the alternative, and a card with its PIN is
  what the rules (``matching.credentials.allowed_for``) let them pass with.

A PIN is always typed after a card (the card names the person); a PIN with no card held asks
for the card. ``card|pin`` runs no camera pass: the screen shows the alternative between passes.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable

from appliance.edge.door_pass import CARD_TEXT, refusal_text
from appliance.edge.door_modes import CARD, PIN, Credential, CredentialDecider, DoorMode, accepts_credential
from appliance.edge.hardware import Credential as Presented
from appliance.edge.hardware import DoorActuator, Display
from appliance.edge.kiosk.screen import (
    ALTERNATIVE_TEXT, CARD_INVALID_TEXT, WELCOME_TEXT, ScreenState, State,
)
from appliance.errors import ApplianceError
from appliance.protocol import messages

log = logging.getLogger(__name__)

CARD_HOLD_S = 20.0  # a card waits this long for its PIN or its face, seconds
CARD_HELD_TEXT = "Look at the camera, or enter your PIN"
WRONG_PIN_TEXT = "Wrong PIN"
PIN_LOCKED_TEXT = "Too many attempts. Please see staff."
CREDENTIAL_UNAVAILABLE_TEXT = "The door cannot check your card or PIN now. Please see staff."


class CredentialPass:
    """Card and PIN passes of one door; ``decider`` None: a door without one (the card is only
    ever the claim of a face pass)."""

    def __init__(self, device_id: str, decider: CredentialDecider | None, mode_now: Callable[[], DoorMode],
                 actuator: DoorActuator, display: Display, open_door_s: float = 3.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.device_id, self.decider, self.mode_now = device_id, decider, mode_now
        self.actuator, self.display, self.open_door_s, self.clock = actuator, display, open_door_s, clock
        self._held: tuple[str, float] | None = None  # (card number, when read)

    def idle_screen(self) -> ScreenState | None:
        """What the screen shows between passes in this mode (None: the face door's idle)."""
        return ScreenState.of(State.ALTERNATIVE, ALTERNATIVE_TEXT) if self.mode_now() == DoorMode.CARD_OR_PIN else None

    @property
    def holding(self) -> bool:
        """A card waits for its PIN or face (the screen keeps asking for them meanwhile)."""
        return bool(self._card())

    def claim(self) -> str:
        """The held card for a face pass (1:1), taken; "" when none is held."""
        card, self._held = self._card(), None
        return card

    def _card(self) -> str:
        if self._held is None or self.clock() - self._held[1] > CARD_HOLD_S:
            self._held = None
            return ""
        return self._held[0]

    def offer(self, presented: Presented) -> tuple[messages.Decision, str] | None:
        """Handle one credential; (the decision, who decided) when it was a pass, else None."""
        mode = self.mode_now()
        if presented.kind == PIN:
            card = self._card()
            if not card:
                self.display.show(ScreenState.of(State.ALTERNATIVE, CARD_TEXT))
                return None
            self._held = None
            return self._decide(PIN, card, presented.value)
        if accepts_credential(mode, CARD):
            return self._decide(CARD, presented.value, "")
        # a face door: the face pass takes the card as its claim, or a person who does not use face
        # recognition types their PIN (the rules decide who may)
        self._held = (presented.value, self.clock())
        self.display.show(ScreenState.of(State.ALTERNATIVE, CARD_HELD_TEXT))
        return None

    def _decide(self, kind: str, card: str, pin: str) -> tuple[messages.Decision, str] | None:
        try:
            credential = Credential(kind, card, pin)
        except ApplianceError as exc:  # not a card number or PIN this door could read
            log.info("credential refused: %s", exc)
            self.display.show(ScreenState.of(State.REFUSED, CARD_INVALID_TEXT))
            return None
        if self.decider is None:
            self.display.show(ScreenState.of(State.UNAVAILABLE, CREDENTIAL_UNAVAILABLE_TEXT))
            return messages.Decision(messages.new_id(), False, messages.Reason.UNAVAILABLE), "door"
        try:
            decision = self.decider.decide(credential, self.device_id)
        except ApplianceError as exc:
            log.warning("no decision on a %s: %s", kind, exc)
            decision = messages.Decision(messages.new_id(), False, messages.Reason.UNAVAILABLE)
        self.display.show(self._screen(decision))
        if decision.accepted:
            self.actuator.open_for(self.open_door_s)
        self.actuator.decided(decision.accepted, card)
        return decision, self.decider.last_source or "door"

    def _screen(self, decision: messages.Decision) -> ScreenState:
        if decision.accepted:
            return ScreenState.of(State.ACCEPTED, WELCOME_TEXT, name=decision.display_name)
        if decision.reason == messages.Reason.UNAVAILABLE:
            return ScreenState.of(State.UNAVAILABLE, CREDENTIAL_UNAVAILABLE_TEXT)
        if decision.reason in messages.Reason.ACCESS:  # a valid card, but not for this door now
            return ScreenState.of(State.REFUSED, refusal_text(decision.reason))
        text = {messages.Reason.NO_MATCH: WRONG_PIN_TEXT, messages.Reason.LOCKED_OUT: PIN_LOCKED_TEXT}.get(
            decision.reason, CARD_INVALID_TEXT)
        return ScreenState.of(State.REFUSED, text)

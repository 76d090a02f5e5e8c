"""The message of a card or PIN pass (``credential`` topic): the non-face alternative.

A door asks the matcher to decide a card (alone) or a card number with its PIN, in the door
mode in force (``appliance.config.mode_tables.DoorMode``); the matcher answers with the same
``messages.Decision`` as a face pass (accepted, reason, masked name, never a score) on the
door's ``decision`` topic. Sealed to the matcher like a probe (envelope type PROBE: the PIN
and card number are only readable there) and decoded strictly by
``messages.decode(data, CredentialRequest)``. It lives here, not in the registry of
``messages``, so that a match-request handler handed one refuses it as an unexpected type.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, ClassVar, Literal

from pydantic import Field, model_validator

from appliance.config.mode_tables import DOOR_MODES
from appliance.protocol.messages import Id, Message, Number, Text, RuleBroken

CARD, PIN = "card", "pin"  # the same spelling as appliance.matching.credentials
MAX_CARD_CHARS, MIN_PIN_DIGITS, MAX_PIN_DIGITS = 64, 4, 12
CARD_PATTERN = re.compile(f"[0-9A-Za-z][0-9A-Za-z-]{{0,{MAX_CARD_CHARS - 1}}}")  # a card number as printed


@dataclass(frozen=True)
class CredentialRequest(Message):
    """Device -> matcher: decide ``card`` (and ``pin`` for a PIN pass) at this door in ``mode``."""

    TYPE: ClassVar[str] = "credential_request"
    WIRE_OPTIONAL: ClassVar[tuple[str, ...]] = ("pin",)
    request_id: Id
    device_id: Text
    mode: Annotated[Literal[DOOR_MODES], Field(description="the door mode in force when the credential was read")]
    kind: Literal[CARD, PIN]
    card: Annotated[Text, Field(pattern=f"^{CARD_PATTERN.pattern}$")]
    at: Number
    pin: Annotated[Text, Field(pattern=f"^([0-9]{{{MIN_PIN_DIGITS},{MAX_PIN_DIGITS}}})?$")] = ""

    @model_validator(mode="after")
    def _rules(self) -> CredentialRequest:
        if (self.kind == PIN) != bool(self.pin):
            raise RuleBroken("a PIN request carries a PIN, a card request none")
        return self

    def __repr__(self) -> str:  # never the PIN or the card number in a log line
        return f"CredentialRequest({self.request_id}, {self.device_id}, {self.mode}, {self.kind})"

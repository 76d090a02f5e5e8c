"""The door's mode table (``[door_mode]``): how a person may pass this door, and when.

A door runs ``mode`` unless one of its ``windows`` (a weekly schedule in the site's time zone,
``appliance.access.schedule``) covers the moment; then that window's mode. The PIN keypad has
its own attempt limit: after ``pin_attempts`` wrong PINs in a row the door refuses PINs for
``pin_lockout_s`` (docs/door-modes.md). Composed into ``Config`` by ``tables``.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field

from appliance.config.fields import Float, Int, Str, Table

MAX_PIN_ATTEMPTS = 10  # a 4-digit PIN allows 10,000 guesses: more tries per lockout would invite guessing
MAX_PIN_LOCKOUT_S = 24 * 3600.0


class DoorMode(StrEnum):
    """How a person may pass a door (the wire and configuration spelling is the value)."""

    FACE = "face"  # a face pass only
    CARD_AND_FACE = "card+face"  # the card names the person, the face is verified 1:1 against them
    CARD_OR_PIN = "card|pin"  # the non-face alternative only: no camera pass
    FACE_OR_CARD = "face|card"  # either a face pass or a card alone


DOOR_MODES = tuple(mode.value for mode in DoorMode)  # the spellings a file may use


@dataclass(frozen=True)
class ModeWindow(Table):
    """A mode in force while ``schedule`` covers the moment."""

    mode: Annotated[Literal[DOOR_MODES], Field(description=(
        "the mode inside the window: face, card+face, card|pin, face|card"))]
    schedule: Annotated[dict[str, Any], Field(description=(
        'weekly windows, e.g. {mon = ["08:00-18:00"], holidays = "closed"} (appliance.access.schedule)'))]


@dataclass(frozen=True)
class DoorModeConfig(Table):
    """This door's mode, its scheduled exceptions and the PIN keypad's attempt limit."""

    mode: Annotated[Literal[DOOR_MODES], Field(description=(
        "the mode outside every window: face, card+face, card|pin (non-face only), face|card"))] = DoorMode.FACE.value
    time_zone: Annotated[Str, Field(description="IANA time zone the windows are written in")] = "UTC"
    windows: Annotated[tuple[ModeWindow, ...], Field(description="scheduled modes; the first covering wins")] = ()
    pin_attempts: Annotated[Int, Field(ge=1, le=MAX_PIN_ATTEMPTS, description=(
        "wrong PINs in a row before the keypad locks"))] = 3
    pin_lockout_s: Annotated[Float, Field(gt=0, le=MAX_PIN_LOCKOUT_S, description=(
        "how long the keypad stays locked, seconds"))] = 300.0
    holidays: Annotated[tuple[Str, ...], Field(description="site holidays, YYYY-MM-DD")] = ()

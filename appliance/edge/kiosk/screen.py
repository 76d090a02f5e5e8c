"""What the door's screen shows, as data: a state, an English message (a msgid of the ``door``
catalog) with its parameters, and where the face is.

The daemon, the door pass, the challenge runner and the enrollment capture publish
``ScreenState``s to a ``Display`` (``edge.hardware``); each display renders them its own way:
the console display logs the English text, the kiosk translates the message into the device's
language (``appliance.i18n``) for the page. Nothing here holds an image or a name other than
the masked one a decision carries.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import StrEnum

from appliance import i18n

DOMAIN = "door"


class State(StrEnum):
    """The screens a person can see at the door."""

    IDLE = "idle"  # nobody in front of the camera: ready, look at the camera
    GUIDANCE = "guidance"  # quality guidance ("move closer") or an enrollment capture's instruction
    CHALLENGE = "challenge"  # an active-liveness prompt ("Please blink")
    ACCEPTED = "accepted"  # the door opens: welcome with the masked name
    REFUSED = "refused"  # not recognised, too many attempts, card not valid: the reason
    ALARM = "alarm"  # a presentation attack or an unfinished challenge: staff are alerted
    ALTERNATIVE = "alternative"  # present your card or enter your PIN (the non-face path)
    UNAVAILABLE = "unavailable"  # the door cannot decide now: use your card


# The line above the message, per state ("" = the message alone).
HEADLINES: dict[State, str] = {
    State.IDLE: "Face recognition ready",
    State.GUIDANCE: "",
    State.CHALLENGE: "",
    State.ACCEPTED: "Access granted",
    State.REFUSED: "Access refused",
    State.ALARM: "Alarm",
    State.ALTERNATIVE: "Alternative to face recognition",
    State.UNAVAILABLE: "",
}
IDLE_TEXT = "Please look at the camera"
WELCOME_TEXT = "Welcome {name}"
ALTERNATIVE_TEXT = "Present your card or enter your PIN"
FACE_DECLINED_TEXT = "Face recognition is not used for you: present your card or enter your PIN"
CARD_INVALID_TEXT = "Card not valid at this door"
ALARM_FOOTER_TEXT = "Staff have been alerted"
# passive+stepup: the passive check was not clear, a challenge follows (before its first prompt)
STEP_UP_TEXT = "One more check: please follow the instructions"
# the page's fixed texts (appliance/edge/kiosk/static/kiosk.html)
PAGE_TEXTS = ("Door kiosk", "Privacy notice", "Notice version {version}", "Camera preview off",
              "Connecting to the door…")
SCREEN_TEXTS: tuple[str, ...] = tuple(h for h in HEADLINES.values() if h) + (
    IDLE_TEXT, WELCOME_TEXT, ALTERNATIVE_TEXT, FACE_DECLINED_TEXT, CARD_INVALID_TEXT, ALARM_FOOTER_TEXT,
    STEP_UP_TEXT) + PAGE_TEXTS


@dataclass(frozen=True)
class FaceBox:
    """The face's box as fractions of the frame (0..1), so the page scales it to any preview size."""

    left: float
    top: float
    width: float
    height: float

    @classmethod
    def of(cls, box: tuple[float, float, float, float], frame_width: int, frame_height: int) -> FaceBox:
        x, y, w, h = box
        return cls(round(x / frame_width, 4), round(y / frame_height, 4), round(w / frame_width, 4),
                   round(h / frame_height, 4))


@dataclass(frozen=True)
class ScreenState:
    """One screen: ``message`` is the English msgid, ``params`` fill its ``{placeholders}``."""

    state: State
    message: str
    params: tuple[tuple[str, str], ...] = ()
    at: float = field(default_factory=time.time, compare=False)

    @classmethod
    def of(cls, state: State, message: str, **params: str) -> ScreenState:
        return cls(State(state), message, tuple(sorted((k, str(v)) for k, v in params.items())))

    @property
    def text(self) -> str:
        """The message in English, parameters filled (what the console display logs)."""
        return self.message.format(**dict(self.params)).strip()

    def localised(self, lang: str) -> dict[str, str]:
        """The headline, message and footer in ``lang`` (parameters are data, never translated)."""
        headline = HEADLINES[self.state]
        footer = ALARM_FOOTER_TEXT if self.state is State.ALARM else ""
        return {"headline": i18n.gettext(lang, DOMAIN, headline) if headline else "",
                "message": i18n.gettext(lang, DOMAIN, self.message).format(**dict(self.params)).strip(),
                "footer": i18n.gettext(lang, DOMAIN, footer) if footer else ""}

    def as_json(self, lang: str) -> dict:
        return {"state": self.state.value, "at": self.at, **self.localised(lang)}


IDLE = ScreenState.of(State.IDLE, IDLE_TEXT)

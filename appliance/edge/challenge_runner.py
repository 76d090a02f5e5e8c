"""The active challenge inside the door's pass loop (``liveness.level = "active"``, and
``"passive+stepup"`` when the passive check was not clear).

At level ``active`` the runner is always engaged. For step-up (``step_up=True``) it is engaged
only when the door pass asks (``engage``: the first burst passed the threshold but not by the
step-up margin); it disengages when the challenge is finished or abandoned, so the next
attempt starts with the passive check again. Before the first prompt of a step-up challenge
the screen says a further check follows (``STEP_UP_TEXT``).

One challenge per attempt: drawn when the attempt's first face frame arrives, fed every
following face frame with the frame's capture time, and handed to the door pass once it is
done (passed, or a step timed out). The daemon shows the guidance it returns ("Look at the
camera", "Blink both eyes", ...) on the display, only when it changes.

The draw (actions, their order, the pause before each prompt) comes from ``rng``: the
operating system's random source on a door, so that a recording of an earlier session
performs the wrong action or acts before its prompt; tests inject a seeded
``random.Random`` to know what will be asked.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

from appliance.edge.kiosk.screen import STEP_UP_TEXT
from appliance.liveness.challenge import ActiveChallenge
from appliance.vision.types import Face


@dataclass(frozen=True)
class ChallengeSettings:
    """``[liveness] challenge_*`` of the configuration."""

    minimum: int = 1  # actions per challenge, drawn between minimum and maximum
    maximum: int = 3
    step_timeout_s: float = 4.0
    max_delay_s: float = 1.2  # random pause before each prompt (replay resistance)

    @classmethod
    def from_config(cls, liveness) -> ChallengeSettings:
        return cls(liveness.challenge_min, liveness.challenge_max, liveness.challenge_step_timeout_s,
                   liveness.challenge_max_delay_s)


class ChallengeRunner:
    def __init__(self, settings: ChallengeSettings | None = None, rng: random.Random | None = None,
                 step_up: bool = False):
        self.settings = settings or ChallengeSettings()
        self.rng = rng or random.SystemRandom()
        self.step_up = step_up  # engaged only on the door pass's request (passive+stepup)
        self.current: ActiveChallenge | None = None
        self._shown: str | None = None
        self._engaged = not step_up

    @property
    def engaged(self) -> bool:
        """Whether the pass loop feeds it the attempt's frames (always at level ``active``)."""
        return self._engaged

    def engage(self) -> None:
        """Step-up: the passive check was not clear; the next face frame draws a challenge."""
        self._engaged = True

    def observe(self, face: Face | None, now: float) -> str | None:
        """Feed one frame (``now``: its capture time, monotonic seconds); starts a challenge
        when none runs. Returns the guidance to show when it changed, else None."""
        if self.current is None:
            s = self.settings
            self.current = ActiveChallenge.random(now, self.rng, s.minimum, s.maximum, s.step_timeout_s,
                                                  s.max_delay_s)
            self._shown = None
        guidance = self.current.observe(face, now)
        if self.step_up and self.current.before_first_prompt(now):
            guidance = STEP_UP_TEXT
        if guidance == self._shown:
            return None
        self._shown = guidance
        return guidance

    @property
    def done(self) -> bool:
        return self.current is not None and self.current.done

    def finish(self) -> ActiveChallenge:
        """The finished challenge, for the liveness judgement; the next frame draws a new one."""
        challenge, self.current, self._shown = self.current, None, None
        self._engaged = not self.step_up
        if challenge is None or not challenge.done:
            raise RuntimeError("no finished challenge")
        return challenge

    def abandon(self) -> None:
        """The person left: the running challenge is dropped (no verdict, no alarm)."""
        self.current, self._shown = None, None
        self._engaged = not self.step_up

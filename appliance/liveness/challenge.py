"""Active (cooperative) liveness: a random sequence of 1-3 actions read from the landmarker.

The kiosk shows one prompt at a time; the subject must perform it within the step timeout.
Each action is judged against the subject's own neutral state just before the prompt, so a
face already turned or already smiling does not pass a step. Replay resistance comes from
chance: the order of the actions and the pause before each prompt are drawn per session,
so a video recorded in an earlier session performs the wrong action, or the right one at
the wrong time (before its prompt was shown), and fails. The edge daemon runs one
challenge per attempt inside its pass loop (``appliance.edge.challenge_runner``) and
shows the prompts on the door's display.

Yaw/pitch signs follow ``vision.geometry.pose_from_rotation`` on MediaPipe's matrix:
positive yaw = the subject turns to *their* left, negative pitch = the subject looks up
(measured on AT&T/ORL faces).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum

from appliance.vision.types import Face

TURN_DEG = 12.0  # yaw change from neutral that counts as a turn
NOD_DEG = 9.0  # pitch change from neutral that counts as looking up/down
NEUTRAL_MAX_CHANGE = 0.5  # a step starts only from a neutral face: within half the action
BLINK_RISE = 0.25  # eye closure (mean eyeBlink blendshape) above the neutral face: closed
BLINK_OPEN = 0.3  # a blink prompt needs open eyes first
SMILE_ON = 0.45
SMILE_RISE = 0.3


class Action(Enum):
    BLINK = ("blink", "Blink both eyes")
    TURN_LEFT = ("turn_left", "Turn your head slowly to your left")
    TURN_RIGHT = ("turn_right", "Turn your head slowly to your right")
    LOOK_UP = ("look_up", "Look up")
    LOOK_DOWN = ("look_down", "Look down")
    SMILE = ("smile", "Smile")

    @property
    def key(self) -> str:
        return self.value[0]

    @property
    def guidance(self) -> str:
        return self.value[1]


@dataclass(frozen=True)
class Step:
    action: Action
    delay_s: float  # pause between the previous step and this prompt
    timeout_s: float


@dataclass
class StepResult:
    action: str
    prompted_at: float
    completed_at: float | None = None
    outcome: str = "pending"  # pending | passed | timeout

    def as_dict(self) -> dict:
        return dict(vars(self))


def _eyes(face: Face) -> float:
    return (face.blendshapes.get("eyeBlinkLeft", 0.0) + face.blendshapes.get("eyeBlinkRight", 0.0)) / 2


def _smile(face: Face) -> float:
    return (face.blendshapes.get("mouthSmileLeft", face.blendshapes.get("smileLeft", 0.0))
            + face.blendshapes.get("mouthSmileRight", face.blendshapes.get("smileRight", 0.0))) / 2


def _pose(face: Face) -> tuple[float, float]:
    return (face.pose.yaw, face.pose.pitch) if face.pose is not None else (0.0, 0.0)


def draw_steps(rng: random.Random, minimum: int, maximum: int, timeout_s: float, max_delay_s: float) -> list[Step]:
    """A random sequence: distinct actions, opposite turns never both (a neck is not a metronome)."""
    count = rng.randint(minimum, maximum)
    pool = list(Action)
    rng.shuffle(pool)
    chosen: list[Action] = []
    for action in pool:
        opposite = {Action.TURN_LEFT: Action.TURN_RIGHT, Action.TURN_RIGHT: Action.TURN_LEFT,
                    Action.LOOK_UP: Action.LOOK_DOWN, Action.LOOK_DOWN: Action.LOOK_UP}.get(action)
        if opposite not in chosen:
            chosen.append(action)
        if len(chosen) == count:
            break
    return [Step(a, round(rng.uniform(0.3, max(0.3, max_delay_s)), 3), timeout_s) for a in chosen]


@dataclass
class ActiveChallenge:
    """Feed it ``observe(face, t)`` per frame (t in seconds, monotonic); read ``guidance``."""

    steps: list[Step]
    started_at: float
    results: list[StepResult] = field(default_factory=list)
    _index: int = 0
    _prompt_at: float = 0.0
    _neutral: Face | None = None
    _seen_closed: bool = False

    def __post_init__(self) -> None:
        if not self.steps:
            raise ValueError("a challenge needs at least one step")
        self._prompt_at = self.started_at + self.steps[0].delay_s

    @classmethod
    def random(cls, started_at: float, rng: random.Random | None = None, minimum: int = 1, maximum: int = 3,
               timeout_s: float = 4.0, max_delay_s: float = 1.2) -> ActiveChallenge:
        """A fresh draw; ``rng`` defaults to the operating system's source (a recording cannot
        predict it). Tests pass a seeded ``random.Random``."""
        return cls(draw_steps(rng or random.SystemRandom(), minimum, maximum, timeout_s, max_delay_s), started_at)

    @property
    def done(self) -> bool:
        return self.passed or self.failed

    @property
    def passed(self) -> bool:
        return len(self.results) == len(self.steps) and all(r.outcome == "passed" for r in self.results)

    @property
    def failed(self) -> bool:
        return any(r.outcome == "timeout" for r in self.results)

    def before_first_prompt(self, now: float) -> bool:
        """Still in the random pause before the first prompt."""
        return not self.results and not self.done and now < self._prompt_at

    def guidance(self, now: float) -> str:
        """What the kiosk shows now."""
        if self.passed:
            return "Thank you"
        if self.failed:
            return "Liveness check not completed"
        if now < self._prompt_at:
            return "Look at the camera"
        return self.steps[self._index].action.guidance

    def _start_step(self, face: Face, now: float) -> None:
        step = self.steps[self._index]
        self.results.append(StepResult(step.action.key, now))
        self._neutral = face
        self._seen_closed = False

    def _performed(self, action: Action, face: Face) -> bool:
        neutral = self._neutral
        yaw, pitch = _pose(face)
        yaw0, pitch0 = _pose(neutral)
        if action is Action.BLINK:
            rise = _eyes(face) - _eyes(neutral)
            if rise >= BLINK_RISE:
                self._seen_closed = True
            return self._seen_closed and rise <= BLINK_RISE / 2  # and open again
        if action is Action.TURN_LEFT:
            return yaw - yaw0 >= TURN_DEG
        if action is Action.TURN_RIGHT:
            return yaw0 - yaw >= TURN_DEG
        if action is Action.LOOK_UP:
            return pitch0 - pitch >= NOD_DEG
        if action is Action.LOOK_DOWN:
            return pitch - pitch0 >= NOD_DEG
        return _smile(face) >= SMILE_ON and _smile(face) - _smile(neutral) >= SMILE_RISE

    def _neutral_enough(self, action: Action, face: Face) -> bool:
        """The subject must not already be performing the action when it is prompted."""
        yaw, pitch = _pose(face)
        if action is Action.BLINK:
            return _eyes(face) <= BLINK_OPEN
        if action is Action.SMILE:
            return _smile(face) < SMILE_ON
        if action in (Action.TURN_LEFT, Action.TURN_RIGHT):
            return abs(yaw) < TURN_DEG * (1 + NEUTRAL_MAX_CHANGE)
        return abs(pitch) < NOD_DEG * (1 + NEUTRAL_MAX_CHANGE) + 10.0  # cameras sit above or below eye level

    def observe(self, face: Face | None, now: float) -> str:
        """Advance with one frame; returns the guidance to show."""
        if self.done or now < self._prompt_at:
            return self.guidance(now)
        step = self.steps[self._index]
        if len(self.results) == self._index:  # prompt shown: wait for a neutral face
            if now - self._prompt_at > step.timeout_s:
                self.results.append(StepResult(step.action.key, self._prompt_at, None, "timeout"))
            elif face is not None and self._neutral_enough(step.action, face):
                self._start_step(face, now)
            return self.guidance(now)
        result = self.results[-1]
        if now - self._prompt_at > step.timeout_s:
            result.outcome = "timeout"
        elif face is not None and self._performed(step.action, face):
            result.completed_at, result.outcome = now, "passed"
            self._index += 1
            if self._index < len(self.steps):
                self._prompt_at = now + self.steps[self._index].delay_s
        return self.guidance(now)

    def summary(self) -> dict:
        return {
            "steps": [r.as_dict() for r in self.results],
            "order": [s.action.key for s in self.steps],
            "passed": self.passed,
        }

"""The door pass without models or broker: a scripted pipeline, a fake liveness gate, a fake
decider. What the person at the door reads, what goes out (requests, events, alarms), when
the door opens - for every way a pass can end, with and without the active challenge."""
from __future__ import annotations

import random
from types import SimpleNamespace

import numpy as np
import pytest
from edgekit import FakeDecider

from appliance.capture.sources import Frame
from appliance.edge.challenge_runner import ChallengeRunner, ChallengeSettings
from appliance.edge.daemon import EdgeDaemon, EdgeSettings
from appliance.edge.door_pass import (
    ALARM_ATTACK, ALARM_LIVENESS_FAILED, CARD_TEXT, LIVENESS_REFUSED_TEXT, LOCKED_OUT_TEXT, NOT_RECOGNISED_TEXT,
)
from appliance.edge.hardware import UNAVAILABLE_TEXT, ConsoleDisplay, CredentialReader
from appliance.errors import ApplianceError, ErrorCode
from appliance.liveness.challenge import Action, draw_steps
from appliance.pipeline import Extraction, FaceAnalysis
from appliance.protocol import messages
from appliance.vision.quality import NO_FACE, QualityIssue, QualityReport
from appliance.vision.templates import Template
from appliance.vision.types import Detection, Face

FPS = 10.0
POOR = QualityIssue("too_dark", "more light on your face", "brightness", 10.0, 30.0)
# what a frame shows -> (faces in view, quality issue, blendshapes of the subject)
SCENES = {
    "empty": (0, None, {}),
    "face": (1, None, {"eyeBlinkLeft": 0.05, "eyeBlinkRight": 0.05}),
    "closed": (1, None, {"eyeBlinkLeft": 0.9, "eyeBlinkRight": 0.9}),
    "smile": (1, None, {"eyeBlinkLeft": 0.05, "eyeBlinkRight": 0.05, "mouthSmileLeft": 0.9, "mouthSmileRight": 0.9}),
    "dark": (1, POOR, {}),
    "two": (2, None, {}),
}
NAMES = list(SCENES)


class ScriptedPipeline:
    """``analyze`` reads the scene from the frame's first pixel; ``extract`` counts templates."""

    config = SimpleNamespace(quality_verification=None)
    embedder_pack = SimpleNamespace(label="fake@1")

    def __init__(self):
        self.extracted = 0

    def analyze(self, image, profile=None) -> FaceAnalysis:
        faces, issue, blendshapes = SCENES[NAMES[int(image[0, 0, 0])]]
        found = tuple(Face((10.0 + 50 * i, 10.0, 40.0, 40.0), np.zeros((5, 2), np.float32), 0.9,
                           blendshapes=blendshapes) for i in range(faces))
        detection = Detection(found, (64, 64), 0 if faces else None)
        report = QualityReport({}, (NO_FACE,) if not faces else (issue,) if issue else (), 50.0)
        return FaceAnalysis(detection, np.zeros((4, 4, 3), np.uint8) if faces else None, report, {"landmarks": 1.0})

    def extract(self, analyses, profile=None):
        self.extracted += 1
        vector = np.ones(8, np.float32) / np.sqrt(8)
        return [Extraction(a, Template(vector, "fake", "1")) for a in analyses]


class Verdict:
    def __init__(self, live: bool, attack: bool = False, challenge=None, reasons: tuple[str, ...] = ()):
        self.live, self.attack, self.challenge, self.reasons = live, attack, challenge, reasons

    def summary(self) -> dict:
        return {"live": self.live, "attack": self.attack,
                "challenge": None if self.challenge is None else self.challenge.summary()}


class Gate:
    """Live unless told otherwise; with a challenge, live only when it passed (as the checker)."""

    def __init__(self, live: bool = True, attack: bool = False):
        self.live, self.attack = live, attack
        self.calls: list[tuple[int, object]] = []

    def judge(self, frames, faces, challenge=None):
        self.calls.append((len(frames), challenge))
        live = self.live and (challenge is None or challenge.passed)
        return Verdict(live, self.attack, challenge)


class Actuator:
    def __init__(self):
        self.openings: list[float] = []
        self.decisions: list[tuple[bool, str]] = []  # what the reader and panel were told
        self.is_open = False

    def open_for(self, seconds: float) -> None:
        self.openings.append(seconds)

    def lock(self) -> None:
        return None

    def decided(self, granted: bool, card: str = "") -> None:
        self.decisions.append((granted, card))


def frames(*scenes: str, start: float = 100.0):
    """One frame per scene name ("face*3" repeats), FPS apart from ``start`` (monotonic)."""
    names = [n for scene in scenes for n in [scene.split("*")[0]] * int((scene.split("*") + ["1"])[1])]
    for index, name in enumerate(names):
        image = np.full((2, 2, 3), NAMES.index(name), np.uint8)
        yield Frame(image, index, 1_700_000_000.0 + index / FPS, start + index / FPS)


def door(decider=None, liveness=None, challenge=None, **settings):
    pipeline, display, actuator, sent = ScriptedPipeline(), ConsoleDisplay(), Actuator(), []
    daemon = EdgeDaemon(EdgeSettings("door-t", **{"cool_down_s": 0.0, **settings}), pipeline,
                        decider or FakeDecider(), liveness=liveness, actuator=actuator, display=display,
                        emit=lambda kind, message: sent.append((kind, message)), challenge=challenge)
    return SimpleNamespace(daemon=daemon, pipeline=pipeline, display=display, actuator=actuator, sent=sent,
                           decider=daemon.decider)


def kinds(sent, of: str) -> list[str]:
    return [m.kind for k, m in sent if k == of]


# -- passes without a challenge -----------------------------------------------------------
def test_accepted_pass_opens_the_door_and_reports_it():
    d = door(liveness=Gate())
    (record,) = d.daemon.run(frames("face*3"))
    assert (record.outcome, record.reason, record.display_name) == ("accepted", "match", "S**** T**")
    assert d.actuator.openings == [3.0] and d.display.lines == ["Welcome S**** T**"]
    assert d.actuator.decisions == [(True, "")]  # the reader shows the grant; no card for a panel
    (request, pack), = d.decider.requests
    assert request.mode == "identify" and pack == ("fake", "1") and request.liveness["live"] is True
    assert kinds(d.sent, "event") == ["pass"] and d.sent[-1][1].details["outcome"] == "accepted"
    assert set(record.stage_ms) == {"liveness", "embedding", "decision"}


def test_no_match_and_lock_out_say_different_things():
    answers = [messages.Decision(request_id="0" * 32, accepted=False, reason=reason)
               for reason in (messages.Reason.NO_MATCH, messages.Reason.LOCKED_OUT)]
    d = door(FakeDecider(*answers))
    records = d.daemon.run(frames("face*3", "face*3"))
    assert [r.outcome for r in records] == ["rejected", "rejected"]
    assert d.display.lines == [NOT_RECOGNISED_TEXT, LOCKED_OUT_TEXT] and d.actuator.openings == []
    assert d.actuator.decisions == [(False, ""), (False, "")]
    assert d.decider.requests[0][0].liveness == {}  # liveness off: no evidence


def test_no_answer_is_unavailable_never_not_recognised():
    d = door(FakeDecider(ApplianceError(ErrorCode.REQUEST_TIMEOUT, "no answer")))
    (record,) = d.daemon.run(frames("face*3"))
    assert (record.outcome, record.reason) == ("unavailable", messages.Reason.UNAVAILABLE)
    assert d.display.lines == [UNAVAILABLE_TEXT] and d.actuator.openings == []


def test_attack_raises_one_alarm_and_makes_no_template():
    d = door(liveness=Gate(live=False, attack=True))
    (record,) = d.daemon.run(frames("face*3"))
    assert (record.outcome, record.reason) == ("attack", messages.Reason.LIVENESS_FAILED)
    assert d.pipeline.extracted == 0 and d.decider.requests == []
    assert kinds(d.sent, "alarm") == [ALARM_ATTACK] and d.display.lines == [LIVENESS_REFUSED_TEXT]


def test_a_presentation_that_could_not_be_judged_is_refused_without_alarm():
    d = door(liveness=Gate(live=False, attack=False))  # e.g. a grey face without grey calibration
    (record,) = d.daemon.run(frames("face*3"))
    assert record.outcome == "rejected" and kinds(d.sent, "alarm") == [] and d.decider.requests == []


def test_poor_quality_guides_then_the_pass_goes_on():
    d = door()
    (record,) = d.daemon.run(frames("dark*3", "face*3"))
    assert record.outcome == "accepted" and d.display.lines[0] == POOR.guidance


def test_two_faces_report_tailgating():
    d = door()
    (record,) = d.daemon.run(frames("two*3"))
    assert record.faces_in_view == 2 and kinds(d.sent, "event") == ["tailgating", "pass"]


def test_card_and_face_waits_for_the_card():
    d = door(require_card=True)
    reader = d.daemon.reader
    assert isinstance(reader, CredentialReader)
    assert d.daemon.run(frames("face*3")) == []
    reader.present("C-1")
    (record,) = d.daemon.run(frames("face*3"))
    assert d.display.lines[0] == CARD_TEXT and record.outcome == "accepted"
    assert d.decider.requests[0][0].mode == "verify" and d.decider.requests[0][0].claim == "C-1"
    assert d.actuator.decisions == [(True, "C-1")]  # the presented card goes on to a panel (Wiegand, OSDP)


def test_a_pass_that_cannot_complete_ends_at_the_session_limit():
    d = door(session_limit_s=1.0)
    (record,) = d.daemon.run(frames("dark*15"))
    assert (record.outcome, record.reason) == ("timeout", "session limit")


# -- passes with the active challenge ---------------------------------------------------------
SETTINGS = ChallengeSettings(minimum=1, maximum=3, step_timeout_s=2.0, max_delay_s=1.2)
PERFORM = {Action.BLINK: ["closed", "face"], Action.SMILE: ["smile"]}


def seeded(want: tuple[Action, ...]) -> int:
    """A seed whose challenge asks for ``want`` (what a scripted face can perform)."""
    for seed in range(10_000):
        steps = draw_steps(random.Random(seed), SETTINGS.minimum, SETTINGS.maximum, SETTINGS.step_timeout_s,
                           SETTINGS.max_delay_s)
        if tuple(s.action for s in steps) == want:
            return seed
    raise AssertionError(f"no seed draws {want}")


def performing(seed: int, order: list[Action] | None = None) -> list[str]:
    """The scenes of a cooperative person answering the seeded challenge (or ``order``)."""
    steps = draw_steps(random.Random(seed), SETTINGS.minimum, SETTINGS.maximum, SETTINGS.step_timeout_s,
                       SETTINGS.max_delay_s)
    scenes: list[str] = []
    for step, action in zip(steps, order or [s.action for s in steps]):
        scenes += ["face"] * (int(np.ceil(step.delay_s * FPS)) + 2) + PERFORM[action]
    return scenes


def test_challenge_prompts_on_the_display_and_a_passed_challenge_opens():
    want = (Action.BLINK, Action.SMILE)
    seed = seeded(want)
    gate = Gate()
    d = door(liveness=gate, challenge=ChallengeRunner(SETTINGS, random.Random(seed)), burst_frames=4)
    (record,) = d.daemon.run(frames(*performing(seed)))
    assert record.outcome == "accepted" and d.actuator.openings == [3.0]
    assert d.display.lines == ["Look at the camera", "Blink both eyes", "Look at the camera", "Smile", "Thank you",
                               "Welcome S**** T**"]
    ((judged, challenge),) = gate.calls
    assert judged == 4 and challenge.passed
    assert [step["action"] for step in challenge.summary()["steps"]] == ["blink", "smile"]
    assert d.decider.requests[0][0].liveness["challenge"]["passed"] is True
    assert "challenge" in record.stage_ms


def test_the_wrong_action_fails_the_challenge_with_one_alarm():
    """A recording made for the other order: it smiles when asked to blink."""
    seed = seeded((Action.BLINK, Action.SMILE))
    d = door(liveness=Gate(), challenge=ChallengeRunner(SETTINGS, random.Random(seed)))
    wait = int((SETTINGS.max_delay_s + SETTINGS.step_timeout_s) * FPS) + 5  # until the last step times out
    scenes = performing(seed, order=[Action.SMILE, Action.BLINK]) + ["face"] * wait
    (record,) = d.daemon.run(frames(*scenes), max_passes=1)
    assert (record.outcome, record.reason) == ("rejected", messages.Reason.LIVENESS_FAILED)
    assert kinds(d.sent, "alarm") == [ALARM_LIVENESS_FAILED] and d.decider.requests == []
    assert d.pipeline.extracted == 0 and d.actuator.openings == []
    assert d.display.lines[-2:] == ["Liveness check not completed", LIVENESS_REFUSED_TEXT]
    assert d.sent[0][1].details["challenge"]["passed"] is False


def test_a_still_face_fails_the_challenge_even_when_quality_is_poor():
    seed = seeded((Action.BLINK,))
    d = door(liveness=Gate(), challenge=ChallengeRunner(SETTINGS, random.Random(seed)))
    (record,) = d.daemon.run(frames("dark*60"), max_passes=1)
    assert record.reason == messages.Reason.LIVENESS_FAILED and kinds(d.sent, "alarm") == [ALARM_LIVENESS_FAILED]


def test_the_person_leaving_abandons_the_challenge_and_a_new_one_is_drawn():
    seed = seeded((Action.BLINK,))
    runner = ChallengeRunner(SETTINGS, random.Random(seed))
    d = door(liveness=Gate(), challenge=runner)
    assert d.daemon.run(frames("face*3", "empty*5")) == []
    assert runner.current is None and kinds(d.sent, "alarm") == []
    d.daemon.run(frames("face*2"))
    assert runner.current is not None  # the next attempt has its own draw


def test_a_challenge_without_a_liveness_gate_never_opens():
    seed = seeded((Action.BLINK,))
    d = door(challenge=ChallengeRunner(SETTINGS, random.Random(seed)))
    (record,) = d.daemon.run(frames("face*40"), max_passes=1)
    assert record.reason == messages.Reason.LIVENESS_FAILED and d.actuator.openings == []


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_runner_draws_from_its_random_source(seed):
    a, b = (ChallengeRunner(SETTINGS, random.Random(seed)) for _ in range(2))
    a.observe(None, 0.0)
    b.observe(None, 0.0)
    assert a.current.steps == b.current.steps


def test_a_pass_event_names_the_pseudonym_let_in_and_who_decided():
    """For a person's access request the door log must say whom a pass was about (the
    pseudonym, never a name) and for the audit chain who decided it."""
    subject = "s-0123456789abcdef0123456789abcdef"
    accepted = messages.Decision("0" * 32, True, messages.Reason.MATCH, "S**** T**", 0.0, subject)
    refused = messages.Decision("0" * 32, False, messages.Reason.NO_MATCH)
    d = door(FakeDecider(accepted, refused), liveness=Gate())
    list(d.daemon.run(frames("face*3", "face*3")))
    first, second = [m.details for k, m in d.sent if k == "event"]
    assert (first["subject"], first["decided_by"]) == (subject, "matcher")
    assert "subject" not in second and second["decided_by"] == "matcher"
    cache = FakeDecider(accepted)
    cache.last_source = "local"  # the cache decider says where its answer came from
    d = door(cache, liveness=Gate())
    list(d.daemon.run(frames("face*3")))
    assert [m.details["decided_by"] for k, m in d.sent if k == "event"] == ["cache"]
    d = door(liveness=Gate(live=False, attack=True))
    list(d.daemon.run(frames("face*3")))
    (refusal,) = [m.details for k, m in d.sent if k == "event"]
    assert refusal["decided_by"] == "door" and "subject" not in refusal

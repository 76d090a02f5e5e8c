"""Added time to decision of step-up liveness (``passive+stepup``, issue 15 item 3).

Two measurements, reported as medians:

* **the daemon**: the real edge daemon, pipeline, liveness checker and matching rules on a Yale
  face replayed from a folder *in real time* at the camera's frame rate: seconds from the first
  face frame to the decision, without step-up (``passive+motion``) and with it (the band set
  above the face's own score, so a challenge is asked; the draws the Yale expressions can answer:
  blink and smile, in either order);
* **the challenge's own timing** over every draw (1-3 actions, random pauses, step timeouts) for a
  cooperative person who starts each action ``reaction_s`` after its prompt is shown, simulated
  at the frame rate with the challenge's own judge (synthetic blendshapes and head pose), and the
  time until a presentation that never answers is refused (a step timeout).

Run: ``python -m appliance.bench.stepup_bench [--fps 5] [--repeats 3] [--draws 2000]``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import shutil
import tempfile
import time
from pathlib import Path
from statistics import median

import numpy as np

from appliance import paths
from appliance.capture.images import read_image
from appliance.capture.sources import FolderReplaySource
from appliance.config import load_config
from appliance.edge.challenge_runner import ChallengeRunner, ChallengeSettings
from appliance.edge.daemon import EdgeDaemon, EdgeSettings
from appliance.edge.hardware import ConsoleDisplay, LogActuator
from appliance.liveness.challenge import Action, ActiveChallenge, draw_steps
from appliance.liveness.checker import LivenessChecker
from appliance.liveness.step_up import LEVEL, live_margin
from appliance.matching import Gallery
from appliance.matching.decisions import MatchEngine
from appliance.pipeline import FacePipeline
from appliance.protocol import messages
from appliance.vision.types import Face, HeadPose

FPS = 5.0  # a door camera's pass-loop rate on a small device (the folder source's replay rate)
REACTION_S = 0.7  # prompt shown -> action visible: reaction (~0.25 s) plus moving the head or face
BURST = 5  # frames judged per pass ([liveness] burst_frames as shipped)
SUBJECT = "subject02"  # a Yale face judged live passively; its expressions answer blink and smile
SCENES = {"neutral": "normal.png", "closed": "sleepy.png", "smile": "happy.png"}
PERFORM = {Action.BLINK: ["closed", "neutral"], Action.SMILE: ["smile"]}
ANSWERABLE = ((Action.BLINK,), (Action.SMILE,), (Action.BLINK, Action.SMILE), (Action.SMILE, Action.BLINK))
BAND_ABOVE = 1.0  # the band reaches this far above the face's own margin (log-odds): a challenge is asked
NEUTRAL = {"eyeBlinkLeft": 0.05, "eyeBlinkRight": 0.05, "mouthSmileLeft": 0.05, "mouthSmileRight": 0.05}
ACTED = {  # what the landmarker reports while an action is performed (well past the judge's limits)
    Action.BLINK: ({"eyeBlinkLeft": 0.9, "eyeBlinkRight": 0.9}, (0.0, 0.0)),
    Action.SMILE: ({"mouthSmileLeft": 0.9, "mouthSmileRight": 0.9}, (0.0, 0.0)),
    Action.TURN_LEFT: ({}, (25.0, 0.0)), Action.TURN_RIGHT: ({}, (-25.0, 0.0)),
    Action.LOOK_UP: ({}, (0.0, -18.0)), Action.LOOK_DOWN: ({}, (0.0, 18.0)),
}


def _face(action: Action | None) -> Face:
    shapes, (yaw, pitch) = ACTED[action] if action is not None else ({}, (0.0, 0.0))
    return Face((0.0, 0.0, 100.0, 100.0), np.zeros((5, 2), np.float32), 0.9, blendshapes={**NEUTRAL, **shapes},
                pose=HeadPose(yaw, pitch, 0.0))


def simulate(settings: ChallengeSettings, fps: float, reaction_s: float | None, rng: random.Random) -> float:
    """Seconds from the challenge's first frame to its end for one draw; ``reaction_s`` None: the
    presentation never answers (a photo, a replay of another draw) and waits for the timeout."""
    steps = draw_steps(rng, settings.minimum, settings.maximum, settings.step_timeout_s, settings.max_delay_s)
    challenge = ActiveChallenge(steps, 0.0)
    shown: dict[int, float] = {}  # step index -> time its prompt reached the screen
    t, blinked = 0.0, False
    while not challenge.done:
        index = len([r for r in challenge.results if r.outcome == "passed"])
        action = None
        if reaction_s is not None and index in shown and t >= shown[index] + reaction_s:
            action = steps[index].action
            if action is Action.BLINK:  # closed for one frame, then open again
                action, blinked = (None, False) if blinked else (action, True)
        guidance = challenge.observe(_face(action), t)
        if index < len(steps) and guidance == steps[index].action.guidance and index not in shown:
            shown[index], blinked = t, False
        t += 1.0 / fps
    return t - 1.0 / fps


class _Decider:
    """The matching rules over a one-person gallery (the subject's own template)."""

    def __init__(self, pipeline: FacePipeline, image: np.ndarray):
        (extraction,) = pipeline.extract([pipeline.analyze(image)])
        template = extraction.template
        self.gallery = Gallery(template.pack_id, template.pack_version, len(template.vector))
        self.gallery.load(["s-yale"], template.vector[None, :])
        self.engine = MatchEngine(self.gallery, pipeline.threshold, lambda claim: None)

    def request(self, request: messages.MatchRequest, pack: tuple[str, str]) -> messages.Decision:
        from appliance.vision.templates import Template

        verdict = self.engine.decide(request.device_id, Template(request.vector(), *pack), request.claim, 0.0)
        return messages.Decision(request.request_id, verdict.accepted, verdict.reason)


def _seed_for(settings: ChallengeSettings, want: tuple[Action, ...], start: int) -> int:
    for seed in range(start, start + 100_000):
        if tuple(s.action for s in draw_steps(random.Random(seed), settings.minimum, settings.maximum,
                                              settings.step_timeout_s, settings.max_delay_s)) == want:
            return seed
    raise RuntimeError(f"no seed draws {want}")


def _folder(root: Path, scenes: list[str], yale: Path) -> Path:
    folder = Path(tempfile.mkdtemp(dir=root))
    for index, scene in enumerate(scenes):
        shutil.copy(yale / SUBJECT / SCENES[scene], folder / f"{index:03d}.png")
    return folder


def _time_to_decision(pipeline, checker, runner, decider, folder: Path, fps: float) -> tuple[float, str]:
    daemon = EdgeDaemon(EdgeSettings("bench-door", burst_frames=BURST, cool_down_s=0.0), pipeline, decider,
                        liveness=checker, actuator=LogActuator(), display=ConsoleDisplay(), challenge=runner)
    first: list[float] = []

    def frames():
        for frame in FolderReplaySource(folder, fps=fps).frames():  # paced in real time
            first.append(frame.monotonic)
            yield frame

    for record in daemon.run_iter(frames(), max_passes=1):
        return time.monotonic() - first[0], record.outcome
    raise RuntimeError("no decision")


def daemon_medians(fps: float, repeats: int, settings: ChallengeSettings) -> dict:
    config = load_config()
    pipeline = FacePipeline(config)
    pipeline.load()
    yale = paths.shared_dir() / "data" / "faces" / "yale"
    image = read_image(yale / SUBJECT / "normal.png")
    base = LivenessChecker(dataclasses.replace(config.liveness, level="passive+motion"), pipeline.registry)
    first = base.judge([image] * BURST, [pipeline.analyze(image).face] * BURST)
    band = live_margin(first.score, first.threshold) + BAND_ABOVE
    stepup = LivenessChecker(dataclasses.replace(config.liveness, level=LEVEL, step_up_margin=band),
                             pipeline.registry, calibration=base.calibration)
    decider = _Decider(pipeline, image)
    out: dict = {"without": [], "with": [], "outcomes": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for repeat in range(repeats):
            seconds, outcome = _time_to_decision(pipeline, base, None, decider,
                                                 _folder(root, ["neutral"] * (BURST + 2), yale), fps)
            out["without"].append(seconds)
            out["outcomes"].append(outcome)
            for want in ANSWERABLE:
                seed = _seed_for(settings, want, 1000 * repeat)
                steps = draw_steps(random.Random(seed), settings.minimum, settings.maximum, settings.step_timeout_s,
                                   settings.max_delay_s)
                scenes = ["neutral"] * BURST
                for step in steps:
                    scenes += ["neutral"] * (math.ceil((step.delay_s + REACTION_S) * fps) + 1) + PERFORM[step.action]
                scenes += ["neutral"] * 3
                runner = ChallengeRunner(settings, random.Random(seed), step_up=True)
                folder = _folder(root, scenes, yale)
                seconds, outcome = _time_to_decision(pipeline, stepup, runner, decider, folder, fps)
                out["with"].append(seconds)
                out["outcomes"].append(outcome)
    pipeline.close()
    return {"fps": fps, "band_log_odds": round(band, 2), "runs_without": len(out["without"]),
            "runs_with": len(out["with"]), "median_without_s": round(median(out["without"]), 2),
            "median_with_s": round(median(out["with"]), 2),
            "added_s": round(median(out["with"]) - median(out["without"]), 2), "outcomes": sorted(set(out["outcomes"]))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fps", type=float, default=FPS)
    parser.add_argument("--reaction", type=float, default=REACTION_S, help="seconds from prompt to action")
    parser.add_argument("--repeats", type=int, default=2, help="daemon runs per draw (real time: ~6 s each)")
    parser.add_argument("--draws", type=int, default=2000, help="simulated draws of the challenge")
    args = parser.parse_args(argv)
    config = load_config()
    settings = ChallengeSettings.from_config(config.liveness)
    rng = random.Random(15)
    answered = [simulate(settings, args.fps, args.reaction, rng) for _ in range(args.draws)]
    refused = [simulate(settings, args.fps, None, rng) for _ in range(args.draws)]
    report = {"settings": dataclasses.asdict(settings), "reaction_s": args.reaction,
              "simulated": {"draws": args.draws, "median_answered_s": round(median(answered), 2),
                            "p90_answered_s": round(float(np.quantile(answered, 0.9)), 2),
                            "median_unanswered_refused_s": round(median(refused), 2)},
              "daemon": daemon_medians(args.fps, args.repeats, settings), "load_average": os.getloadavg()}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``appliance edge --liveness active`` as a process, on a real broker with a matcher: a Yale face
replayed from a folder blinks when the (seeded) challenge asks, and the door lets it in."""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys

from offkit import REPO, enroll_real_person, make_site, start_matcher

from appliance.edge.challenge_runner import ChallengeSettings
from appliance.liveness.challenge import Action, draw_steps

DEVICE = "door-a"
SUBJECT = "subject02"  # a Yale face the grey calibration judges live
# `appliance` with one change: the challenge's random source is seeded (argv[1]), so the test
# knows what the door will ask; everything else is the command as a unit runs it
SEEDED_CLI = ("import random, sys\n"
              "import appliance.edge.app as app\n"
              "seed = int(sys.argv.pop(1))\n"
              "app.challenge_random = lambda: random.Random(seed)\n"
              "from appliance.cli.main import main\n"
              "sys.exit(main(sys.argv[1:]))\n")


def blink_seed(config) -> int:
    """A seed whose challenge, with the configured challenge settings, is one blink."""
    s = ChallengeSettings.from_config(config.liveness)
    for seed in range(10_000):
        steps = draw_steps(random.Random(seed), s.minimum, s.maximum, s.step_timeout_s, s.max_delay_s)
        if [step.action for step in steps] == [Action.BLINK]:
            return seed
    raise AssertionError("no seed draws a single blink")


def test_edge_with_active_liveness_lets_a_blinking_face_in(tmp_path, config, pipeline, yale):
    site = make_site(tmp_path / "site", config, people=2)
    matcher = None
    try:
        enroll_real_person(site, pipeline, yale / SUBJECT / "normal.png", "Yale Subject")
        matcher = start_matcher(site, threshold=pipeline.threshold)
        camera = tmp_path / "camera"  # a person who looks, blinks, looks ... (replayed in a loop)
        camera.mkdir()
        for index, scene in enumerate(["normal"] * 4 + ["sleepy"]):
            shutil.copy(yale / SUBJECT / f"{scene}.png", camera / f"{index:03d}.png")
        command = [sys.executable, "-c", SEEDED_CLI, str(blink_seed(config)), "edge", "--site", str(site.folder),
                   "--port", str(site.broker.port), "--host", "127.0.0.1", "--device", DEVICE, "--source", str(camera),
                   "--fps", "5", "--passes", "1", "--liveness", "active", "--cool-down", "0"]
        env = {**os.environ, "APPLIANCE_DATA_DIR": str(tmp_path / "data"), "APPLIANCE__DEVICE__LOOP": "true"}
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, cwd=REPO)
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        lines = result.stdout.splitlines()
        assert lines[0].startswith(f"{DEVICE}: ready (liveness active"), lines
        (passed,) = [line for line in lines if line.split()[1:2] in (["ACCEPTED"], ["REJECTED"], ["ATTACK"],
                                                                      ["UNAVAILABLE"], ["TIMEOUT"])]
        assert passed.split()[1:3] == ["ACCEPTED", "Y***"], result.stdout + result.stderr[-3000:]
        assert lines[-1] == f"{DEVICE}: stopped after 1 passes"
    finally:
        if matcher is not None:
            matcher.stop()
            matcher.store.close()
        site.broker.stop()
        site.data.close()

"""``appliance edge --liveness active`` as a process, on a real broker with a matcher: a Yale face
replayed from a folder blinks when the (seeded) challenge asks, and the door lets it in - and
the kiosk page it serves on 127.0.0.1 ([kiosk] enabled) shows the prompt and the welcome, and the
lock relay of [door_io] (gpiozero's mock pins) releases, its event reaching the matcher's door log."""
from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from offkit import REPO, enroll_real_person, make_site, start_matcher
from polling import wait_for

from appliance.edge.challenge_runner import ChallengeSettings
from appliance.liveness.challenge import Action, draw_steps
from appliance.ops.updates import Release, Slots, SlotState

DEVICE = "door-a"
UPDATED_PACK = "tiny"  # a pack whose update was cut short before the daemon started
SUBJECT = "subject02"  # a Yale face the grey calibration judges live
RELAY_PIN, DOOR_SENSOR_PIN = 17, 27  # BCM pins of the [door_io] wiring under test
# `appliance` with one change: the challenge's random source is seeded (argv[1]), so the test
# knows what the door will ask; everything else is the command as a unit runs it. At the end it
# says how many objects the daemon took out of the garbage collector's reach (``heap.settle``)
SEEDED_CLI = ("import gc, random, sys\n"
              "import appliance.edge.app as app\n"
              "seed = int(sys.argv.pop(1))\n"
              "app.challenge_random = lambda: random.Random(seed)\n"
              "from appliance.cli.main import main\n"
              "code = main(sys.argv[1:])\n"
              "print(f'frozen objects: {gc.get_freeze_count()}', file=sys.stderr)\n"
              "sys.exit(code)\n")
SETTLED_OBJECTS = 50_000  # the start-up heap of a door with its models loaded: ~120,000 objects


def blink_seed(config) -> int:
    """A seed whose challenge, with the configured challenge settings, is one blink."""
    s = ChallengeSettings.from_config(config.liveness)
    for seed in range(10_000):
        steps = draw_steps(random.Random(seed), s.minimum, s.maximum, s.step_timeout_s, s.max_delay_s)
        if [step.action for step in steps] == [Action.BLINK]:
            return seed
    raise AssertionError("no seed draws a single blink")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _screens(url: str, process: subprocess.Popen, timeout_s: float = 240.0) -> list[dict]:
    """The screens the kiosk page's event stream sends (state, message) until the edge stops."""
    deadline = time.monotonic() + timeout_s
    while process.poll() is None and time.monotonic() < deadline:
        try:
            stream = urllib.request.urlopen(url + "events", timeout=timeout_s)
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)  # the edge loads its models before it serves the page
            continue
        screens, event = [], ""
        with stream:
            try:
                for line in stream:
                    text = line.decode("utf-8").rstrip("\n")
                    if text.startswith("event: "):
                        event = text[7:]
                    elif text.startswith("data: ") and event == "screen":
                        data = json.loads(text[6:])
                        screens.append({"state": data["state"], "message": data["message"]})
            except (ConnectionError, OSError):
                pass
        return screens
    return []


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
        # an update of a pack cut short (state on trial): the daemon self-tests it before its models load
        updated = Slots(tmp_path / "data" / "packs", UPDATED_PACK)
        updated.install(Release("model-pack", UPDATED_PACK, "2.0.0"), {"model.bin": b"\0" * 16})
        updated.activate("2.0.0")
        command = [sys.executable, "-c", SEEDED_CLI, str(blink_seed(config)), "edge", "--site", str(site.folder),
                   "--port", str(site.broker.port), "--host", "127.0.0.1", "--device", DEVICE, "--source", str(camera),
                   "--fps", "5", "--passes", "1", "--liveness", "active", "--cool-down", "0"]
        port = _free_port()
        env = {**os.environ, "APPLIANCE_DATA_DIR": str(tmp_path / "data"), "APPLIANCE__DEVICE__LOOP": "true",
               "APPLIANCE__KIOSK__ENABLED": "true", "APPLIANCE__KIOSK__PORT": str(port),
               # the lock relay and door contact of [door_io] on gpiozero's own mock pins (no GPIO here)
               "GPIOZERO_PIN_FACTORY": "mock", "APPLIANCE__DOOR_IO__RELAY_PIN": str(RELAY_PIN),
               "APPLIANCE__DOOR_IO__DOOR_SENSOR_PIN": str(DOOR_SENSOR_PIN)}
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                                   cwd=REPO)
        screens = _screens(f"http://127.0.0.1:{port}/", process)
        stdout, stderr = process.communicate(timeout=300)
        result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
        assert result.returncode == 0, result.stdout + result.stderr[-3000:]
        # the page followed the pass, in the shipped default language (zh_CN)
        assert {"state": "challenge", "message": "请眨眼"} in screens, screens
        assert {"state": "accepted", "message": "欢迎您,Y*** S******"} in screens, screens
        # not a pack that works: rolled back, and the door started on what it had
        assert updated.state() == SlotState(active=None, previous=None, failed=["2.0.0"]), result.stderr[-3000:]
        assert "an interrupted update is rolled back" in result.stderr
        lines = result.stdout.splitlines()
        assert lines[0].startswith(f"{DEVICE}: ready (liveness active"), lines
        (passed,) = [line for line in lines if line.split()[1:2] in (["ACCEPTED"], ["REJECTED"], ["ATTACK"],
                                                                      ["UNAVAILABLE"], ["TIMEOUT"])]
        assert passed.split()[1:3] == ["ACCEPTED", "Y***"], result.stdout + result.stderr[-3000:]
        assert lines[-1] == f"{DEVICE}: stopped after 1 passes"
        # the daemon settled its start-up heap once built (full collections no longer walk it)
        frozen = [line for line in result.stderr.splitlines() if line.startswith("frozen objects: ")]
        assert frozen and int(frozen[-1].split()[-1]) > SETTLED_OBJECTS, result.stderr[-3000:]
        # the door controller released the lock and its event went through the outbox to the door log
        def released():
            return [e for e in matcher.store.events(DEVICE) if e.kind == "door_released"]

        assert wait_for(released, timeout=10.0), [e.kind for e in matcher.store.events(DEVICE)]
        assert released()[0].details == {"detail": "grant"}
    finally:
        if matcher is not None:
            matcher.stop()
            matcher.store.close()
        site.broker.stop()
        site.data.close()

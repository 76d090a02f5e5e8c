"""The camera gate in the pass loop: a door bound to sensor A (a fixed per-pixel noise pattern on
real shared faces, the binding measured as ``provision camera-bind`` does and saved with the
node files) runs passes on sensor A's frames, and refuses a folder of the same images without
the pattern - replayed as a folder, or injected under the bound camera's own driver identity -
with its own reason, exactly one ``camera_injection`` alarm and "unavailable" on the display.
The door runs the real face pipeline; the decider is the edge kit's."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from edgekit import FakeDecider

from appliance.capture.camera_identity import CameraBinding, CameraIdentity, bind
from appliance.capture.sources import FolderReplaySource
from appliance.edge.camera_gate import ALARM_KIND, CameraGate, gate_from
from appliance.edge.daemon import EdgeDaemon, EdgeSettings
from appliance.edge.hardware import UNAVAILABLE_TEXT, ConsoleDisplay
from appliance.edge.kiosk.screen import State

FRAME_SIDE = 320  # px: the synthetic camera's frames
SENSOR_NOISE = 3.0  # grey levels: the standard deviation of a sensor's fixed pattern
CAMERA = CameraIdentity("v4l2", "HD Pro Webcam C920", "uvcvideo", "1-1.2:1.0", "A1B2C3")
DOOR = "door-1"
STREAM_FRAMES = 12


def sensor(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0.0, SENSOR_NOISE, (FRAME_SIDE, FRAME_SIDE, 1)).astype(np.float32)


def scenes(faces, count: int, skip: int = 0) -> list[np.ndarray]:
    files = sorted((faces / "celeba-dev").glob("*/*.jpg"))[skip:skip + count]
    return [cv2.resize(cv2.imread(str(path)), (FRAME_SIDE, FRAME_SIDE)) for path in files]


def folder(path, images, pattern=None):
    """The frames as lossless files, with the sensor's pattern when the camera took them."""
    path.mkdir()
    for index, image in enumerate(images):
        shot = image if pattern is None else np.clip(image.astype(np.float32) + pattern, 0, 255).astype(np.uint8)
        cv2.imwrite(str(path / f"{index:03d}.png"), shot)
    return FolderReplaySource(path)


@pytest.fixture
def node(tmp_path, faces):
    """The door's node folder holding the binding of sensor A, measured on other scenes."""
    a = sensor(1)
    provisioning = [np.clip(image.astype(np.float32) + a, 0, 255).astype(np.uint8) for image in scenes(faces, 16)]
    bind(CAMERA, provisioning).save(tmp_path / "nodes" / DOOR)
    return tmp_path / "nodes" / DOOR


class Door:
    """A door with the real pipeline whose ``analyze`` calls are counted, and its alarms."""

    def __init__(self, pipeline, monkeypatch):
        self.display, self.sent, self.analysed = ConsoleDisplay(), [], 0
        real = pipeline.analyze

        def counting(image, profile=None):
            self.analysed += 1
            return real(image, profile)

        monkeypatch.setattr(pipeline, "analyze", counting)
        self.daemon = EdgeDaemon(EdgeSettings(DOOR, cool_down_s=0.0), pipeline, FakeDecider(),
                                 display=self.display, emit=lambda kind, message: self.sent.append((kind, message)))

    def run(self, gate: CameraGate | None, source: FolderReplaySource):
        self.daemon.gate = gate
        return self.daemon.run(source.frames())

    def alarms(self):
        return [message for kind, message in self.sent if kind == "alarm" and message.kind == ALARM_KIND]


def test_frames_of_the_bound_sensor_go_to_the_pass_loop(tmp_path, node, faces, pipeline, monkeypatch):
    door = Door(pipeline, monkeypatch)
    camera = folder(tmp_path / "camera", scenes(faces, STREAM_FRAMES, skip=40), sensor(1))
    gate = CameraGate(DOOR, "enforce", CameraBinding.load(node), CAMERA, door.daemon._emit, door.display,
                      check_every=1)  # every frame checked: none may fail
    passes = door.run(gate, camera)
    assert door.analysed == STREAM_FRAMES and door.alarms() == [] and gate.reason == ""
    assert passes and gate.correlation > gate.binding.threshold


@pytest.mark.parametrize("disguise", ["folder", "bound camera's identity"])
def test_an_injected_stream_is_refused_with_one_alarm(tmp_path, node, faces, pipeline, monkeypatch, disguise):
    door = Door(pipeline, monkeypatch)
    injected = folder(tmp_path / "injected", scenes(faces, STREAM_FRAMES, skip=40))  # no sensor pattern
    if disguise == "folder":
        gate = gate_from(DOOR, "enforce", node, injected, door.daemon._emit, door.display)
        reason = "replayed file or folder"
    else:  # a virtual camera that reports the bound camera's name, bus and serial
        gate = CameraGate(DOOR, "enforce", CameraBinding.load(node), CAMERA, door.daemon._emit, door.display)
        reason = "different sensor: noise correlation"
    passes = door.run(gate, injected)
    assert passes == [] and door.analysed == 0 and reason in gate.reason
    [alarm] = door.alarms()
    assert reason in alarm.details["reason"] and alarm.device_id == DOOR
    assert door.display.screens[-1].state is State.UNAVAILABLE and door.display.lines[-1] == UNAVAILABLE_TEXT
    assert gate.status() == {"camera_binding": "enforce", "camera_refused": gate.reason}


def test_warn_mode_raises_the_alarm_but_uses_the_frames(tmp_path, node, faces, pipeline, monkeypatch):
    door = Door(pipeline, monkeypatch)
    injected = folder(tmp_path / "injected", scenes(faces, STREAM_FRAMES, skip=40))
    door.run(gate_from(DOOR, "warn", node, injected, door.daemon._emit, door.display), injected)
    assert door.analysed == STREAM_FRAMES and len(door.alarms()) == 1


def test_an_unbound_door_is_refused_and_off_needs_no_binding(tmp_path, faces):
    display, source = ConsoleDisplay(), folder(tmp_path / "camera", scenes(faces, 2))
    assert gate_from(DOOR, "off", tmp_path / "nowhere", source, lambda *sent: None, display) is None
    gate = CameraGate(DOOR, "enforce", None, CAMERA, lambda *sent: None, display)
    assert "unbound" in gate.source_reason


def test_the_refusal_reaches_appliance_health(tmp_path, faces):
    """The gate's status goes into the heartbeat's record; ``appliance health`` reads it there."""
    from appliance.ops.health import FAIL, check_daemon
    from appliance.ops.notify import Watchdog

    source = folder(tmp_path / "camera", scenes(faces, 2))
    gate = gate_from(DOOR, "enforce", tmp_path / "nowhere", source, lambda *sent: None, ConsoleDisplay())
    gate.admit(next(source.frames()))
    Watchdog(status_file=tmp_path / "status.json").heartbeat(model_loaded=True, **gate.status())
    camera = {check.name: check for check in check_daemon("edge door-1", tmp_path / "status.json", 60.0)}["camera"]
    assert camera.status == FAIL and "replayed file or folder" in camera.detail


def test_the_edge_app_in_enforce_mode_refuses_a_folder_source(tmp_path, config, faces):
    """``EdgeApp.build`` on a provisioned site (real broker, SQLCipher outbox): the configured
    folder source is refused, one alarm waits in the outbox, the status record says why."""
    import dataclasses
    import threading

    from offkit import make_site

    from appliance.edge.app import EdgeApp
    from appliance.ops.health import FAIL, check_daemon

    site = make_site(tmp_path / "site", config, people=1)
    try:
        source = tmp_path / "injected"
        folder(source, scenes(faces, STREAM_FRAMES, skip=40))
        device = dataclasses.replace(config.device, name="door-a", source=str(source), camera_binding="enforce")
        door_config = dataclasses.replace(config, device=device, liveness=dataclasses.replace(config.liveness,
                                                                                              level="off"))
        app = EdgeApp.build(door_config, site, status_file=tmp_path / "status.json")
        app.watchdog.interval_s = 1e-6  # a status record on every frame: this stream ends within one period
        try:
            passes = app.daemon.run(app.source.frames(), threading.Event())
            alarms = [event for event in app.door.outbox.pending() if event.kind == "alarm"]
        finally:
            app.close()
    finally:
        site.broker.stop()
        site.data.close()
    assert passes == [] and len(alarms) == 1 and "replayed" in app.daemon.gate.reason
    camera = {check.name: check for check in check_daemon("edge door-a", tmp_path / "status.json", 60.0)}["camera"]
    assert camera.status == FAIL and "replayed file or folder" in camera.detail

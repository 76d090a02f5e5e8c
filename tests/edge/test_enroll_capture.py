"""Enrollment from the door camera, without a broker: the capture handler with the real face
pipeline and the real liveness checker (MiniFASNet, the repo's calibration, the configured
level) over folder sources of real images (faces, darkened faces, pictures without a face,
presentation attacks: the shared spoof sample and synthetic print, screen and replay bursts
made from real photos), requests sealed by a console as on the wire, answers opened as the
console opens them and judged again by the central side (``capture_client.as_enrollment``);
and the daemon handing its camera to a capture (no pass, the door shut) and taking it back."""
from __future__ import annotations

import dataclasses
import random
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from edgekit import FakeDecider
from polling import wait_for
from test_door_pass import FPS, SETTINGS, replay, seed_for, sequence, yale_folder  # the door's challenge scenes

from appliance.capture.images import read_image
from appliance.capture.sources import FolderReplaySource
from appliance.edge.daemon import EdgeDaemon, EdgeSettings
from appliance.edge.challenge_runner import ChallengeRunner
from appliance.edge.door_pass import ALARM_ATTACK, ALARM_LIVENESS_FAILED
from appliance.edge.enroll_capture import (
    CAPTURE_TEXT, DONE_TEXT, STEP_IN_TEXT, CaptureLiveness, EnrollCapture, session_for,
)
from appliance.edge.hardware import ConsoleDisplay, LogActuator
from appliance.edge.kiosk.screen import ScreenState
from appliance.enrollment import MAX_ENROLLMENT_CAPTURES
from appliance.errors import ApplianceError, ErrorCode
from appliance.evaluation.synthetic import synthesize_sequence
from appliance.liveness.challenge import Action
from appliance.liveness.evidence import Ed25519Signer, from_transport, sign_summary, verify
from appliance.matcher.capture_client import as_enrollment
from appliance.protocol import messages, topics
from appliance.protocol.capture_messages import (
    BUSY, EVIDENCE_PURPOSE, LIVENESS_FAILED, LIVENESS_FAILED_GUIDANCE, MAX_CAPTURE_FRAMES, NO_FACE, OK, REFUSED,
    TIMEOUT, CaptureRequest, CaptureResult,
)
from appliance.protocol.directory import CONSOLE, MATCHER, NodeDirectory
from appliance.security.envelope import MessageType, NodeKeys, Opener, RejectReason, Sealer
from appliance.transport.mqtt import Incoming

DEVICE, CONSOLE_NAME = "door-a", "console-1"
PERSON, OTHER = "id07201", "id07212"
DARK = 0.25  # a face this much darker is still found, but fails the enrollment profile's exposure
BURST = 3  # face frames judged together per capture (the door's least: edge.app.MIN_BURST_FRAMES)
ATTACK_FRAMES = 9


class Wire:
    """The keys of a small site, the door's capture handler, and what it published."""

    def __init__(self, tmp_path: Path, pipeline, checker, allowed: bool = True, display: ConsoleDisplay | None = None,
                 liveness: bool = True, challenge: ChallengeRunner | None = None):
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.keys = {name: NodeKeys.generate(name) for name in (DEVICE, "door-b", CONSOLE_NAME, "matcher-1")}
        self.directory = NodeDirectory.load(tmp_path / "directory.json")
        for name, role in ((DEVICE, "device"), ("door-b", "device"), (CONSOLE_NAME, CONSOLE), ("matcher-1", MATCHER)):
            self.directory.add(self.keys[name], role)
        self.published: list[tuple[str, bytes]] = []
        self.alarms: list[messages.Message] = []
        self.display = display or ConsoleDisplay()
        self.signer = signer_of(self.keys[DEVICE])  # the device key, as edge.app signs pass evidence
        check = CaptureLiveness(checker, self.signer, checker.calibration_id, BURST, challenge) if liveness else None
        self.handler = EnrollCapture(DEVICE, pipeline, self.display, allowed, self.keys[DEVICE], self.directory,
                                     lambda topic, payload: self.published.append((topic, payload)),
                                     capture_interval_s=0.0, liveness=check,
                                     emit=lambda kind, message: self.alarms.append(message)).start()
        self.console = Opener(self.keys[CONSOLE_NAME], [self.keys[DEVICE].public()])
        self.sealers = {name: Sealer(keys) for name, keys in self.keys.items()}

    def sealed(self, request: CaptureRequest, sender: str = CONSOLE_NAME) -> Incoming:
        payload = self.sealers[sender].seal(self.keys[DEVICE].public(), MessageType.CAPTURE_REQUEST,
                                            request.encode())
        return Incoming(topics.device_topic(DEVICE, topics.ENROLL_CAPTURE), payload, 1, False)

    def answer(self, count: int = 1) -> CaptureResult:
        assert wait_for(lambda: len(self.published) >= count), self.handler.stats
        topic, payload = self.published[count - 1]
        assert topic == topics.device_topic(DEVICE, topics.ENROLL_RESULT)
        opened = self.console.open(payload, expect=MessageType.CAPTURE_RESULT)
        return messages.decode(opened.payload, CaptureResult)

    def close(self) -> None:
        self.handler.stop()


def signer_of(keys: NodeKeys) -> Ed25519Signer:
    return Ed25519Signer(keys.signing.private_bytes_raw(), key_id=keys.node_id)


@pytest.fixture
def wire(tmp_path, pipeline, checker):
    made = Wire(tmp_path, pipeline, checker)
    yield made
    made.close()


def request(frames: int = 3, timeout_s: float = 60.0, device: str = DEVICE) -> CaptureRequest:
    return CaptureRequest(messages.new_id(), device, frames, timeout_s, "acct-operator", "v1")


def folder(tmp_path: Path, name: str, images: list[np.ndarray]) -> Path:
    out = tmp_path / name
    out.mkdir()
    for index, image in enumerate(images):
        cv2.imwrite(str(out / f"{index:03d}.jpg"), image)
    return out


def faces_of(faces: Path, person: str, count: int, skip: int = 0) -> list[np.ndarray]:
    return [read_image(path) for path in sorted((faces / "celeba-dev" / person).glob("*.jpg"))[skip:skip + count]]


def no_face_pictures(count: int) -> list[np.ndarray]:
    """Pictures a camera sees when nobody is there: gradients and textures, no face."""
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, 320, dtype=np.float32)
    pictures = []
    for index in range(count):
        base = np.add.outer(ramp[:240] * (index % 3) / 3, ramp)[..., None] / 2
        noise = rng.normal(0, 20, (240, 320, 3))
        pictures.append(np.clip(base + noise, 0, 255).astype(np.uint8))
    return pictures


def frames(path: Path, loop: bool = False):
    return FolderReplaySource(str(path), loop=loop).frames()


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_the_policy_bounds_are_the_protocol_bounds():
    assert MAX_CAPTURE_FRAMES == MAX_ENROLLMENT_CAPTURES
    assert (session_for(9).attempts, session_for(9).captures_per_attempt) == (3, 3)
    assert (session_for(2).attempts, session_for(2).captures_per_attempt) == (1, 2)


def test_real_faces_give_one_sealed_reference_template_of_that_person(wire, tmp_path, pipeline, faces, config):
    camera = folder(tmp_path, "camera", faces_of(faces, PERSON, 6))
    wire.handler.on_message(wire.sealed(request(frames=3)))
    assert wire.handler.active and wire.display.lines == [STEP_IN_TEXT]
    wire.handler.run(frames(camera, loop=True))
    result = wire.answer()
    assert result.status == OK and result.device_id == DEVICE and result.used >= 1
    assert (result.pack_id, result.pack_version) == (pipeline.embedder_pack.id, pipeline.embedder_pack.version)
    assert len(result.quality) == result.used and result.attempts == 1
    assert not wire.handler.active
    # what the display said, capture by capture
    assert wire.display.lines[1] == CAPTURE_TEXT.format(n=2, total=3) and wire.display.lines[-1] == DONE_TEXT
    # the template is that person's face: close to another photo of them, far from someone else
    same = pipeline.template(faces_of(faces, PERSON, 1, skip=8)[0])[1].vector
    other = pipeline.template(faces_of(faces, OTHER, 1)[0])[1].vector
    assert cosine(result.vector(), same) > pipeline.threshold > cosine(result.vector(), other)
    # each capture used comes with its signed liveness evidence, bound to this request
    assert len(result.liveness) == result.used
    for number, form in enumerate(result.liveness, start=1):
        summary = verify(from_transport(form), wire.signer.public_key_bytes())
        assert summary["live"] is True and summary["level"] == config.liveness.level
        assert (summary["purpose"], summary["request_id"], summary["capture"], summary["frames"]) == \
            (EVIDENCE_PURPOSE, result.request_id, number, BURST)
    # ... which the central side judges again before the desk gets the template
    enrollment = as_enrollment(result, wire.directory, config.liveness.level)
    assert enrollment.enrolled and enrollment.used == result.used
    np.testing.assert_allclose(enrollment.template.vector, result.vector())
    # never an image: the answer is a small message of one template and its scores
    assert len(wire.published[0][1]) < 16 * 1024


def test_darkened_faces_are_rejected_with_reason_and_guidance_shown_per_capture(wire, tmp_path, pipeline, faces):
    dark = [(image * DARK).astype(np.uint8) for image in faces_of(faces, PERSON, 9)]
    wire.handler.on_message(wire.sealed(request(frames=9)))
    wire.handler.run(frames(folder(tmp_path, "dark", dark), loop=True))
    result = wire.answer()
    assert result.status == OK and result.template == "" and result.used == 0 and result.attempts == 3
    assert [r["capture"] for r in result.rejections] == list(range(1, 10))
    for rejection in result.rejections:
        assert "too_dark" in rejection["reason"] and "light" in rejection["guidance"]
    shown = wire.display.lines[1:-1]  # after "step in", before "finished": the guidance of each rejection
    assert shown == [rejection["guidance"] for rejection in result.rejections[:-1]]


def test_pictures_without_a_face_are_no_captures_and_end_in_no_face(wire, tmp_path, pipeline):
    camera = folder(tmp_path, "empty", no_face_pictures(4))
    wire.handler.on_message(wire.sealed(request(frames=3, timeout_s=1.5)))
    wire.handler.run(frames(camera, loop=True))
    result = wire.answer()
    assert result.status == NO_FACE and result.rejections == [] and result.template == ""
    assert wire.display.lines == [STEP_IN_TEXT, DONE_TEXT]


def test_the_time_limit_ends_a_capture_even_when_no_frame_comes(wire, tmp_path, pipeline, faces):
    wire.handler.on_message(wire.sealed(request(frames=9, timeout_s=3.0)))
    dark = [(image * DARK).astype(np.uint8) for image in faces_of(faces, PERSON, 2 * BURST)]
    wire.handler.run(frames(folder(tmp_path, "two", dark)))  # two rejected captures, then the camera stalls
    assert wire.handler.active
    result = wire.answer()  # the worker's clock ends it
    assert result.status == TIMEOUT and [r["capture"] for r in result.rejections] == [1, 2]
    assert not wire.handler.active


def test_a_second_request_is_busy_and_a_door_that_does_not_capture_refuses(wire, tmp_path, pipeline, checker):
    first, second = request(), request()
    wire.handler.on_message(wire.sealed(first))
    wire.handler.on_message(wire.sealed(second))
    busy = wire.answer()
    assert (busy.request_id, busy.status, busy.template) == (second.request_id, BUSY, "")
    assert wire.handler.active  # the first one goes on

    for name, changes in (("closed", {"allowed": False}), ("no-liveness", {"liveness": False})):
        closed = Wire(tmp_path / name, pipeline, checker, **changes)
        try:
            closed.handler.on_message(closed.sealed(request()))
            assert closed.answer().status == REFUSED and not closed.handler.active, name
            assert closed.display.lines == []  # nothing shown, nothing captured
        finally:
            closed.close()


@pytest.mark.parametrize("sender", ["door-b", "matcher-1"])
def test_a_request_signed_by_anyone_but_a_console_is_dropped(wire, sender):
    wire.handler.on_message(wire.sealed(request(), sender=sender))
    assert not wire.handler.active and wire.handler.stats["rejected_requests"] == 1
    assert wire.handler.opener.rejections[RejectReason.UNKNOWN_SENDER] == 1
    time.sleep(0.3)
    assert wire.published == []


def test_a_replayed_or_misaddressed_request_is_dropped(wire):
    incoming = wire.sealed(request(frames=2, timeout_s=0.5))
    wire.handler.on_message(incoming)
    assert wire.answer().status == NO_FACE  # no frame came: ended by the clock
    wire.handler.on_message(incoming)  # the same envelope again
    assert wire.handler.opener.rejections[RejectReason.REPLAYED_COUNTER] == 1
    wire.handler.on_message(wire.sealed(request(device="door-b")))  # sealed to door-a, naming door-b
    assert wire.handler.stats["rejected_requests"] == 2 and not wire.handler.active
    other_topic = wire.sealed(request())
    wire.handler.on_message(Incoming(topics.device_topic("door-b", topics.ENROLL_CAPTURE), other_topic.payload, 1,
                                     False))
    assert wire.handler.stats["rejected_requests"] == 3 and len(wire.published) == 1


class OrderedDecider(FakeDecider):
    """Records, in one list with what the display said, when a pass asked for a decision."""

    def __init__(self, order: list[str]):
        super().__init__()
        self.order = order

    def request(self, request, pack):
        self.order.append("pass")
        return super().request(request, pack)


class OrderedDisplay(ConsoleDisplay):
    """Notes the end of the capture, and how often the door had opened by then."""

    def __init__(self, order: list[str], actuator: LogActuator):
        super().__init__()
        self.order, self.actuator = order, actuator

    def show(self, screen: ScreenState) -> None:
        super().show(screen)
        if screen.message == DONE_TEXT:
            self.order.append(f"capture over (door opened {self.actuator.openings} times)")


def test_the_daemon_lends_its_camera_to_a_capture_and_the_door_stays_shut(tmp_path, pipeline, checker, faces):
    order: list[str] = []
    actuator = LogActuator()
    display = OrderedDisplay(order, actuator)
    made = Wire(tmp_path, pipeline, checker, display=display)
    camera = folder(tmp_path, "camera", faces_of(faces, PERSON, 4))
    daemon = EdgeDaemon(EdgeSettings(DEVICE, burst_frames=1, cool_down_s=0.0), pipeline, OrderedDecider(order),
                        actuator=actuator, display=display, capture=made.handler)
    try:
        made.handler.on_message(made.sealed(request(frames=3)))
        passes = daemon.run(frames(camera, loop=True), threading.Event(), max_passes=1)
        assert made.answer().status == OK
        assert order == ["capture over (door opened 0 times)", "pass"], order
        assert len(passes) == 1 and actuator.openings == 1  # after the capture, passes resumed
        assert display.lines.index(DONE_TEXT) < len(display.lines) - 1  # the pass spoke after it
    finally:
        actuator.lock()
        made.close()


# -- liveness: a photo or a screen held up to the door is never enrolled -----------------------
def attack_folder(tmp_path: Path, faces: Path, spoof_samples: Path, attack: str) -> Path:
    """A camera that sees only the attack: the shared printed-photo sample, or a synthetic
    print / screen / replay of the person's real photos moved by hand in front of the door."""
    if attack == "image_F2":
        return folder(tmp_path, attack, [read_image(spoof_samples / f"{attack}.jpg")] * ATTACK_FRAMES)
    live = faces_of(faces, PERSON, 5)
    return folder(tmp_path, attack, synthesize_sequence(live, attack, seed=1, frames=ATTACK_FRAMES))


@pytest.mark.parametrize("attack", ["image_F2", "print", "screen", "replay"])
def test_a_presentation_attack_ends_the_capture_as_liveness_failed(wire, tmp_path, faces, spoof_samples, config,
                                                                    attack):
    wire.handler.on_message(wire.sealed(request(frames=3)))
    wire.handler.run(frames(attack_folder(tmp_path, faces, spoof_samples, attack), loop=True))
    result = wire.answer()
    assert result.status == LIVENESS_FAILED and result.template == "" and result.used == 0, result
    assert not wire.handler.active and wire.display.lines[-1] == LIVENESS_FAILED_GUIDANCE
    # the failing capture's evidence comes back signed (for the audit), and one alarm went out
    (form,) = result.liveness
    summary = verify(from_transport(form), wire.signer.public_key_bytes())
    assert summary["live"] is False and summary["attack"] is True and summary["reasons"]
    assert summary["request_id"] == result.request_id
    assert [(a.kind, a.details) for a in wire.alarms] == [(ALARM_ATTACK, form)]
    # the central side enrolls nothing and says why, with the guidance for the person
    with pytest.raises(ApplianceError) as refused:
        as_enrollment(result, wire.directory, config.liveness.level)
    assert refused.value.code is ErrorCode.LIVENESS_FAILED and LIVENESS_FAILED_GUIDANCE in refused.value.detail


def test_a_photo_after_live_captures_still_ends_it_with_nothing_to_enroll(wire, tmp_path, faces, spoof_samples):
    """The attacker's own face first, then the victim's photo: the accepted live capture is
    not sent back either (a fused template of both would open for the victim)."""
    live = faces_of(faces, OTHER, BURST)
    photo = synthesize_sequence(faces_of(faces, PERSON, 5), "print", seed=1, frames=ATTACK_FRAMES)
    wire.handler.on_message(wire.sealed(request(frames=3)))
    wire.handler.run(frames(folder(tmp_path, "mixed", live + photo)))
    result = wire.answer()
    assert result.status == LIVENESS_FAILED and result.template == "" and len(result.liveness) == 1
    assert CAPTURE_TEXT.format(n=2, total=3) in wire.display.lines  # the first capture was taken


@pytest.fixture
def live_result(wire, tmp_path, faces) -> CaptureResult:
    wire.handler.on_message(wire.sealed(request(frames=2)))
    wire.handler.run(frames(folder(tmp_path, "live", faces_of(faces, PERSON, 2 * BURST))))
    result = wire.answer()
    assert result.status == OK and result.used == 2 and len(result.liveness) == 2, result
    return result


def resigned(wire: Wire, form: dict, signer: Ed25519Signer | None = None, **changes) -> dict:
    """The evidence's summary with ``changes``, signed again (by the device unless told)."""
    summary = {**from_transport(form).summary, **changes}
    summary.pop("version")
    return sign_summary(summary, signer or wire.signer).as_dict()


def refusal(result: CaptureResult, wire: Wire, level: str, **kwargs) -> str:
    with pytest.raises(ApplianceError) as refused:
        as_enrollment(result, wire.directory, level, **kwargs)
    assert refused.value.code is ErrorCode.LIVENESS_FAILED
    return refused.value.detail


def test_the_central_side_never_takes_the_doors_word_alone(wire, live_result, config):
    level = config.liveness.level
    assert as_enrollment(live_result, wire.directory, level).enrolled
    first, second = live_result.liveness
    replace = dataclasses.replace
    # a door with liveness off (or one that leaves the evidence out): refused whatever the site's level
    for site_level in (level, "off"):
        assert "no liveness evidence" in refusal(replace(live_result, liveness=[]), wire, site_level)
    assert "1 liveness evidence for 2" in refusal(replace(live_result, liveness=[first]), wire, level)
    # evidence of another request, a door pass's evidence, evidence signed by another door
    other = replace(live_result, request_id=messages.new_id())
    assert "evidence_of_another_request" in refusal(other, wire, level)
    door_pass = resigned(wire, second, purpose="door_pass")
    assert "evidence_of_another_request" in refusal(replace(live_result, liveness=[first, door_pass]), wire, level)
    forged = resigned(wire, second, signer=signer_of(wire.keys["door-b"]))
    assert "signature_invalid" in refusal(replace(live_result, liveness=[first, forged]), wire, level)
    # a door that says "live" against its own scores, stale evidence, a level below the site's
    lying = resigned(wire, second, score=0.01)
    assert "score_below_threshold" in refusal(replace(live_result, liveness=[first, lying]), wire, level)
    later = time.time() + 3600
    assert "evidence_stale" in refusal(live_result, wire, level, clock=lambda: later)
    assert "level_below_policy" in refusal(live_result, wire, "active")
    # a site running its doors without liveness still enrolls from a camera only with evidence
    assert as_enrollment(live_result, wire.directory, "off").enrolled


# -- level active: a challenge for each capture, as at a door pass --------------------------
ASKED = (Action.BLINK, Action.SMILE)  # what the Yale subject can perform


@pytest.fixture
def active_wire(tmp_path, pipeline, active_checker):
    made = Wire(tmp_path / "active", pipeline, active_checker,
                challenge=ChallengeRunner(SETTINGS, random.Random(seed_for(ASKED))))
    yield made
    made.close()


def test_at_level_active_the_capture_is_the_end_of_a_performed_challenge(active_wire, tmp_path, yale):
    seed = seed_for(ASKED)
    active_wire.handler.on_message(active_wire.sealed(request(frames=1)))
    active_wire.handler.run(replay(yale_folder(tmp_path, yale, sequence(seed, list(ASKED)))))
    result = active_wire.answer()
    assert result.status == OK and result.used == 1, result
    assert ["Blink both eyes", "Smile"] == [line for line in active_wire.display.lines if line in ("Blink both eyes",
                                                                                                  "Smile")]
    summary = verify(from_transport(result.liveness[0]), active_wire.signer.public_key_bytes())
    assert summary["level"] == "active" and summary["challenge"]["order"] == ["blink", "smile"]
    assert as_enrollment(result, active_wire.directory, "active").enrolled  # human-speed answers


def test_at_level_active_a_replay_that_misses_the_challenge_is_liveness_failed(active_wire, tmp_path, yale):
    """A recording made for the other order smiles when asked to blink."""
    seed = seed_for(ASKED)
    until_timeout = int((SETTINGS.max_delay_s + SETTINGS.step_timeout_s) * FPS) + 3
    scenes = sequence(seed, [Action.SMILE, Action.BLINK]) + ["neutral"] * until_timeout
    active_wire.handler.on_message(active_wire.sealed(request(frames=1)))
    active_wire.handler.run(replay(yale_folder(tmp_path, yale, scenes)))
    result = active_wire.answer()
    assert result.status == LIVENESS_FAILED and result.template == "", result
    assert [a.kind for a in active_wire.alarms] == [ALARM_LIVENESS_FAILED]
    summary = verify(from_transport(result.liveness[0]), active_wire.signer.public_key_bytes())
    assert "challenge_not_completed" in summary["reasons"]

"""The appliance end to end on a real broker, real stores and real models: an edge daemon fed
by replayed camera frames, a matcher service, and an auditor watching every payload."""
from __future__ import annotations

import queue
import time

import numpy as np
import pytest

from appliance.capture.images import read_image
from appliance.capture.sources import FolderReplaySource
from appliance.edge.daemon import EdgeDaemon, EdgeSettings
from appliance.edge.hardware import ConsoleDisplay, CredentialReader, LogActuator
from appliance.edge.link import MatcherLink
from appliance.protocol import messages, topics
from appliance.security.envelope import MessageType
from sitekit import frames_folder, passing_image, start_matcher
from appliance.transport.mqtt import MqttEndpoint
from polling import wait_for

@pytest.fixture
def auditor(site):
    inbox: queue.Queue = queue.Queue()
    client = MqttEndpoint(site.mqtt("auditor-1"), on_message=inbox.put, subscriptions=(f"{topics.PREFIX}/#",))
    client.connect()
    yield inbox
    client.close()


def test_enrolled_person_accepted_unknown_rejected_and_nothing_readable_on_the_wire(
    site, pipeline, faces, tmp_path, auditor
):
    matcher = start_matcher(site, pipeline)
    link = MatcherLink("door-a", site.mqtt("door-a"), site.device_keys("door-a"), site.directory)
    link.connect()
    try:
        known = passing_image(pipeline, faces / "celeba-dev" / "id07201", skip=5)
        stranger = passing_image(pipeline, faces / "celeba-dev" / "id07245")
        display, actuator = ConsoleDisplay(), LogActuator()
        sent = []
        daemon = EdgeDaemon(
            EdgeSettings("door-a", cool_down_s=0.0), pipeline, link, actuator=actuator, display=display,
            emit=lambda kind, message: (sent.append(message), link.send(kind, message, MessageType.EVENT)),
        )
        passes = daemon.run(FolderReplaySource(frames_folder(tmp_path, [known, stranger])).frames())
        assert [p.outcome for p in passes] == ["accepted", "rejected"]
        assert passes[0].display_name == "Z**** S**" and actuator.openings == 1
        assert passes[1].reason == messages.Reason.NO_MATCH and passes[1].display_name == ""
        assert "Welcome Z**** S**" in display.lines
        time.sleep(0.5)
        wire = []
        while not auditor.empty():
            wire.append(auditor.get_nowait())
        payloads = [m.payload for m in wire if not m.topic.endswith(topics.AVAILABILITY)]
        assert len(payloads) >= 4  # 2 requests, 2 decisions, events
        probe = np.float32(pipeline.extract([pipeline.analyze(read_image(known))])[0].template.vector[:4]).tobytes()
        for payload in payloads:
            assert payload[:4] == b"FAEV"  # every payload is an envelope
            for plaintext in (b"Zhang", b"score", b"similar", b"accepted", b"template", probe):
                assert plaintext not in payload
        assert matcher.stats["accepted"] == 1 and matcher.stats["rejected"] == 1
    finally:
        link.close()
        matcher.stop()


def test_card_claim_verifies_one_to_one(site, pipeline, faces, tmp_path):
    matcher = start_matcher(site, pipeline)
    link = MatcherLink("door-b", site.mqtt("door-b"), site.device_keys("door-b"), site.directory)
    link.connect()
    try:
        reader = CredentialReader()
        image = passing_image(pipeline, faces / "celeba-dev" / "id07212", skip=5)
        daemon = EdgeDaemon(EdgeSettings("door-b", require_card=True, cool_down_s=0.0), pipeline, link, reader=reader)
        reader.present("C-1002")
        first = daemon.run(FolderReplaySource(frames_folder(tmp_path, [image])).frames())
        reader.present("C-1001")  # someone else's card with this face
        (tmp_path / "again").mkdir()
        second = daemon.run(FolderReplaySource(frames_folder(tmp_path / "again", [image])).frames())
        assert first[0].outcome == "accepted" and first[0].display_name == "王**"
        assert second[-1].outcome == "rejected" and second[-1].reason == messages.Reason.NO_MATCH
    finally:
        link.close()
        matcher.stop()


def test_photo_attack_gives_an_alarm_and_no_request(site, pipeline, shared, faces, tmp_path, config):
    import dataclasses

    from appliance.liveness.checker import LivenessChecker

    matcher = start_matcher(site, pipeline)
    link = MatcherLink("door-a", site.mqtt("door-a"), site.device_keys("door-a"), site.directory)
    link.connect()
    kinds = {"event": MessageType.EVENT, "alarm": MessageType.ALARM, "telemetry": MessageType.TELEMETRY}
    try:
        policy = dataclasses.replace(config.liveness, level="passive")
        checker = LivenessChecker(policy, pipeline.registry)
        sent = []
        daemon = EdgeDaemon(
            EdgeSettings("door-a", cool_down_s=0.0), pipeline, link, liveness=checker,
            emit=lambda kind, message: (sent.append((kind, message)), link.send(kind, message, kinds[kind])),
        )
        attack = shared / "data" / "spoof" / "samples" / "image_F1.jpg"
        couple = faces / "deepface-pairs" / "couple.jpg"
        passes = daemon.run(FolderReplaySource(frames_folder(tmp_path, [attack, couple])).frames())
        assert passes[0].outcome == "attack" and "decision" not in passes[0].stage_ms
        alarms = [m for kind, m in sent if kind == "alarm"]
        # one alarm per attack pass, whatever liveness makes of the second (a web photo)
        assert len(alarms) == sum(p.outcome == "attack" for p in passes) and alarms[0].kind == "presentation_attack"
        assert any(kind == "event" and m.kind == "tailgating" for kind, m in sent)  # two faces at the door
        assert wait_for(lambda: matcher.stats["alarm"] == len(alarms))
        decided = [p for p in passes if "decision" in p.stage_ms]
        assert matcher.stats["accepted"] + matcher.stats["rejected"] == len(decided)
        telemetry = daemon.telemetry_message()
        assert telemetry.pack == "w600k-mbf@1.0.0" and telemetry.frames_per_s > 0
        assert "landmarks" in telemetry.stage_latency_ms
    finally:
        link.close()
        matcher.stop()


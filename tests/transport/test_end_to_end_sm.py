"""The end-to-end tests of ``test_end_to_end`` with the SM crypto suite selected, on a site in
migration: the matcher and door-a on ``crypto_suite = "sm"``, door-b still on the default suite.
Real broker, real stores, real models; the auditor reads every envelope's header off the wire."""
from __future__ import annotations

import dataclasses
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
from appliance.security.envelope import MessageType, RejectReason, Sealer
from appliance.security.envelope_format import parse
from appliance.security.suites import Suite, suites_in_use
from appliance.transport.mqtt import MqttEndpoint
from polling import wait_for
from sitekit import frames_folder, make_site, passing_image, start_matcher

SM_DOOR, DEFAULT_DOOR = "door-a", "door-b"


@pytest.fixture(scope="module")
def sm_config(config):
    return dataclasses.replace(config, security=dataclasses.replace(config.security, crypto_suite="sm"))


@pytest.fixture(scope="module")
def site(tmp_path_factory, pipeline, faces, sm_config):
    """``sitekit.make_site`` with the matcher's configuration on SM, then door-a moved to SM."""
    provisioned = make_site(tmp_path_factory, pipeline, faces, sm_config)
    provisioned.add_device_keys(SM_DOOR, "sm")
    yield provisioned
    provisioned.broker.stop()
    provisioned.data.close()


@pytest.fixture
def auditor(site):
    inbox: queue.Queue = queue.Queue()
    client = MqttEndpoint(site.mqtt("auditor-1"), on_message=inbox.put, subscriptions=(f"{topics.PREFIX}/#",))
    client.connect()
    yield inbox
    client.close()


def _wire(inbox: queue.Queue) -> list:
    time.sleep(0.5)
    seen = []
    while not inbox.empty():
        message = inbox.get_nowait()
        if not message.topic.endswith(topics.AVAILABILITY):
            seen.append(message)
    return seen


def test_the_site_is_in_migration_and_says_so(site, sm_config):
    directory = site.directory
    assert site.data.node.suite is Suite.SM and directory.get("matcher-1").suite is Suite.SM
    assert directory.get(SM_DOOR).suite is Suite.SM and directory.get(DEFAULT_DOOR).suite is Suite.DEFAULT
    assert site.device_keys(SM_DOOR).sm2 is not None and site.device_keys(DEFAULT_DOOR).sm2 is None
    in_use = suites_in_use(sm_config, directory)
    assert in_use.mixed and in_use.by_node[SM_DOOR] == "sm" and in_use.by_node[DEFAULT_DOOR] == "default"


def test_sm_door_accepted_unknown_rejected_all_in_sm_and_nothing_readable(site, pipeline, faces, tmp_path, auditor):
    matcher = start_matcher(site, pipeline)
    link = MatcherLink(SM_DOOR, site.mqtt(SM_DOOR), site.device_keys(SM_DOOR), site.directory)
    link.connect()
    try:
        known = passing_image(pipeline, faces / "celeba-dev" / "id07201", skip=5)
        stranger = passing_image(pipeline, faces / "celeba-dev" / "id07245")
        display, actuator = ConsoleDisplay(), LogActuator()
        daemon = EdgeDaemon(
            EdgeSettings(SM_DOOR, cool_down_s=0.0), pipeline, link, actuator=actuator, display=display,
            emit=lambda kind, message: link.send(kind, message, MessageType.EVENT),
        )
        passes = daemon.run(FolderReplaySource(frames_folder(tmp_path, [known, stranger])).frames())
        assert [p.outcome for p in passes] == ["accepted", "rejected"]
        assert passes[0].display_name == "Z**** S**" and actuator.openings == 1
        assert passes[1].reason == messages.Reason.NO_MATCH
        wire = [m for m in _wire(auditor) if topics.device_of(m.topic) == SM_DOOR]
        assert len(wire) >= 4  # 2 requests, 2 decisions, events
        probe = np.float32(pipeline.extract([pipeline.analyze(read_image(known))])[0].template.vector[:4]).tobytes()
        for message in wire:
            header = parse(message.payload)[0]
            assert header.suite is Suite.SM, f"{message.topic} sealed with {header.suite}"
            for plaintext in (b"Zhang", b"score", b"accepted", b"template", probe):
                assert plaintext not in message.payload
        assert matcher.stats["accepted"] == 1 and matcher.stats["rejected"] == 1
        assert wait_for(lambda: matcher.stats["event"] >= 2)
    finally:
        link.close()
        matcher.stop()


def test_default_door_on_the_same_site_keeps_the_default_suite(site, pipeline, faces, tmp_path, auditor):
    matcher = start_matcher(site, pipeline)
    link = MatcherLink(DEFAULT_DOOR, site.mqtt(DEFAULT_DOOR), site.device_keys(DEFAULT_DOOR), site.directory)
    link.connect()
    try:
        reader = CredentialReader()
        image = passing_image(pipeline, faces / "celeba-dev" / "id07212", skip=5)
        daemon = EdgeDaemon(EdgeSettings(DEFAULT_DOOR, require_card=True, cool_down_s=0.0), pipeline, link,
                            reader=reader)
        reader.present("C-1002")
        first = daemon.run(FolderReplaySource(frames_folder(tmp_path, [image])).frames())
        assert first[0].outcome == "accepted" and first[0].display_name == "王**"
        wire = [m for m in _wire(auditor) if topics.device_of(m.topic) == DEFAULT_DOOR]
        assert wire and {parse(m.payload)[0].suite for m in wire} == {Suite.DEFAULT}
    finally:
        link.close()
        matcher.stop()


def test_a_downgraded_message_from_the_sm_door_is_refused(site, pipeline):
    """door-a declared SM: a default-suite envelope signed with its own keys is a downgrade,
    refused before anything in it is read."""
    matcher = start_matcher(site, pipeline)
    keys = dataclasses.replace(site.device_keys(SM_DOOR), suite=Suite.DEFAULT)
    endpoint = MqttEndpoint(site.mqtt(SM_DOOR))
    endpoint.connect()
    try:
        envelope = Sealer(keys).seal(site.directory.get("matcher"), MessageType.ALARM, b"{}")
        assert parse(envelope)[0].suite is Suite.DEFAULT
        endpoint.publish(topics.device_topic(SM_DOOR, topics.ALARM), envelope)
        assert wait_for(lambda: matcher.stats[f"rejected:{RejectReason.DOWNGRADE.name.lower()}"] == 1)
        assert matcher.stats["alarm"] == 0
    finally:
        endpoint.close()
        matcher.stop()

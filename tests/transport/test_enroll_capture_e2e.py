"""Enrollment from a door camera end to end: a real ``appliance edge`` process (real models, a
folder of real face photos as its camera) on a real Mosquitto with TLS and the rendered access
rules, asked by the console's ``CaptureClient`` under its ``console`` identity; the door judges
liveness at the configured level and signs the evidence, the central side judges it again
(``as_enrollment``), and the template goes through the enrollment desk (consent,
duplicates, storage). Doors that
are unknown, revoked or offline are not waited for forever, and a request forged by another
door is stopped by the broker and, when it gets past the broker, by the door itself."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from polling import wait_for

from appliance.capture.images import read_image
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.capture_client import CaptureClient, provision_console
from appliance.matcher.enrollment_desk import EnrollmentDesk
from appliance.matcher.enrollment_types import DUPLICATE, ENROLLED, EnrollmentRequest
from appliance.matcher.sync_store import open_sync_store
from appliance.ops import provisioning
from appliance.protocol import messages, topics
from appliance.protocol.capture_messages import OK, CaptureRequest
from appliance.security.envelope import MessageType, Sealer
from appliance.security.roles import Principal, Role
from appliance.site import Site
from appliance.stores.protected import key_provider
from appliance.transport.mqtt import MqttEndpoint

REPO = Path(__file__).resolve().parents[2]
DOOR, OFFLINE_DOOR, REVOKED_DOOR, CONSOLE = "door-a", "door-b", "door-c", "console-1"
PERSON = "id07201"
OPERATOR = Principal("acct-operator", Role.OPERATOR)
READY_TIMEOUT_S = 180.0


@pytest.fixture(scope="module")
def capture_site(tmp_path_factory, config, pipeline, faces):
    """A site whose door-a runs as a process with enrollment capture switched on."""
    folder = tmp_path_factory.mktemp("capture-site")
    site = Site(folder)
    site.provision((DOOR, OFFLINE_DOOR, REVOKED_DOOR), matchers=("matcher-1",))
    provision_console(site.broker.pki, site.directory, site.central_keys(), CONSOLE)
    site.broker.pki.revoke(REVOKED_DOOR)
    site.broker.start()  # the access rules are rendered now, the console's included
    camera = folder / "camera"
    camera.mkdir()
    for index, path in enumerate(sorted((faces / "celeba-dev" / PERSON).glob("*.jpg"))[:6]):
        cv2.imwrite(str(camera / f"{index:03d}.jpg"), read_image(path))
    log = (folder / "edge.log").open("w")
    command = [sys.executable, "-m", "appliance", "edge", "--site", str(folder), "--port", str(site.broker.port),
               "--host", "127.0.0.1", "--device", DOOR, "--source", str(camera), "--fps", "5",
               "--liveness", config.liveness.level, "--mode", "local"]
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(folder / "data"), "APPLIANCE__DEVICE__LOOP": "true",
           "APPLIANCE__DEVICE__ENROLL_CAPTURE": "true"}
    edge = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    site.edge_log = folder / "edge.log"
    try:
        assert wait_for(lambda: "ready" in site.edge_log.read_text() or edge.poll() is not None, READY_TIMEOUT_S)
        assert edge.poll() is None, site.edge_log.read_text()
        yield site
    finally:
        edge.terminate()
        edge.wait(30)
        log.close()
        site.broker.stop()


@pytest.fixture(scope="module")
def client(capture_site, config):
    pki = capture_site.broker.pki
    made = CaptureClient.for_site(capture_site, CONSOLE,
                                  may_send=lambda device, topic: provisioning.may_send(pki, device, topic),
                                  liveness_level=config.liveness.level)
    made.connect()
    yield made
    made.close()


@pytest.fixture(scope="module")
def desk(capture_site, config, pipeline):
    data = capture_site.protected_data(config)
    sync = open_sync_store(data, key_provider(data.security, data.root))
    yield EnrollmentDesk(data, sync, pipeline, config)
    sync.close()
    data.close()


def test_the_console_asks_the_door_and_the_template_enrolls_through_the_desk(capture_site, client, desk):
    notice = desk.notice().version
    result = client.request(DOOR, OPERATOR.actor, notice, frames=3, timeout_s=60.0)
    assert result.status == OK and result.device_id == DOOR and result.used >= 1, result
    assert len(result.liveness) == result.used  # the door's signed evidence, one per capture used
    request = EnrollmentRequest("Zhang San", "form-2026-001", notice_version=notice)
    outcome = desk.enroll_templates(OPERATOR, request, client.as_enrollment(result))
    assert outcome.status == ENROLLED and outcome.images_used == result.used, outcome
    # the same face captured again is found already enrolled: the desk's policy, not the door's
    again = client.request(DOOR, OPERATOR.actor, notice, frames=3, timeout_s=60.0)
    assert again.status == OK
    repeat = desk.enroll_templates(OPERATOR, EnrollmentRequest("Zhang S.", "form-2026-002", notice_version=notice),
                                   client.as_enrollment(again))
    assert repeat.status == DUPLICATE and outcome.subject_id in repeat.duplicate_of
    assert client.stats["rejected_answers"] == 0 and client.stats["requests"] == 2
    # the evidence is the door's own, for that request: under another request's id it is refused
    with pytest.raises(ApplianceError) as moved:
        client.as_enrollment(dataclasses.replace(again, request_id=result.request_id))
    assert moved.value.code is ErrorCode.LIVENESS_FAILED and "another_request" in moved.value.detail


def test_unknown_revoked_and_offline_doors_end_cleanly(client):
    with pytest.raises(ApplianceError) as unknown:
        client.request("door-z", OPERATOR.actor, "v1", timeout_s=1.0)
    assert unknown.value.code is ErrorCode.PKI_ERROR and "not a device" in unknown.value.detail
    with pytest.raises(ApplianceError) as revoked:
        client.request(REVOKED_DOOR, OPERATOR.actor, "v1", timeout_s=1.0)
    assert revoked.value.code is ErrorCode.PKI_ERROR and "revoked" in revoked.value.detail
    started = time.monotonic()
    with pytest.raises(ApplianceError) as offline:
        client.request(OFFLINE_DOOR, OPERATOR.actor, "v1", timeout_s=1.0)
    assert offline.value.code is ErrorCode.REQUEST_TIMEOUT and time.monotonic() - started < 10.0


def test_a_request_forged_by_another_door_is_refused_by_the_broker_and_by_the_door(capture_site, client):
    forged = CaptureRequest(messages.new_id(), DOOR, 3, 5.0, "intruder", "v1")
    sealed = Sealer(capture_site.device_keys(OFFLINE_DOOR)).seal(
        capture_site.directory.get(DOOR), MessageType.CAPTURE_REQUEST, forged.encode())
    target = topics.device_topic(DOOR, topics.ENROLL_CAPTURE)
    intruder = MqttEndpoint(capture_site.mqtt(OFFLINE_DOOR))
    intruder.connect()
    try:
        with pytest.raises(ApplianceError) as refused:  # the broker: a door may not publish there
            intruder.publish(target, sealed)
        assert refused.value.code is ErrorCode.MESSAGE_REJECTED
    finally:
        intruder.close()
    # nor may a matcher ask for a capture, nor the console send anything but capture requests
    matcher = MqttEndpoint(capture_site.mqtt("matcher-1"))
    matcher.connect()
    try:
        with pytest.raises(ApplianceError) as by_matcher:
            matcher.publish(target, sealed)
        assert by_matcher.value.code is ErrorCode.MESSAGE_REJECTED
    finally:
        matcher.close()
    for kind in (topics.REQUEST, topics.DECISION, topics.SYNC, topics.ENROLL_RESULT):
        with pytest.raises(ApplianceError) as by_console:
            client.endpoint.publish(topics.device_topic(DOOR, kind), sealed)
        assert by_console.value.code is ErrorCode.MESSAGE_REJECTED, kind
    # past the broker (over the console's own connection), the door refuses the signature
    client.endpoint.publish(target, sealed)
    assert wait_for(lambda: "dropped a capture request" in capture_site.edge_log.read_text(), 10.0)
    assert "unknown sender" in capture_site.edge_log.read_text()
    time.sleep(1.0)
    assert client.stats["unexpected_answers"] == 0  # and it did not answer

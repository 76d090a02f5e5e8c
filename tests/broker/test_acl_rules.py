"""The access rules as data (``topics.RIGHTS``), the broker document rendered from them and
the receiver's own check (``provisioning.may_send``), without a broker: the attacks on a real
one are in ``tests/transport/test_broker_acl.py``."""
from __future__ import annotations

import json

import pytest

from appliance.broker.config import DEFAULT_ACCESS, RECEIVE, SEND, SUBSCRIBE_FILTER, render_acl
from appliance.broker.pki import ROLES, ProjectPKI
from appliance.ops import provisioning
from appliance.protocol import topics


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    site = ProjectPKI(tmp_path_factory.mktemp("pki"))
    site.create_ca()
    for device in ("door-a", "door-b", "door-c"):
        provisioning.enroll_device(site, device)
    site.issue_client("door-x", "device")  # a certificate without enrollment (no policy)
    for name, role in (("matcher-1", "matcher"), ("auditor-1", "auditor"), ("erp", "integration"),
                       ("console-1", "console")):
        site.issue_client(name, role)
    site.revoke("door-c")
    return site


def rendered(pki) -> dict:
    return json.loads(render_acl(pki))


def acls_of(document: dict, name: str) -> list[tuple[str, str]]:
    (role,) = [r for r in document["roles"] if r["rolename"] == name]
    assert all(acl["allow"] for acl in role["acls"])  # grants only: everything else is refused
    return [(acl["acltype"], acl["topic"]) for acl in role["acls"]]


def test_every_role_has_rules_and_nothing_else_is_granted():
    assert set(topics.RIGHTS) == set(ROLES)
    assert DEFAULT_ACCESS == {SEND: False, RECEIVE: False, "subscribe": False, "unsubscribe": True}


def test_each_active_identity_gets_its_own_rules_and_a_revoked_one_none(pki):
    document = rendered(pki)
    assert document["defaultACLAccess"] == DEFAULT_ACCESS
    names = [client["username"] for client in document["clients"]]
    assert names == ["auditor-1", "console-1", "door-a", "door-b", "door-x", "erp", "matcher-1"]  # no door-c
    assert all(client["roles"] == [{"rolename": client["username"]}] for client in document["clients"])
    assert sorted(acls_of(document, "door-a")) == sorted(
        [(SEND, topics.device_topic("door-a", kind)) for kind in topics.DEVICE_WRITES]
        + [(kind, topics.device_topic("door-a", sub))
           for sub in (*topics.DEVICE_SUBSCRIBES, topics.ENROLL_CAPTURE, topics.WIPE)
           for kind in (SUBSCRIBE_FILTER, RECEIVE)])
    events = topics.ENROLLMENT_EVENTS
    assert acls_of(document, "erp") == [(SUBSCRIBE_FILTER, events), (RECEIVE, events)]


def test_only_matchers_hold_a_shared_subscription_and_only_in_their_group(pki):
    """Why a device cannot join ``$share/matchers``: no rule of any other role is written with
    a ``$share`` prefix, and a rule without one never covers a shared filter (checked on the
    real broker by the attack tests)."""
    document = rendered(pki)
    for role in document["roles"]:
        shared = [topic for kind, topic in acls_of(document, role["rolename"]) if topic.startswith("$")]
        if role["rolename"] == "matcher-1":
            assert shared and all(t.startswith(f"{topics.SHARE_PREFIX}{topics.SHARE_GROUP}/") for t in shared)
            assert {kind for kind, t in acls_of(document, "matcher-1") if t in shared} == {SUBSCRIBE_FILTER}
        else:
            assert shared == []


def test_a_device_rule_names_only_the_device_and_no_wildcard(pki):
    document = rendered(pki)
    for name in ("door-a", "door-b", "door-x"):
        for _, topic in acls_of(document, name):
            assert topics.device_of(topic) == name and "+" not in topic and "#" not in topic


@pytest.mark.parametrize(("role", "name", "topic", "publish", "receive"), [
    ("device", "door-a", topics.device_topic("door-a", topics.REQUEST), True, False),
    ("device", "door-a", topics.device_topic("door-a", topics.DECISION), False, True),
    ("device", "door-a", topics.device_topic("door-b", topics.REQUEST), False, False),
    ("device", "door-a", topics.device_topic("door-b", topics.DECISION), False, False),
    ("device", "door-a", topics.ENROLLMENT_EVENTS, False, False),
    ("device", "door-a", "$SYS/broker/uptime", False, False),
    ("matcher", "matcher-1", topics.device_topic("door-b", topics.REQUEST), False, True),
    ("matcher", "matcher-1", topics.device_topic("door-b", topics.DECISION), True, False),
    ("matcher", "matcher-1", topics.ENROLLMENT_EVENTS, True, False),
    ("auditor", "auditor-1", topics.device_topic("door-b", topics.SYNC), False, True),
    ("auditor", "auditor-1", "$SYS/broker/uptime", False, False),
    ("integration", "erp", topics.ENROLLMENT_EVENTS, False, True),
    ("integration", "erp", topics.device_topic("door-b", topics.EVENT), False, False),
    # enrollment from a door camera: consoles ask, the door itself answers, nobody else takes part
    ("console", "console-1", topics.device_topic("door-b", topics.ENROLL_CAPTURE), True, False),
    ("console", "console-1", topics.device_topic("door-b", topics.ENROLL_RESULT), False, True),
    ("console", "console-1", topics.device_topic("door-b", topics.REQUEST), False, False),
    ("console", "console-1", topics.device_topic("door-b", topics.DECISION), False, False),
    ("console", "console-1", topics.device_topic("door-b", topics.SYNC), False, False),
    ("console", "console-1", topics.device_topic("door-b", topics.EVENT), False, False),
    ("console", "console-1", topics.ENROLLMENT_EVENTS, False, False),
    ("device", "door-a", topics.device_topic("door-a", topics.ENROLL_CAPTURE), False, True),
    ("device", "door-a", topics.device_topic("door-a", topics.ENROLL_RESULT), True, False),
    ("device", "door-a", topics.device_topic("door-b", topics.ENROLL_CAPTURE), False, False),
    ("device", "door-a", topics.device_topic("door-b", topics.ENROLL_RESULT), False, False),
    ("matcher", "matcher-1", topics.device_topic("door-b", topics.ENROLL_CAPTURE), False, False),
    ("matcher", "matcher-1", topics.device_topic("door-b", topics.ENROLL_RESULT), False, False),
    ("integration", "erp", topics.device_topic("door-b", topics.ENROLL_RESULT), False, False),
    ("auditor", "auditor-1", topics.device_topic("door-b", topics.ENROLL_RESULT), False, True),
    ("intruder", "door-a", topics.device_topic("door-a", topics.REQUEST), False, False),
    # remote wipe on revocation: only a matcher orders it, only the door itself confirms it
    ("matcher", "matcher-1", topics.device_topic("door-b", topics.WIPE), True, False),
    ("matcher", "matcher-1", topics.device_topic("door-b", topics.WIPE_DONE), False, True),
    ("device", "door-a", topics.device_topic("door-a", topics.WIPE), False, True),
    ("device", "door-a", topics.device_topic("door-b", topics.WIPE), False, False),
    ("device", "door-a", topics.device_topic("door-a", topics.WIPE_DONE), True, False),
    ("device", "door-a", topics.device_topic("door-b", topics.WIPE_DONE), False, False),
    ("console", "console-1", topics.device_topic("door-b", topics.WIPE), False, False),
    ("integration", "erp", topics.device_topic("door-b", topics.WIPE), False, False),
    ("auditor", "auditor-1", topics.device_topic("door-b", topics.WIPE), False, True),
])
def test_rights_for_publishing_and_delivery(role, name, topic, publish, receive):
    assert topics.may_publish(role, name, topic) is publish
    assert topics.may_receive(role, name, topic) is receive


@pytest.mark.parametrize(("topic_filter", "topic", "expected"), [
    ("#", "$SYS/broker/uptime", False),
    ("+/broker/uptime", "$SYS/broker/uptime", False),
    ("$SYS/#", "$SYS/broker/uptime", True),
    ("a/+/c", "a/b/c", True),
    ("a/+/c", "a/b/c/d", False),
    ("a/#", "a", True),
    ("a/b", "a/b/c", False),
])
def test_topic_matching(topic_filter, topic, expected):
    assert topics.matches(topic_filter, topic) is expected


def test_the_receiver_acts_only_on_what_an_active_sender_may_publish_there(pki):
    own_request = topics.device_topic("door-a", topics.REQUEST)
    assert provisioning.may_send(pki, "door-a", own_request)
    assert provisioning.may_send(pki, "door-a", topics.device_topic("door-a", topics.ALARM))
    assert not provisioning.may_send(pki, "door-a", topics.device_topic("door-b", topics.REQUEST))
    assert not provisioning.may_send(pki, "door-a", topics.device_topic("door-a", topics.DECISION))
    assert not provisioning.may_send(pki, "door-c", topics.device_topic("door-c", topics.EVENT))  # revoked
    assert not provisioning.may_send(pki, "door-x", topics.device_topic("door-x", topics.EVENT))  # not enrolled
    assert not provisioning.may_send(pki, "door-z", topics.device_topic("door-z", topics.EVENT))  # unknown
    assert provisioning.may_send(pki, "matcher-1", topics.device_topic("door-a", topics.DECISION))
    assert not provisioning.may_send(pki, "matcher-1", own_request)


def test_is_allowed_is_false_for_a_revoked_unenrolled_or_non_device_identity(pki):
    assert all(provisioning.is_allowed(pki, "door-a", mode) for mode in ("verify",))
    for name in ("door-c", "door-x", "door-z", "matcher-1", "auditor-1"):
        for mode in (*provisioning.MATCHING_MODES, "event", "*", ""):
            assert not provisioning.is_allowed(pki, name, mode), (name, mode)


def test_a_console_holds_exactly_the_capture_rights_and_no_shared_subscription(pki):
    document = rendered(pki)
    assert sorted(acls_of(document, "console-1")) == sorted([
        (SEND, topics.all_devices(topics.ENROLL_CAPTURE)),
        (SUBSCRIBE_FILTER, topics.all_devices(topics.ENROLL_RESULT)),
        (RECEIVE, topics.all_devices(topics.ENROLL_RESULT))])
    # no other role may ask a door to capture or read what it captured (auditors read everything)
    for role in document["roles"]:
        if role["rolename"] in ("console-1", "auditor-1"):
            continue
        for kind, topic in acls_of(document, role["rolename"]):
            if topic.endswith(topics.ENROLL_CAPTURE):
                assert kind != SEND and topics.device_of(topic) == role["rolename"], (role["rolename"], topic)
            if topic.endswith(topics.ENROLL_RESULT):
                assert kind == SEND and topics.device_of(topic) == role["rolename"], (role["rolename"], topic)


def test_the_receiver_hears_a_capture_answer_only_from_the_active_door_on_its_own_topic(pki):
    assert provisioning.may_send(pki, "door-a", topics.device_topic("door-a", topics.ENROLL_RESULT))
    assert not provisioning.may_send(pki, "door-a", topics.device_topic("door-b", topics.ENROLL_RESULT))
    assert not provisioning.may_send(pki, "door-c", topics.device_topic("door-c", topics.ENROLL_RESULT))  # revoked
    assert not provisioning.may_send(pki, "door-a", topics.device_topic("door-a", topics.ENROLL_CAPTURE))
    assert provisioning.may_send(pki, "console-1", topics.device_topic("door-a", topics.ENROLL_CAPTURE))
    assert not provisioning.may_send(pki, "matcher-1", topics.device_topic("door-a", topics.ENROLL_CAPTURE))


def test_provision_console_issues_the_identity_and_its_directory_entry(tmp_path, monkeypatch, capsys):
    from appliance.cli.main import main
    from appliance.protocol.directory import CONSOLE, NodeDirectory

    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(tmp_path))
    pki_folder = str(tmp_path / "pki")
    assert main(["provision", "ca", "--pki", pki_folder]) == 0
    assert main(["provision", "console", "console-1", "--pki", pki_folder]) == 0
    assert "restart the broker" in capsys.readouterr().out
    assert ProjectPKI(pki_folder).identities()["console-1"].role == "console"
    directory = NodeDirectory.load(tmp_path / "directory.json")
    assert directory.roles == {"console-1": CONSOLE} and [p.node_id for p in directory.consoles()] == ["console-1"]
    assert json.loads(render_acl(ProjectPKI(pki_folder)))["clients"][0]["textname"] == "console"

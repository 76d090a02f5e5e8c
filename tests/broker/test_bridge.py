"""A site broker's bridge, without a broker: the ``connection`` block it renders, the rules the
central broker gives the bridge identity, and what provisioning refuses. The bridge between
real brokers is in ``tests/transport/test_bridged_sites.py``."""
from __future__ import annotations

import json

import pytest

from appliance.broker import bridge
from appliance.broker.bridge import BridgeSettings, provision_bridge
from appliance.broker.config import RECEIVE, SEND, SUBSCRIBE_FILTER, BrokerSettings, render, render_acl
from appliance.broker.pki import ProjectPKI
from appliance.errors import ApplianceError, ErrorCode
from appliance.ops import provisioning
from appliance.protocol import topics


@pytest.fixture
def pki(tmp_path):
    central = ProjectPKI(tmp_path / "pki")
    central.create_ca()
    central.issue_broker()
    for door in ("door-a", "door-a2", "door-b"):
        provisioning.enroll_device(central, door)
    central.issue_client("matcher-1", "matcher")
    provision_bridge(central, "bridge-site-a", ("door-a", "door-a2"))
    return central


def test_the_bridge_identity_holds_only_its_doors_topics_in_their_direction(pki):
    document = json.loads(render_acl(pki))
    (role,) = [r for r in document["roles"] if r["rolename"] == "bridge-site-a"]
    granted = {(acl["acltype"], acl["topic"]) for acl in role["acls"]}
    expected = set()
    for door in ("door-a", "door-a2"):
        expected |= {(SEND, topics.device_topic(door, kind)) for kind in topics.BRIDGE_UP}
        expected |= {(kind, topics.device_topic(door, down)) for down in topics.BRIDGE_DOWN
                     for kind in (SUBSCRIBE_FILTER, RECEIVE)}
    assert granted == expected
    assert not any("+" in topic or "#" in topic or topic.startswith("$share") for _, topic in granted)
    assert not any(topic.endswith(f"/{topics.ENROLL_CAPTURE}") for _, topic in granted)  # not bridged


def test_a_revoked_door_leaves_the_bridge_and_its_rules(pki):
    pki.revoke("door-a2")
    assert bridge.bridged_devices(pki, "bridge-site-a") == ("door-a",)
    assert all("door-a2" not in topic for _, topic in bridge.rights(pki, "bridge-site-a"))


def test_the_site_broker_config_ends_with_the_connection_block(pki, tmp_path, monkeypatch):
    settings = BrokerSettings(port=18883, bridge=BridgeSettings("bridge-site-a", "central.example", 8884, 1, 5, 20))
    monkeypatch.setattr("appliance.broker.config.plugin_path", lambda _settings: tmp_path / "plugin.so")
    text = render(pki, tmp_path / "out", settings).read_text()
    block = text[text.index("connection bridge-site-a"):].splitlines()
    assert "address central.example:8884" in block and "bridge_protocol_version mqttv50" in block
    assert {"cleansession false", "local_cleansession false", "restart_timeout 1 5", "keepalive_interval 20",
            "remote_clientid bridge-site-a", "bridge_insecure false", "notifications false"} <= set(block)
    assert f"bridge_certfile {pki.cert('bridge-site-a').resolve()}" in block
    topic_lines = [line for line in block if line.startswith("topic ")]
    assert len(topic_lines) == 2 * (len(topics.BRIDGE_UP) + len(topics.BRIDGE_DOWN))
    assert f"topic {topics.device_topic('door-a', topics.REQUEST)} out 1" in topic_lines
    assert f"topic {topics.device_topic('door-a2', topics.DECISION)} in 0" in topic_lines  # see QOS_DOWN
    assert f"topic {topics.device_topic('door-a2', topics.WIPE)} in 1" in topic_lines
    assert not any("door-b" in line for line in block)


def test_provisioning_refuses_unknown_doors_and_other_roles(pki):
    with pytest.raises(ApplianceError) as unknown:
        provision_bridge(pki, "bridge-site-b", ("door-b", "door-typo"))
    assert unknown.value.code is ErrorCode.PKI_ERROR and "door-typo" in unknown.value.detail
    with pytest.raises(ApplianceError):
        provision_bridge(pki, "matcher-1", ("door-b",))  # an identity of another role
    with pytest.raises(ApplianceError):
        provision_bridge(pki, "bridge-site-b", ("matcher-1",))  # not a door
    assert "bridge-site-b" not in pki.identities()


@pytest.mark.parametrize("remote, host, port", [("central:8884", "central", 8884), ("10.0.0.5", "10.0.0.5", 8883)])
def test_settings_from_the_command_line_and_their_bounds(remote, host, port):
    settings = BridgeSettings.parse("bridge-site-a", remote)
    assert (settings.remote_host, settings.remote_port) == (host, port)
    for bad in ("central:http", "::1", ""):
        with pytest.raises(ApplianceError) as refused:
            BridgeSettings.parse("bridge-site-a", bad)
        assert refused.value.code is ErrorCode.CONFIG_INVALID
    with pytest.raises(ApplianceError):
        BridgeSettings("bridge-site-a", "central", restart_base_s=10, restart_cap_s=5)


def test_the_command_line_provisions_a_bridge_and_renders_the_site_broker(tmp_path, monkeypatch, capsys):
    from appliance.cli.main import main

    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(tmp_path / "data"))
    config = tmp_path / "appliance.toml"
    config.write_text('[site_bridge]\nname = "bridge-site-a"\nremote_host = "central"\nremote_port = 8884\n')
    run = lambda *command: main(["--config", str(config), *command])  # noqa: E731
    for step in (("provision", "ca"), ("provision", "broker"), ("provision", "device", "door-a")):
        assert run(*step) == 0
    assert run("provision", "bridge", "bridge-site-a") != 0  # no doors named
    assert run("provision", "bridge", "bridge-site-a", "--devices", "door-a") == 0
    assert run("provision", "broker-config", "--out", str(tmp_path / "site-a")) == 0  # [site_bridge] of the file
    assert "address central:8884" in (tmp_path / "site-a" / "mosquitto.conf").read_text()
    assert run("provision", "broker-config", "--out", str(tmp_path / "flags"), "--bridge", "bridge-site-a",
               "--bridge-to", "central-2") == 0
    assert "address central-2:8883" in (tmp_path / "flags" / "mosquitto.conf").read_text()
    assert run("provision", "broker-config", "--out", str(tmp_path / "half"), "--bridge", "bridge-site-a") != 0

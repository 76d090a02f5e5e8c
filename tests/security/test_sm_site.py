"""A site on both suites: provisioning records each node's suite and SM2 keys in the directory,
the matcher follows its configuration, and a door's bundle carries its SM2 keys to the door."""
from __future__ import annotations

import dataclasses
import stat

from appliance.ops.bundle import export_device, import_device
from appliance.security.envelope import MessageType, Opener, Sealer
from appliance.security.keys import NODE_SM2_AGREEMENT, NODE_SM2_SIGNING
from appliance.security.suites import Suite
from appliance.site import Site


def test_provisioning_both_suites_and_shipping_sm2_keys_in_the_bundle(tmp_path, config):
    site = Site(tmp_path / "site")
    site.provision(("door-old",), matchers=("matcher-1",))
    assert site.recorded_suite("matcher-1") is Suite.DEFAULT and site.recorded_suite("door-old") is Suite.DEFAULT
    sm_config = dataclasses.replace(config, security=dataclasses.replace(config.security, crypto_suite="sm"))
    data = site.protected_data(sm_config)  # the matcher's configuration says sm: it and its replicas switch
    try:
        assert data.node.suite is Suite.SM and data.node.sm2 is not None
        assert {site.recorded_suite(name) for name in ("matcher", "matcher-1")} == {Suite.SM}
        assert site.directory.get("matcher-1").sm2 == data.node.public().sm2
        site.provision(("door-new",))  # a door provisioned now takes the matcher's suite
        assert site.recorded_suite("door-new") is Suite.SM and site.recorded_suite("door-old") is Suite.DEFAULT

        bundle = tmp_path / "door-new.tar.gz"
        members = export_device(site.folder, "door-new", bundle)
        assert {f"nodes/door-new/{NODE_SM2_SIGNING}.key", f"nodes/door-new/{NODE_SM2_AGREEMENT}.key"} <= set(members)
        door_host = Site(tmp_path / "door-host")
        assert import_device(bundle, door_host.folder) == "door-new"
        modes = {name: stat.S_IMODE((door_host.folder / name).stat().st_mode) for name in members}
        assert {mode for name, mode in modes.items() if name.endswith(".key")} == {0o600}, modes
        assert all(mode & 0o022 == 0 for mode in modes.values()) and not list(door_host.folder.rglob("*.tmp"))
        door_keys = door_host.device_keys("door-new")  # the suite its provisioning recorded
        assert door_keys.suite is Suite.SM and door_keys.public() == site.directory.get("door-new")

        sealed = Sealer(door_keys).seal(door_host.directory.get("matcher"), MessageType.EVENT, b"hello")
        opened = Opener(data.node, site.directory.devices()).open(sealed)
        assert opened.header.suite is Suite.SM and opened.payload == b"hello"
        old = Sealer(site.device_keys("door-old")).seal(site.directory.get("matcher"), MessageType.EVENT, b"hi")
        assert Opener(data.node, site.directory.devices()).open(old).header.suite is Suite.DEFAULT
    finally:
        data.close()

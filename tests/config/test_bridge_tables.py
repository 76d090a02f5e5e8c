"""The ``[site_bridge]`` table: a site broker's bridge from the configuration file, its bounds and
the rule joining its keys (the rendered bridge is in ``tests/broker/test_bridge.py``)."""
from __future__ import annotations

import pytest

from appliance.broker.bridge import BridgeSettings
from appliance.config import load_config
from appliance.errors import ApplianceError, ErrorCode


def test_the_bridge_table_of_the_configuration(tmp_path):
    path = tmp_path / "appliance.toml"
    path.write_text('[site_bridge]\nname = "bridge-site-a"\nremote_host = "central"\nrestart_cap_s = 60\n')
    assert BridgeSettings.from_config(load_config(path).site_bridge) == BridgeSettings("bridge-site-a", "central",
                                                                                  restart_cap_s=60)
    assert BridgeSettings.from_config(load_config(None).site_bridge) is None
    for text, key in (('name = "bridge-site-a"\n', "remote_host"),  # no central broker named
                      ('name = "b"\nremote_host = "c"\nrestart_base_s = 99\nrestart_cap_s = 5\n', "restart_base_s"),
                      ('name = "Bridge A"\nremote_host = "c"\n', "name")):
        path.write_text("[site_bridge]\n" + text)
        with pytest.raises(ApplianceError) as refused:
            load_config(path)
        assert refused.value.code is ErrorCode.CONFIG_INVALID
        assert refused.value.detail.startswith(f"site_bridge.{key}:"), refused.value.detail

"""``NodeDirectory``: the public keys of the site's nodes, and what an unknown node's error says."""
from __future__ import annotations

import pytest

from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol.directory import NodeDirectory


def test_an_unknown_node_names_the_file_and_how_a_node_becomes_known(tmp_path):
    directory = NodeDirectory.load(tmp_path / "directory.json")  # absent: empty, nothing written
    with pytest.raises(ApplianceError) as unknown:
        directory.get("matcher")
    message = str(unknown.value)
    assert unknown.value.code is ErrorCode.PKI_ERROR and "'matcher'" in message
    assert str(tmp_path / "directory.json") in message and "appliance provision" in message
    assert not (tmp_path / "directory.json").exists()

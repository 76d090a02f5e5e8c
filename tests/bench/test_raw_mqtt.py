"""The flooding device's hand-made MQTT 5 packets, byte for byte as the standard lays them out
(its connection to the real broker runs in ``test_bench_load`` and ``test_bench_matcher``)."""
from __future__ import annotations

import pytest

from appliance.bench.raw_mqtt import RawPublisher, _length


@pytest.mark.parametrize("value, encoded", [(0, "00"), (127, "7f"), (128, "8001"), (16_383, "ff7f"),
                                            (16_384, "808001"), (2_097_151, "ffff7f"), (268_435_455, "ffffff7f")])
def test_the_remaining_length_is_the_standards_variable_byte_integer(value, encoded):
    """The boundary values of OASIS MQTT 5.0, 1.5.5 (table 1-1)."""
    assert _length(value).hex() == encoded


def test_a_qos0_publish_has_no_packet_id_and_empty_properties():
    packet = RawPublisher.publish_packet("a/b", b"xyz")
    assert packet == bytes([0x30, 9]) + b"\x00\x03a/b" + b"\x00" + b"xyz"

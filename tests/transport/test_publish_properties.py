"""Hand-packed PUBLISH properties are byte for byte what paho's ``Properties`` packs, and read back
by paho's own unpacking (a real broker round trip: ``test_mqtt``)."""
from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from appliance.transport.publish_properties import publish_properties, variable_byte_integer

CASES = [
    ("site/a/door-001/decision", b"0123456789abcdef0123456789abcdef"),
    ("site/a/door-001/decision", None),
    (None, b"\x00\xff" * 3),
    ("门/出口/decision", b"x"),  # UTF-8 beyond ASCII
    ("t" * 200, b"c" * 300),  # over 127 bytes in all: a two-byte length
    ("t" * 65_535, None),  # the longest string
]


def _paho(response_topic: str | None, correlation: bytes | None) -> bytes:
    properties = Properties(PacketTypes.PUBLISH)
    if response_topic:
        properties.ResponseTopic = response_topic
    if correlation:
        properties.CorrelationData = correlation
    return properties.pack()


@pytest.mark.parametrize(("response_topic", "correlation"), CASES)
def test_packed_as_paho_packs_and_read_back_by_paho(response_topic, correlation):
    packed = publish_properties(response_topic, correlation)
    assert packed is not None and packed.pack() == _paho(response_topic, correlation)
    read = Properties(PacketTypes.PUBLISH)
    read.unpack(packed.pack())
    assert getattr(read, "ResponseTopic", None) == response_topic
    assert getattr(read, "CorrelationData", None) == correlation
    assert repr(packed).startswith("[ResponseTopic")  # paho's debug log formats it


def test_no_fields_no_properties():
    assert publish_properties(None, None) is None
    assert publish_properties("", b"") is None


def test_a_field_over_two_bytes_of_length_is_refused():
    with pytest.raises(ValueError, match="over 65535"):
        publish_properties(None, b"c" * 65_536)
    with pytest.raises(ValueError, match="over 65535"):
        publish_properties("é" * 40_000, None)  # 80,000 bytes of UTF-8


@pytest.mark.parametrize(("value", "encoded"), [
    (0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16_383, b"\xff\x7f"), (16_384, b"\x80\x80\x01"),
    (2_097_151, b"\xff\xff\x7f"), (2_097_152, b"\x80\x80\x80\x01"), (268_435_455, b"\xff\xff\xff\x7f"),
])
def test_variable_byte_integers_of_the_standard(value, encoded):  # MQTT 5.0, 1.5.5's table
    assert variable_byte_integer(value) == encoded


@pytest.mark.parametrize("value", [-1, 268_435_456])
def test_no_variable_byte_integer_outside_four_bytes(value):
    with pytest.raises(ValueError):
        variable_byte_integer(value)

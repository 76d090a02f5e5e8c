"""The MQTT 5 properties of a request or an answer (Response Topic, Correlation Data), packed here.

paho's ``Properties`` sets each attribute through a name lookup and packs by walking every
property the standard knows: ~10 µs per message on the matcher's network thread, where a request
costs ~500 µs in all (issue 17). The wire form of these two is fixed by MQTT 5.0 (2.2.2 and
3.3.2.3): an identifier byte (Response Topic 0x08, a UTF-8 string; Correlation Data 0x09, binary
data), a two-byte big-endian length and the bytes, all preceded by their total length as a
variable byte integer. ``publish_properties`` packs them once; paho asks a publish's properties
for nothing but ``pack()`` (to send, and again to resend a QoS 1 message), and formats them for
its debug log.
"""
from __future__ import annotations

import struct

RESPONSE_TOPIC, CORRELATION_DATA = 0x08, 0x09  # MQTT 5.0 property identifiers
MAX_FIELD_BYTES = 0xFFFF  # a two-byte length
MAX_VARIABLE_BYTE_INTEGER = 268_435_455  # four bytes of seven bits


class PackedProperties:
    """PUBLISH properties already packed, handed to paho's ``publish`` in place of a ``Properties``."""

    __slots__ = ("_packed", "response_topic", "correlation")

    def __init__(self, packed: bytes, response_topic: str | None, correlation: bytes | None):
        self._packed, self.response_topic, self.correlation = packed, response_topic, correlation

    def pack(self) -> bytes:
        return self._packed

    def __repr__(self) -> str:  # paho's debug log
        return f"[ResponseTopic: {self.response_topic!r}, CorrelationData: {self.correlation!r}]"


def publish_properties(response_topic: str | None, correlation: bytes | None) -> PackedProperties | None:
    """The packed properties of a publish with these fields (an empty one is left out); None: none."""
    body = b""
    if response_topic:
        body += _field(RESPONSE_TOPIC, response_topic.encode("utf-8"))
    if correlation:
        body += _field(CORRELATION_DATA, bytes(correlation))
    if not body:
        return None
    return PackedProperties(variable_byte_integer(len(body)) + body, response_topic or None, correlation or None)


def _field(identifier: int, data: bytes) -> bytes:
    if len(data) > MAX_FIELD_BYTES:
        raise ValueError(f"property {identifier:#04x}: {len(data)} bytes is over {MAX_FIELD_BYTES}")
    return struct.pack("!BH", identifier, len(data)) + data


def variable_byte_integer(value: int) -> bytes:
    """MQTT 5.0 1.5.5: seven bits a byte, least significant first, the top bit set on all but the last."""
    if not 0 <= value <= MAX_VARIABLE_BYTE_INTEGER:
        raise ValueError(f"{value} is no MQTT variable byte integer")
    out = bytearray()
    while True:
        value, digit = divmod(value, 128)
        out.append(digit | (0x80 if value else 0))
        if not value:
            return bytes(out)

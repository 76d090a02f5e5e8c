"""Several sealed envelopes in one MQTT message: a door's outbox backlog sent in bulk.

A door back online sends the events and alarms it sealed while offline. One MQTT message per
event cost the door, the broker and the matcher a packet each (on the matcher ~75 µs of its
network thread per message: issue 17), so the outbox sends up to ``MAX_ENVELOPES`` of one
kind together. The frame is plain bytes:

    MAGIC (4) | VERSION (1) | count (2, big-endian) | count x (length (4) | envelope)

Nothing in the frame is trusted: each envelope inside is sealed and signed by the device as
before and is opened, checked against the topic's device and recorded exactly as if it had
come alone (``protocol.inbound``); the broker's ACL already keeps the topic to that device. The
matcher's budget is charged per envelope (``count``), not per message. A frame that does not
parse is refused whole (``BundleMalformed``). ``MAGIC`` differs from an envelope's, so a topic
may carry both.
"""
from __future__ import annotations

import struct

MAGIC = b"FABN"
VERSION = 1
MAX_ENVELOPES = 64  # per message: a window of 200 in flight goes in 4 messages
MAX_BUNDLE_BYTES = 48 * 1024  # below the broker's 64 KiB packet limit, with room for the topic
_HEADER = struct.Struct(">4sBH")
_LENGTH = struct.Struct(">I")


class BundleMalformed(ValueError):
    """A frame that is not a well-formed bundle (the text says where it breaks)."""


def is_bundle(payload: bytes) -> bool:
    return payload[: len(MAGIC)] == MAGIC


def count(payload: bytes) -> int:
    """Envelopes the message claims to carry, for the router's budget: 1 for anything that is
    not a bundle (or whose header does not parse: its worker refuses it), never more than the
    maximum (a larger claim is refused whole by ``unpack``)."""
    if not is_bundle(payload) or len(payload) < _HEADER.size:
        return 1
    return max(1, min(MAX_ENVELOPES, _HEADER.unpack_from(payload)[2]))


def fits(envelopes: list[bytes]) -> bool:
    """Would ``pack`` take these (count and size within the bounds)?"""
    size = _HEADER.size + sum(_LENGTH.size + len(envelope) for envelope in envelopes)
    return 1 <= len(envelopes) <= MAX_ENVELOPES and size <= MAX_BUNDLE_BYTES


def pack(envelopes: list[bytes]) -> bytes:
    if not fits(envelopes) or not all(envelopes):
        raise ValueError(f"a bundle holds 1-{MAX_ENVELOPES} non-empty envelopes in {MAX_BUNDLE_BYTES} bytes")
    parts = [_HEADER.pack(MAGIC, VERSION, len(envelopes))]
    for envelope in envelopes:
        parts += [_LENGTH.pack(len(envelope)), envelope]
    return b"".join(parts)


def unpack(payload: bytes) -> list[bytes]:
    """The envelopes of a bundle, in order; ``BundleMalformed`` for anything else."""
    if len(payload) > MAX_BUNDLE_BYTES:
        raise BundleMalformed(f"{len(payload)} bytes is over the {MAX_BUNDLE_BYTES} limit")
    if len(payload) < _HEADER.size or not is_bundle(payload):
        raise BundleMalformed("no bundle header")
    _, version, claimed = _HEADER.unpack_from(payload)
    if version != VERSION:
        raise BundleMalformed(f"bundle version {version}")
    if not 1 <= claimed <= MAX_ENVELOPES:
        raise BundleMalformed(f"{claimed} envelopes (1-{MAX_ENVELOPES})")
    envelopes, offset = [], _HEADER.size
    for _ in range(claimed):
        if offset + _LENGTH.size > len(payload):
            raise BundleMalformed("truncated")
        (length,) = _LENGTH.unpack_from(payload, offset)
        offset += _LENGTH.size
        if length == 0 or offset + length > len(payload):
            raise BundleMalformed("an envelope is empty or truncated")
        envelopes.append(payload[offset : offset + length])
        offset += length
    if offset != len(payload):
        raise BundleMalformed("bytes after the last envelope")
    return envelopes

"""Opening what arrives on a device topic: the envelope, and whether its sender may write there.

Every device topic has its writers. On the topics a device publishes (``req``, ``event``,
``alarm``, ``sync-ack``, ``enroll-result``, ...: ``topics.DEVICE_WRITES``) the one writer is
the device the topic belongs to: an envelope signed by any other node - even a provisioned
device - is refused, whatever the broker ACL let through. On the topics a device reads
(``decision``, ``sync``; ``enroll-capture``) the writers are the matcher replicas (the
consoles), and the device's opener knows no other sender. The matcher's handlers, the
device's matcher link and its sync client all open device-topic traffic here; a message that
names a device inside (``device_id``) is checked against ``Inbound.device`` by the caller.
"""
from __future__ import annotations

from dataclasses import dataclass

from appliance.protocol import topics
from appliance.security.envelope import EnvelopeRejected, Header, MessageType, Opened, Opener, RejectReason


@dataclass(frozen=True)
class Inbound:
    device: str  # whose topic it arrived on
    kind: str  # the topic's last level (topics.REQUEST, topics.SYNC, ...)
    opened: Opened

    @property
    def header(self) -> Header:
        return self.opened.header

    @property
    def payload(self) -> bytes:
        return self.opened.payload


def open_on_topic(opener: Opener, topic: str, payload: bytes, expect: MessageType | None = None,
                  now: float | None = None) -> Inbound:
    """Open ``payload`` that arrived on ``topic``; ``EnvelopeRejected`` (counted in
    ``opener.rejections`` like every other reason) when the topic is not a device topic, the
    envelope does not open, or its sender may not write on that topic."""
    device = topics.device_of(topic)
    if device is None:
        raise _rejected(opener, RejectReason.TOPIC, topic)
    kind = topic.rsplit("/", 1)[-1]
    opened = opener.open(payload, expect=expect, now=now)
    if kind in topics.DEVICE_WRITES and opened.header.sender != device:
        raise _rejected(opener, RejectReason.SENDER_TOPIC_MISMATCH, f"{opened.header.sender} on {device}'s {kind}")
    return Inbound(device, kind, opened)


def _rejected(opener: Opener, reason: RejectReason, detail: str) -> EnvelopeRejected:
    opener.rejections[reason] += 1
    return EnvelopeRejected(reason, detail)

"""The load test's flooding device: mutual TLS and MQTT 5 written by hand, as an attacker who
has one door's certificate and key would flood - many PUBLISH packets per TLS write, no client
library in between.

Why not paho, as the doors use: on a site the flooder is another machine, so what it costs the
shared test CPUs is not part of what the test measures (the matcher keeping the other doors'
p95). Through paho one QoS 0 publish cost the flooder ~110 µs of CPU (2,000 a second: a quarter
of one of the two cores, taken from the doors and the matcher for the flood third only). Here
a slice's messages go out in one write. The broker still receives, decrypts and routes every
message, as it would on a site.

Only what the flood needs: CONNECT (clean start; the identity is the certificate's), CONNACK,
PUBLISH at QoS 0, PINGREQ, DISCONNECT; whatever the broker sends is read and dropped.
"""
from __future__ import annotations

import select
import socket
import ssl
import struct
import time

from appliance.errors import ApplianceError, ErrorCode
from appliance.transport.mqtt import CONNECT_TIMEOUT_S, MqttSettings
from appliance.transport.tls_read_ahead import client_context

PROTOCOL = b"\x00\x04MQTT\x05"  # MQTT 5 (OASIS MQTT 5.0, 3.1.2.1 and 3.1.2.2)
CLEAN_START = 0x02
CONNECT, CONNACK, PUBLISH, PINGREQ, DISCONNECT = 0x10, 0x20, 0x30, 0xC0, 0xE0
NO_PROPERTIES = b"\x00"
KEEPALIVE_S = 60
PING_EVERY_S = KEEPALIVE_S / 2
READ_BYTES = 65_536


def _length(value: int) -> bytes:
    """MQTT's variable byte integer (1.5.5)."""
    out = bytearray()
    while True:
        value, byte = value >> 7, value & 0x7F
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


def _packet(kind: int, body: bytes) -> bytes:
    return bytes([kind]) + _length(len(body)) + body


class RawPublisher:
    """One connection that only publishes at QoS 0; ``close`` says DISCONNECT."""

    def __init__(self, settings: MqttSettings, keepalive_s: int = KEEPALIVE_S):
        context = client_context(settings.ca_file, settings.cert_file, settings.key_file)
        raw = socket.create_connection((settings.host, settings.port), timeout=CONNECT_TIMEOUT_S)
        self.sock = context.wrap_socket(raw, server_hostname=settings.host)
        self.client_id = settings.client_id
        self.sock.sendall(_packet(CONNECT, PROTOCOL + bytes([CLEAN_START]) + struct.pack("!H", keepalive_s)
                                  + NO_PROPERTIES + _string(settings.client_id)))
        reply = self.sock.recv(READ_BYTES)
        if len(reply) < 4 or reply[0] != CONNACK or reply[3] != 0:
            raise ApplianceError(ErrorCode.BROKER_UNAVAILABLE, f"{self.client_id}: CONNECT refused ({reply[:8].hex()})")
        self.sock.setblocking(False)
        self._pinged = time.monotonic()

    @staticmethod
    def publish_packet(topic: str, payload: bytes) -> bytes:
        """A QoS 0 PUBLISH of ``payload`` on ``topic`` (no properties)."""
        return _packet(PUBLISH, _string(topic) + NO_PROPERTIES + payload)

    def send(self, packets: list[bytes]) -> None:
        """Write ``packets`` in one go (as many TLS records as their size needs)."""
        data = memoryview(b"".join(packets))
        while data:
            try:
                data = data[self.sock.send(data):]
            except (ssl.SSLWantWriteError, BlockingIOError):
                select.select([], [self.sock], [], CONNECT_TIMEOUT_S)

    def idle(self, seconds: float) -> None:
        """Read and drop what the broker sends for up to ``seconds``; ping when it is due."""
        if time.monotonic() - self._pinged >= PING_EVERY_S:
            self.send([bytes([PINGREQ, 0])])
            self._pinged = time.monotonic()
        readable = self.sock.pending() or select.select([self.sock], [], [], max(0.0, seconds))[0]
        while readable:
            try:
                if not self.sock.recv(READ_BYTES):
                    raise ApplianceError(ErrorCode.BROKER_UNAVAILABLE, f"{self.client_id}: the broker closed")
            except (ssl.SSLWantReadError, BlockingIOError):
                return
            readable = self.sock.pending()

    def idle_until(self, epoch: float) -> None:
        while (left := epoch - time.time()) > 0:
            self.idle(min(left, 1.0))

    def close(self) -> None:
        try:
            self.send([bytes([DISCONNECT, 0])])
        except OSError:
            pass
        self.sock.close()

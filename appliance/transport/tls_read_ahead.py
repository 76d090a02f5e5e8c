"""The MQTT clients' TLS context, whose sockets read a whole TLS record at a time.

Why: paho reads a packet in three or more ``recv`` calls (the command byte, each byte of the
remaining length, then the body), and every ``SSLSocket.recv`` releases and retakes the GIL even
when the bytes are already decrypted. On the matcher the network thread then waited for the
request worker at each of them - a thread switch per call, ~4 per request (issue 17). Here one
``recv`` asks OpenSSL for up to a full record and the small reads paho makes after it are served
from that buffer without leaving Python.

``ssl.SSLContext.sslsocket_class`` is the standard library's documented place for this; the
socket stays an ``ssl.SSLSocket`` for paho and for ``select``/``poll``. ``recv_into`` reads
through the same buffer (a reader using it must not skip bytes ``recv`` took), and ``pending``
counts the buffered bytes too, so a loop that asks it before waiting for the socket
(``mqtt_loop``) never sleeps on bytes already read.
"""
from __future__ import annotations

import ssl
from pathlib import Path

RECORD_BYTES = 16_384  # the most plaintext one TLS record carries (RFC 8446 section 5.1)


class ReadAheadSocket(ssl.SSLSocket):
    """An ``SSLSocket`` that reads up to one record per call into its own buffer."""

    _ahead: bytes = b""  # read from OpenSSL, not yet taken by the caller
    _taken: int = 0

    def recv(self, buflen: int = 1024, flags: int = 0) -> bytes:
        if self._taken >= len(self._ahead):
            data = super().recv(max(buflen, RECORD_BYTES), flags)  # raises SSLWantReadError when nothing came
            if len(data) <= buflen:
                return data
            self._ahead, self._taken = data, 0
        start = self._taken
        self._taken = min(start + buflen, len(self._ahead))
        return self._ahead[start:self._taken]

    def recv_into(self, buffer: bytearray | memoryview, nbytes: int = 0, flags: int = 0) -> int:
        """As ``recv``, into ``buffer``."""
        view = memoryview(buffer).cast("B")
        data = self.recv(nbytes or len(view), flags)
        view[:len(data)] = data
        return len(data)

    def pending(self) -> int:
        return len(self._ahead) - self._taken + super().pending()


def client_context(ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """Mutual TLS to the broker: its certificate checked against ``ca_file`` and its host name
    (what paho's ``tls_set`` configures), ours from ``cert_file``/``key_file``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.load_cert_chain(str(cert_file), str(key_file))
    context.sslsocket_class = ReadAheadSocket
    return context

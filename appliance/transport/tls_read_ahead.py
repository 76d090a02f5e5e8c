"""The MQTT clients' TLS context, whose sockets read a whole TLS record at a time and can
gather a pass's writes into one.

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

Writes: paho's ``loop_write`` sends each queued packet with a ``send`` of its own - a TLS record
and a system call per answer, and a read on the broker's side for each. Inside
``gathered_writes`` (the network thread wraps its ``loop_write`` in it) every ``send`` is taken
at once and the whole lot is written when the block ends; what the socket cannot take yet waits
in order (``unsent``, written by ``flush`` when the socket is writable) and, past
``MAX_UNSENT_BYTES``, a sender is told to wait as a full socket would tell it. ``close`` writes
what waits first: paho closes the socket right after writing its DISCONNECT. Outside a block,
with nothing waiting, ``send`` is the plain one (another loop, or paho's own). Measured on the
replica (issue 17, three alternating runs of ``bench load --no-flood``): its network thread
196 against 210 µs per request, the broker 10 % less CPU.
"""
from __future__ import annotations

import select
import ssl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RECORD_BYTES = 16_384  # the most plaintext one TLS record carries (RFC 8446 section 5.1)
MAX_WRITE_BYTES = 8 * RECORD_BYTES  # gathered bytes handed to OpenSSL per write
MAX_UNSENT_BYTES = 1 << 20  # gathered bytes the socket has not taken before a sender is told to wait
CLOSE_FLUSH_S = 1.0  # how long a close waits for gathered bytes to go out


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

    # -- writes gathered by the network thread ---------------------------------------------
    _gathering: bytearray | None = None  # writes taken while ``gathered_writes`` runs
    _unsent: bytes = b""  # gathered bytes the socket has not taken yet, in order
    _attempt: int = 0  # bytes of ``_unsent`` in the write OpenSSL asked to repeat (0: none)

    def send(self, data, flags: int = 0) -> int:
        if self._gathering is not None:
            self._gathering += data
            return len(data)
        if not self._unsent:
            return super().send(data, flags)
        if len(self._unsent) >= MAX_UNSENT_BYTES:
            raise ssl.SSLWantWriteError("gathered writes wait for the socket")  # the caller keeps its packet
        self._unsent += bytes(data)  # after what waits: the order is the stream's
        self.flush()
        return len(data)

    @contextmanager
    def gathered_writes(self) -> Iterator[None]:
        """Every ``send`` inside (paho's ``loop_write``, one per queued packet) is taken at once
        and written on leaving in as few TLS records and system calls as the socket takes."""
        self._gathering = bytearray()
        try:
            yield
        finally:
            gathered, self._gathering = self._gathering, None
            if gathered:
                self._unsent += bytes(gathered)
                self.flush()

    def unsent(self) -> bool:
        return bool(self._unsent)

    def flush(self) -> None:
        """Write what the socket takes now; the rest waits for the next ``flush`` (the socket
        writable). A connection error is left for the next read to report."""
        while self._unsent:
            self._attempt = self._attempt or min(len(self._unsent), MAX_WRITE_BYTES)  # a retry repeats its length
            try:
                written = super().send(self._unsent[:self._attempt])
            except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
                return
            except OSError:
                self._unsent, self._attempt = b"", 0
                return
            self._unsent, self._attempt = self._unsent[written:], 0

    def close(self) -> None:
        """What is gathered goes out first (paho closes right after writing a DISCONNECT, while
        ``gathered_writes`` still holds it)."""
        if self._gathering:
            self._unsent += bytes(self._gathering)
        self._gathering = None
        deadline = time.monotonic() + CLOSE_FLUSH_S
        while self._unsent and self.fileno() >= 0 and time.monotonic() < deadline:
            self.flush()
            if self._unsent:
                select.select([], [self], [], max(0.0, deadline - time.monotonic()))
        super().close()


def client_context(ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    """Mutual TLS to the broker: its certificate checked against ``ca_file`` and its host name
    (what paho's ``tls_set`` configures), ours from ``cert_file``/``key_file``."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.load_cert_chain(str(cert_file), str(key_file))
    context.sslsocket_class = ReadAheadSocket
    return context

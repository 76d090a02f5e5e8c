"""The MQTT network thread: paho's external-event-loop API, driven by one thread of ours.

Why not paho's ``loop_start``: its loop reads one packet per ``select`` (at QoS 0 nothing asks
it for more), checks keepalive on every pass, and every ``publish`` from another thread writes
a byte into a socket pair to wake it (a send on the publisher, a receive and one more pass on
the network thread: issue 17). Here one thread does all of the socket's I/O - an SSL object
must never be read and written by two threads at once - through paho's public calls
(``loop_read``, ``loop_write``, ``loop_misc``, ``reconnect``):

* it reads every packet that has arrived before it writes (up to ``READS_PER_PASS``);
* it writes everything queued in one pass, gathered into one write where the socket can
  (``tls_read_ahead``: paho sends each packet on its own); a publisher wakes it only when
  paho's write queue goes from empty to not empty (``on_socket_register_write``), so paho never
  writes on the publisher's thread;
* keepalive pings and the ping timeout are looked at every ``MISC_EVERY_S``;
* a lost connection is retried with the settings' back-off (doubling from the minimum up to
  the maximum, back to the minimum after a CONNACK), as paho's own loop does;
* ``stop`` disconnects on this thread, so a DISCONNECT never races a reconnect;
* work handed to it with ``run_inline`` (the matcher's request batches) runs here after each
  pass's reads, so what it publishes goes out in the same pass, with no thread in between; the
  wait for traffic ends when that work is due.
"""
from __future__ import annotations

import logging
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

import paho.mqtt.client as paho

log = logging.getLogger(__name__)

MISC_EVERY_S = 1.0  # keepalive is checked this often (paho: every pass, and every 1 s when idle)
READS_PER_PASS = 256  # packets read before what is queued for writing gets its turn
STOP_TIMEOUT_S = 5.0  # how long ``stop`` lets the DISCONNECT go out before closing the socket
MS_PER_S = 1000
WAKE_BYTES = 4096  # the wake socket is drained this much at a time (one byte per wake-up)


def wait_ready(readers: list, writers: list, timeout_s: float) -> tuple[set, set]:
    """The sockets ready to read and to write within ``timeout_s``: ``select.select`` by
    ``poll(2)``, because ``select()`` cannot watch a descriptor above 1023 (it raises, and a loop
    around it spins without ever connecting) and a process holding many files and connections
    gets such descriptors. A socket closed meanwhile is in neither set (its owner sees it gone)."""
    masks: dict[int, int] = {}
    owners: dict[int, object] = {}
    for sockets, mask in ((readers, select.POLLIN), (writers, select.POLLOUT)):
        for sock in sockets:
            descriptor = sock.fileno()
            if descriptor >= 0:
                masks[descriptor] = masks.get(descriptor, 0) | mask
                owners[descriptor] = sock
    poller = select.poll()
    for descriptor, mask in masks.items():
        poller.register(descriptor, mask)
    readable, writable = set(), set()
    for descriptor, events in poller.poll(max(0.0, timeout_s) * MS_PER_S):
        if events & (select.POLLIN | select.POLLERR | select.POLLHUP) and masks[descriptor] & select.POLLIN:
            readable.add(owners[descriptor])  # an error or hang-up is read as such by paho
        if events & select.POLLOUT:
            writable.add(owners[descriptor])
    return readable, writable


def read_available(client: paho.Client, sock) -> None:
    """Every packet already here: on after each as long as the SSL object holds decrypted
    bytes or the socket has more (paho's ``loop_read`` takes one packet at QoS 0)."""
    for _ in range(READS_PER_PASS):
        if client.loop_read() != paho.MQTT_ERR_SUCCESS or client.socket() is not sock:
            return
        if not sock.pending() and not wait_ready([sock], [], 0.0)[0]:
            return


def attempt_connection(client: paho.Client, name: str) -> None:
    """One (re)connection attempt; a failure is logged, and the caller's back-off grows."""
    try:
        client.reconnect()
    except OSError as exc:  # refused, unreachable, TLS refused
        log.debug("%s: connection attempt failed: %s", name, exc)
    except Exception:  # noqa: BLE001 - keep retrying whatever paho raised
        log.exception("%s: connection attempt failed", name)


class InlineWork(Protocol):
    """Work a network thread runs itself between its reads and its writes (an attached
    ``workers.QueueWorker``). Nothing it does may wait for the network: this thread reads it."""

    def attach(self, wake: Callable[[], None]) -> None:
        """Called once by the loop that runs it; ``wake`` cuts that loop's wait short."""

    def due(self) -> float | None:
        """When (monotonic) it wants to run next; None while it has nothing to do."""

    def run_due(self) -> int:
        """Run what is due (nothing if nothing is); never raises."""


class NetworkDriver(Protocol):
    """What an endpoint asks of whoever does its connection's I/O (this thread, or a
    ``mqtt_shared_loop.SharedLoop`` serving many connections from one)."""

    def start(self, connect_now: bool = False) -> None: ...

    def stop(self) -> None: ...

    def connected_again(self) -> None: ...

    def reads_here(self) -> bool:
        """Is the calling thread the one that reads this connection (so it must never wait for a reply)?"""
        ...


class NetworkLoop:
    """Runs ``client``'s network I/O on a thread named ``paho-mqtt-loop-<name>``."""

    def __init__(self, client: paho.Client, name: str, reconnect_min_s: float, reconnect_max_s: float):
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise ValueError(f"{name}: reconnect back-off {reconnect_min_s}-{reconnect_max_s} s")
        self.name = name
        self._client = client
        self._min_s, self._max_s = reconnect_min_s, reconnect_max_s
        self._delay_s: float | None = None  # the next back-off; None: reconnect at once
        self._wake_r, self._wake_w = self._wake_pair()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_misc = 0.0
        self._inline: InlineWork | None = None
        client.on_socket_register_write = self._wake  # a publisher queues, this thread writes

    def start(self, connect_now: bool = False) -> None:
        """Start the thread; ``connect_now``: its first act is to connect (``connect_async``)."""
        self._delay_s = None if connect_now else self._min_s
        if self._wake_r.fileno() < 0:  # started again after a stop
            self._wake_r, self._wake_w = self._wake_pair()
        self._closing.clear()
        self._thread = threading.Thread(target=self._run, name=f"paho-mqtt-loop-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Disconnect (on the loop's thread), let the DISCONNECT go out, end the thread."""
        self._closing.set()
        thread = self._thread
        if thread is None or not thread.is_alive():
            self._client.disconnect()  # never started: no I/O to race
        else:
            self._wake()
            if threading.current_thread() is thread:
                return  # a callback closing its own endpoint: the thread ends after this pass
            thread.join(STOP_TIMEOUT_S + 1.0)
        self._thread = None
        self._wake_r.close()
        self._wake_w.close()

    def connected_again(self) -> None:
        """A CONNACK: the next loss starts the back-off from its minimum."""
        self._delay_s = self._min_s

    def reads_here(self) -> bool:
        thread = self._thread
        return thread is not None and thread.ident == threading.get_ident()

    def run_inline(self, work: InlineWork) -> None:
        """Run ``work`` on this thread after every pass's reads (one piece of work per loop)."""
        if self._inline is not None and self._inline is not work:
            raise ValueError(f"{self.name}: the network thread already runs other inline work")
        self._inline = work
        work.attach(self._wake)

    @staticmethod
    def _wake_pair() -> tuple[socket.socket, socket.socket]:
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        return reader, writer

    def _wake(self, *_: object) -> None:
        if self.reads_here():
            return  # queued by this thread (inline work, a callback): this pass writes it
        try:
            self._wake_w.send(b"w")
        except (BlockingIOError, OSError):
            pass  # already awake (the buffer is full of wake-ups) or closing

    # -- the thread --------------------------------------------------------------------
    def _run(self) -> None:
        disconnect_by = None
        while True:
            if self._closing.is_set() and disconnect_by is None:
                self._client.disconnect()  # queued here, written by the next pass
                disconnect_by = time.monotonic() + STOP_TIMEOUT_S
            sock = self._client.socket()
            if sock is None:
                if disconnect_by is not None:
                    return
                self._reconnect()
                continue
            if disconnect_by is not None and time.monotonic() > disconnect_by:
                log.warning("%s: no DISCONNECT sent within %g s; closing the socket", self.name, STOP_TIMEOUT_S)
                sock.close()
                return
            try:
                self._pass(sock)
            except Exception:  # noqa: BLE001 - a bug in one pass must not end the connection's thread
                log.exception("%s: network pass failed", self.name)
                time.sleep(MISC_EVERY_S)

    def _pass(self, sock) -> None:
        client = self._client
        writing = [sock] if client.want_write() or sock.unsent() else []
        wait_until = self._next_misc
        due = self._inline.due() if self._inline is not None else None
        if due is not None:
            wait_until = min(wait_until, due)
        wait_s = 0.0 if sock.pending() else max(0.0, wait_until - time.monotonic())
        readable, _ = wait_ready([sock, self._wake_r], writing, wait_s)
        if self._wake_r in readable:
            self._drain_wake()
        if sock in readable or sock.pending():
            read_available(client, sock)
        if self._inline is not None:
            self._inline.run_due()
        if client.want_write() and client.socket() is sock:
            with sock.gathered_writes():
                client.loop_write()
        elif sock.unsent():
            sock.flush()
        now = time.monotonic()
        if now >= self._next_misc and client.socket() is sock:
            self._next_misc = now + MISC_EVERY_S
            client.loop_misc()

    def _drain_wake(self) -> None:
        try:
            while len(self._wake_r.recv(WAKE_BYTES)) == WAKE_BYTES:
                pass
        except (BlockingIOError, OSError):
            pass

    def _reconnect(self) -> None:
        """One connection attempt after the back-off (cut short by ``stop``)."""
        if self._delay_s is not None:
            if self._closing.wait(self._delay_s):
                return
            self._delay_s = min(self._delay_s * 2, self._max_s)
        else:
            self._delay_s = self._min_s
        attempt_connection(self._client, self.name)
        self._next_misc = 0.0

"""Many MQTT connections' network I/O on the caller's one thread (paho's external-loop API).

Why: ``bench load`` simulates a hundred doors in two processes on the same two cores as the
matcher it measures. With a network thread per door (``mqtt_loop.NetworkLoop``) every request
crossed threads twice - the scheduler woke the door's thread to write, and that thread read the
answer while the scheduler waited for the GIL - and the doors took ~1 ms of CPU per request,
more than the matcher (issue 17). Here the thread that publishes also does every connection's
I/O: paho writes a publish at once on the caller's thread (no register-write callback is set),
and ``poll`` reads whatever has arrived on any connection, writes what a callback queued,
keeps the connections alive and reconnects lost ones with their settings' back-off.

Not thread-safe by design: only the thread that calls ``poll`` may publish, connect or close.
An endpoint's blocking calls (``connect(wait=True)``, ``publish(wait=True)``) would wait for a
packet only ``poll`` can read: connect with ``wait=False`` and ``run_until`` connected.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import paho.mqtt.client as paho

from appliance.transport.mqtt_loop import MISC_EVERY_S, attempt_connection, read_available, wait_ready

POLL_SLICE_S = 0.05  # ``run_until`` looks at its condition at least this often


class SharedLoop:
    """The connections attached to it, served from whichever thread calls ``poll``."""

    def __init__(self) -> None:
        self._members: list[Connection] = []
        self._next_misc = 0.0

    def attach(self, client: paho.Client, name: str, reconnect_min_s: float, reconnect_max_s: float) -> Connection:
        """The network driver of one endpoint (``MqttEndpoint(network=...)``)."""
        return Connection(self, client, name, reconnect_min_s, reconnect_max_s)

    def poll(self, timeout: float) -> None:
        """Wait up to ``timeout`` s for traffic on any connection, then read every packet that
        has arrived, write what is queued, and do the keepalive and reconnect work that is due."""
        now = time.monotonic()
        readers, writers, owners = [], [], {}
        wait_s = min(timeout, self._next_misc - now)
        for member in list(self._members):
            sock = member.client.socket()
            if sock is None:
                wait_s = min(wait_s, member.reconnect_if_due(now))
                continue
            owners[sock] = member
            readers.append(sock)
            if member.client.want_write():  # queued in a callback (a SUBSCRIBE after the CONNACK) or a partial write
                writers.append(sock)
            if sock.pending():  # decrypted bytes already in the SSL object: no waiting
                wait_s = 0.0
        readable, writable = wait_ready(readers, writers, wait_s)
        for sock in readers:
            if sock in readable or sock.pending():
                read_available(owners[sock].client, sock)
        for sock in writable:
            member = owners[sock]
            if member.client.socket() is sock and member.client.want_write():
                member.client.loop_write()
        now = time.monotonic()
        if now >= self._next_misc:
            self._next_misc = now + MISC_EVERY_S
            for member in owners.values():
                if member.client.socket() is not None:
                    member.client.loop_misc()

    def serve(self, seconds: float) -> None:
        """``poll`` for ``seconds`` (none when not positive): waiting for a start time or for
        the last answers, with every connection read and kept alive meanwhile."""
        self.run_until(lambda: False, max(0.0, seconds))

    def run_until(self, done: Callable[[], bool], timeout: float) -> bool:
        """``poll`` until ``done()`` holds (True) or ``timeout`` s have passed (False)."""
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.poll(min(left, POLL_SLICE_S))
        return True

    def _add(self, member: Connection) -> None:
        if member not in self._members:
            self._members.append(member)

    def _remove(self, member: Connection) -> None:
        if member in self._members:
            self._members.remove(member)


class Connection:
    """One endpoint's share of a :class:`SharedLoop` (the interface of ``NetworkLoop``)."""

    def __init__(self, loop: SharedLoop, client: paho.Client, name: str, reconnect_min_s: float,
                 reconnect_max_s: float) -> None:
        if not 0 < reconnect_min_s <= reconnect_max_s:
            raise ValueError(f"{name}: reconnect back-off {reconnect_min_s}-{reconnect_max_s} s")
        self.name, self.client = name, client
        self._loop = loop
        self._min_s, self._max_s = reconnect_min_s, reconnect_max_s
        self._delay_s = reconnect_min_s
        self._next_attempt = 0.0
        client.on_socket_register_write = None  # paho writes a publish at once, on the caller's thread

    def start(self, connect_now: bool = False) -> None:
        """Served by the loop from now on; ``connect_now``: its first poll connects."""
        self._next_attempt = 0.0 if connect_now else time.monotonic() + self._min_s
        self._loop._add(self)

    def stop(self) -> None:
        """Send the DISCONNECT now (paho closes the socket once it is written) and leave the loop."""
        self._loop._remove(self)
        self.client.disconnect()
        sock = self.client.socket()
        if sock is not None:  # not written (a full socket buffer): the broker sees a closed socket
            sock.close()

    def connected_again(self) -> None:
        """A CONNACK: the next loss starts the back-off from its minimum."""
        self._delay_s = self._min_s

    def reads_here(self) -> bool:
        """Always: whichever thread publishes is the one that must ``poll`` (see the module)."""
        return True

    def reconnect_if_due(self, now: float) -> float:
        """One connection attempt when its back-off has passed; the seconds until the next one."""
        if now < self._next_attempt:
            return self._next_attempt - now
        attempt_connection(self.client, self.name)
        self._next_attempt = now + self._delay_s
        self._delay_s = min(self._delay_s * 2, self._max_s)
        return 0.0


"""sd_notify and the watchdog against a fake notify socket: a real AF_UNIX datagram socket
bound in tmp_path (or the abstract namespace), a real main loop in a thread, and a real
child process. The stall test proves the pings stop when the loop stops iterating."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from appliance.ops import notify
from appliance.ops.notify import Watchdog, read_status
from diskkit import fill, small_disk

WATCHDOG_USEC = 200_000  # 0.2 s: the loop must ping every 0.1 s


class FakeNotifySocket:
    """What systemd listens on: one datagram per sd_notify call."""

    def __init__(self, name: str):
        self.name = name
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(notify._address(name))
        self.sock.settimeout(0.05)
        self.messages: list[tuple[float, str]] = []

    def collect(self, seconds: float) -> list[tuple[float, str]]:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            self.messages.append((time.monotonic(), data.decode()))
        return self.messages

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def fake_socket(tmp_path):
    server = FakeNotifySocket(str(tmp_path / "notify.sock"))
    yield server
    server.close()


def test_without_notify_socket_everything_is_a_no_op(tmp_path):
    assert notify.ready(environ={}) is False
    assert notify.notify("WATCHDOG=1", environ={"WATCHDOG_USEC": "1000"}) is False
    dog = Watchdog(environ={"WATCHDOG_USEC": "100000"})
    assert not dog.enabled
    assert dog.heartbeat() is False and dog.pings == 0


def test_ready_status_stopping_reach_the_socket(fake_socket):
    env = {"NOTIFY_SOCKET": fake_socket.name}
    assert notify.ready("models loaded", environ=env)
    assert notify.status("syncing", environ=env)
    assert notify.stopping(environ=env)
    texts = [m for _, m in fake_socket.collect(0.2)]
    assert texts == ["READY=1\nSTATUS=models loaded", "STATUS=syncing", "STOPPING=1"]


def test_abstract_namespace_socket():
    name = f"@appliance-test-{os.getpid()}-{time.monotonic_ns()}"
    server = FakeNotifySocket(name)
    try:
        assert notify.ready(environ={"NOTIFY_SOCKET": name})
        assert [m for _, m in server.collect(0.2)] == ["READY=1"]
    finally:
        server.close()


def test_watchdog_usec_for_another_pid_is_ignored():
    env = {"NOTIFY_SOCKET": "/nonexistent", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert notify.watchdog_interval(env) is None
    env["WATCHDOG_PID"] = str(os.getpid())
    assert notify.watchdog_interval(env) == 1.0


def test_a_stalled_main_loop_stops_the_pings(fake_socket, tmp_path):
    env = {"NOTIFY_SOCKET": fake_socket.name, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    dog = Watchdog(environ=env, status_file=tmp_path / "run" / "edge.json")
    stall, stop = threading.Event(), threading.Event()

    def main_loop() -> None:  # the daemon's loop shape: work, then heartbeat
        notify.ready(environ=env)
        while not stop.is_set():
            if stall.is_set():
                stop.wait()  # a hung camera read / deadlock: the loop no longer iterates
                continue
            time.sleep(0.01)
            dog.heartbeat(model_loaded=True)

    thread = threading.Thread(target=main_loop, daemon=True)
    thread.start()
    try:
        running = fake_socket.collect(1.0)
        stall.set()
        stalled_at = time.monotonic()
        fake_socket.collect(1.0)
    finally:
        stop.set()
        thread.join(2)
    texts = [m for _, m in running]
    assert texts[0] == "READY=1"
    pings = [t for t, m in running if m == "WATCHDOG=1"]
    # ~10 pings a second at half of 0.2 s; every gap well under the 0.2 s timeout
    assert len(pings) >= 6
    assert max(b - a for a, b in zip(pings, pings[1:])) < WATCHDOG_USEC / 1e6
    late = [t for t, m in fake_socket.messages if m == "WATCHDOG=1" and t > stalled_at + 0.05]
    assert late == []
    record = read_status(tmp_path / "run" / "edge.json")
    assert record["model_loaded"] is True and record["watchdog_s"] == 0.2


CHILD = """
import sys, time
from appliance.ops import notify
from appliance.ops.notify import Watchdog
dog = Watchdog()
notify.ready("up")
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    time.sleep(0.01)
    dog.heartbeat()
time.sleep(float(sys.argv[2]))  # stall: no heartbeat
notify.stopping()
"""


def test_a_child_process_pings_then_stops_when_stalled(fake_socket):
    env = {**os.environ, "NOTIFY_SOCKET": fake_socket.name, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    env.pop("WATCHDOG_PID", None)
    child = subprocess.Popen([sys.executable, "-c", CHILD, "0.8", "0.8"], env=env)
    try:
        fake_socket.collect(3.0)
    finally:
        child.wait(10)
    texts = [m for _, m in fake_socket.messages]
    assert texts[0] == "READY=1\nSTATUS=up" and texts[-1] == "STOPPING=1"
    pings = [t for t, m in fake_socket.messages if m == "WATCHDOG=1"]
    stop_at = fake_socket.messages[-1][0]
    assert len(pings) >= 4
    assert stop_at - pings[-1] > 0.6  # silent while stalled


def test_a_full_disk_does_not_stop_the_heartbeat(fake_socket, tmp_path):
    """The status record cannot be written on a full disk (a real tmpfs, filled): the loop goes on
    pinging systemd (a restart would lose what a daemon holds in memory, such as the matcher's
    audit entries waiting for room), leaves no half-written file, and writes again once it can."""
    env = {"NOTIFY_SOCKET": fake_socket.name, "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    with small_disk(tmp_path / "run") as folder:
        filler = fill(folder)
        dog = Watchdog(environ=env, status_file=folder / "matcher-matcher-1.json")
        assert dog.heartbeat(model_loaded=True) is True  # pinged, though nothing could be written
        assert dog.record_failing and sorted(p.name for p in folder.iterdir()) == ["filler"]
        filler.unlink()
        time.sleep(WATCHDOG_USEC / 1e6)  # the next ping is due
        assert dog.heartbeat(model_loaded=True) is True and not dog.record_failing
        assert read_status(folder / "matcher-matcher-1.json")["model_loaded"] is True

"""systemd notification (``sd_notify``) over a plain datagram socket, and the watchdog pinger.

No libsystemd binding: the protocol is one ``KEY=value`` datagram per call to the socket named
by ``NOTIFY_SOCKET`` (a path, or ``@name`` for the abstract namespace). Without that variable
every call is a no-op, so the daemons run the same code under systemd, in a shell and in tests.

The watchdog is pinged from the daemon's *main loop* (``Watchdog.heartbeat`` once per
iteration), never from a helper thread: a thread would keep pinging while the loop hangs,
which is exactly the failure systemd's ``WatchdogSec=`` is there to catch.
"""
from __future__ import annotations

import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

log = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"
# systemd's advice: ping at half the watchdog interval so one late iteration is not fatal
PING_FRACTION = 0.5
USEC_PER_S = 1_000_000
# without a watchdog the status record is still refreshed, at this period
STATUS_PERIOD_S = 5.0
# status records: <ops.status_dir or <data>/run>/<service>-<name>.json, with the loop's state
STATUS_SUBDIR = "run"
RUNNING, STOPPED = "running", "stopped"


def _address(name: str) -> str | bytes:
    """An abstract-namespace socket is written ``@name`` and addressed with a leading NUL."""
    return b"\0" + name[1:].encode() if name.startswith("@") else name


def notify(*states: str, environ: Mapping[str, str] | None = None) -> bool:
    """Send ``states`` (e.g. ``"READY=1"``, ``"STATUS=..."``) in one datagram.

    Returns False (and does nothing) when not started by a service manager. Send errors are
    swallowed: a daemon must not die because its supervisor is briefly unreachable.
    """
    env = os.environ if environ is None else environ
    name = env.get(NOTIFY_SOCKET_ENV, "")
    if not name or not states:
        return False
    if name[0] not in "/@":
        return False  # vsock and other transports are not used on our targets
    message = "\n".join(states).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message, _address(name))
    except OSError:
        return False
    return True


def ready(status: str = "", environ: Mapping[str, str] | None = None) -> bool:
    return notify("READY=1", *([f"STATUS={status}"] if status else []), environ=environ)


def status(text: str, environ: Mapping[str, str] | None = None) -> bool:
    return notify(f"STATUS={text}", environ=environ)


def stopping(environ: Mapping[str, str] | None = None) -> bool:
    return notify("STOPPING=1", environ=environ)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """The watchdog timeout in seconds for this process, or None when it is not enabled."""
    env = os.environ if environ is None else environ
    usec = env.get(WATCHDOG_USEC_ENV, "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    pid = env.get(WATCHDOG_PID_ENV, "")
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None  # the variable was meant for a parent, not for us
    return int(usec) / USEC_PER_S


@dataclass
class Watchdog:
    """Call :meth:`heartbeat` once per main-loop iteration; it pings at most every half
    interval. ``status_file`` (optional) receives a small JSON health record on each ping
    so that ``appliance health`` can judge a daemon it is not part of."""

    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    status_file: Path | None = None
    clock: Any = time.monotonic
    interval_s: float | None = None
    pings: int = 0
    record_failing: bool = False  # the last status record could not be written (a full disk)
    _last_ping: float | None = None

    def __post_init__(self) -> None:
        if self.interval_s is None:
            self.interval_s = watchdog_interval(self.environ)

    @property
    def enabled(self) -> bool:
        return self.interval_s is not None and bool(self.environ.get(NOTIFY_SOCKET_ENV))

    @property
    def period_s(self) -> float | None:
        return None if self.interval_s is None else self.interval_s * PING_FRACTION

    def heartbeat(self, **health: Any) -> bool:
        """Ping when half the interval has passed since the last ping; True when pinged."""
        now = self.clock()
        period = self.period_s if self.period_s is not None else STATUS_PERIOD_S
        if self._last_ping is not None and now - self._last_ping < period:
            return False
        self._last_ping = now
        self._record({**health, "state": RUNNING, "watchdog_s": self.interval_s})
        if self.enabled and notify("WATCHDOG=1", environ=self.environ):
            self.pings += 1
            return True
        return False

    def stopped(self) -> None:
        """A clean stop leaves a record saying so, so health reports "stopped", not "hung"."""
        self._record({"state": STOPPED, "watchdog_s": self.interval_s})

    def _record(self, health: Mapping[str, Any]) -> None:
        """Write the status record; a full disk must not stop the daemon (the matcher would lose
        the audit entries it holds for the retry): the loop goes on pinging, the record goes
        stale (``appliance health`` says so, and its disk check says why) until there is room."""
        if self.status_file is None:
            return
        try:
            write_status(self.status_file, health)
        except OSError as exc:
            if not self.record_failing:
                log.warning("status record %s not written (%s); written again once it can be", self.status_file, exc)
            self.record_failing = True
        else:
            if self.record_failing:
                log.warning("status record %s written again", self.status_file)
            self.record_failing = False


def status_path(status_dir: str, data_dir: Path, service: str, name: str) -> Path:
    """The one naming rule for status records, shared by the daemons and ``appliance health``:
    ``<ops.status_dir or <data>/run>/<service>-<name>.json`` (e.g. ``edge-door-1.json``)."""
    folder = Path(status_dir) if status_dir else Path(data_dir) / STATUS_SUBDIR
    return folder / f"{service}-{name}.json"


def write_status(path: Path, health: Mapping[str, Any]) -> None:
    """Atomically replace the daemon's status record (read by ``appliance health``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"pid": os.getpid(), "time": time.time(), **health}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(record, sort_keys=True, default=str), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a half-written record takes room a full disk does not have
        raise


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None

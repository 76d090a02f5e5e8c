"""What both OSDP roles share: the RS-485 serial line, the secure-channel key and libosdp itself.

libosdp drives the protocol from its own thread and calls the channel's ``read``, ``write``
and ``flush``; ``SerialChannel`` is that channel on a tty (a USB RS-485 adapter, or one end
of a pseudo-terminal in tests), raw and non-blocking, at the configured speed.
"""
from __future__ import annotations

import logging
import os
import stat
import termios
import threading
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

from appliance.errors import ApplianceError, ErrorCode

SPEEDS = {9600: termios.B9600, 19200: termios.B19200, 38400: termios.B38400, 57600: termios.B57600,
          115200: termios.B115200}
SCBK_BYTES = 16  # OSDP secure channel base key: AES-128
PUMP_WAIT_S = 0.2  # how long a pump waits for the next message before it checks for stop
log = logging.getLogger(__name__)
OSDP_HINT = "OSDP needs libosdp: pip install 'face-appliance[gpio]' (Linux wheels for x86_64 and aarch64)"


def osdp_module() -> Any:
    """libosdp's Python API, or a clear error where its wheel is missing."""
    try:
        import osdp
    except ImportError:
        raise ApplianceError(ErrorCode.DEPENDENCY_MISSING, OSDP_HINT) from None
    return osdp


def load_scbk(path: str | Path) -> bytes:
    """The secure-channel base key: 32 hex digits in a file only its owner may read."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise ApplianceError(ErrorCode.KEY_MISSING, f"OSDP secure-channel key {path} not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ApplianceError(ErrorCode.KEY_INVALID, f"OSDP secure-channel key {path}: {error}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ApplianceError(ErrorCode.KEY_INSECURE, f"{path}: chmod 600 (the key opens the door's bus)")
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != SCBK_BYTES:
        raise ApplianceError(ErrorCode.KEY_INVALID, f"{path}: need {SCBK_BYTES * 2} hex digits")
    return key


class SerialChannel:
    """A raw, non-blocking tty at ``baud``: the channel libosdp reads and writes."""

    def __init__(self, path: str, baud: int = 9600) -> None:
        if baud not in SPEEDS:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"OSDP speed {baud} not one of {sorted(SPEEDS)}")
        try:
            self._fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as error:
            raise ApplianceError(ErrorCode.DOOR_IO_FAILED, f"cannot open the OSDP line {path}: {error}") from None
        try:
            tty.setraw(self._fd)
            attrs = termios.tcgetattr(self._fd)
            attrs[2] |= termios.CLOCAL | termios.CREAD  # no modem lines on RS-485
            attrs[4] = attrs[5] = SPEEDS[baud]
            termios.tcsetattr(self._fd, termios.TCSANOW, attrs)
        except termios.error as error:
            os.close(self._fd)
            raise ApplianceError(ErrorCode.DOOR_IO_FAILED, f"{path} is not a serial line: {error}") from None
        self.path, self.baud = path, baud
        self.id = 0  # libosdp's channel id: one line per controller here

    def read(self, max_bytes: int) -> bytes:
        try:
            return os.read(self._fd, max_bytes)
        except (BlockingIOError, InterruptedError):
            return b""

    def write(self, buf: bytes) -> int:
        try:
            return os.write(self._fd, buf)
        except (BlockingIOError, InterruptedError):
            return 0

    def flush(self) -> None:
        termios.tcflush(self._fd, termios.TCIOFLUSH)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Pump:
    """A thread taking libosdp's queued events (or commands) one by one, so its queues never grow."""

    def __init__(self, name: str, take: Callable[[float], dict | None], handle: Callable[[dict], None]) -> None:
        self._take, self._handle = take, handle
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            message = self._take(PUMP_WAIT_S)
            if not message:
                continue
            try:
                self._handle(message)
            except Exception:  # one bad message must not stop the line
                log.exception("OSDP message not handled: %r", message)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

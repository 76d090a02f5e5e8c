"""The OSDP line's shared parts: the secure-channel key file, the serial channel on a tty, the
message pump, and a clear error where libosdp is missing."""
from __future__ import annotations

import os
import sys
import threading

import pytest

from appliance.edge.door_io.serial_line import Pump, SerialChannel, load_scbk, osdp_module
from appliance.errors import ApplianceError, ErrorCode


def test_the_key_file_is_read(scbk):
    key, path = scbk
    assert load_scbk(path) == key


@pytest.mark.parametrize("text, mode, code", [
    ("00" * 16, 0o644, ErrorCode.KEY_INSECURE),
    ("00" * 15, 0o600, ErrorCode.KEY_INVALID),
    ("zz" * 16, 0o600, ErrorCode.KEY_INVALID),
])
def test_a_bad_key_file_is_refused(tmp_path, text, mode, code):
    path = tmp_path / "scbk"
    path.write_text(text)
    path.chmod(mode)
    with pytest.raises(ApplianceError) as refused:
        load_scbk(path)
    assert refused.value.code is code


def test_a_missing_key_file_is_refused(tmp_path):
    with pytest.raises(ApplianceError) as refused:
        load_scbk(tmp_path / "absent")
    assert refused.value.code is ErrorCode.KEY_MISSING


def test_the_channel_carries_bytes_both_ways_on_a_tty(line):
    peer, path = line
    channel = SerialChannel(path, 115200)
    assert channel.read(64) == b""  # nothing waiting: no blocking
    assert channel.write(b"\x53\x01") == 2
    assert wait_read(peer, 2) == b"\x53\x01"
    peer.write(b"\xff\x00")
    assert wait_read(channel, 2) == b"\xff\x00"
    channel.flush()
    channel.close()


def wait_read(channel, size: int) -> bytes:
    received = b""
    for _ in range(100):
        received += channel.read(size - len(received))
        if len(received) == size:
            break
        threading.Event().wait(0.01)
    return received


@pytest.mark.parametrize("path, baud, code", [
    ("/nonexistent/ttyUSB9", 9600, ErrorCode.DOOR_IO_FAILED),
    (os.devnull, 9600, ErrorCode.DOOR_IO_FAILED),  # not a serial line
    ("/dev/ttyS0", 1200, ErrorCode.CONFIG_INVALID),
])
def test_a_line_that_cannot_be_opened_is_a_clear_error(path, baud, code):
    with pytest.raises(ApplianceError) as refused:
        SerialChannel(path, baud)
    assert refused.value.code is code


def test_without_libosdp_the_error_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "osdp", None)
    with pytest.raises(ApplianceError) as missing:
        osdp_module()
    assert missing.value.code is ErrorCode.DEPENDENCY_MISSING and "face-appliance[gpio]" in missing.value.detail


def test_the_pump_survives_a_message_it_cannot_handle():
    messages = [{"event": 1}, {"event": 2}]
    handled = []
    done = threading.Event()

    def take(wait):
        if messages:
            return messages.pop(0)
        done.wait(wait)
        return None

    def handle(message):
        if message["event"] == 1:
            raise ValueError("malformed")
        handled.append(message)

    pump = Pump("test", take, handle)
    threading.Event().wait(0.1)
    pump.stop()
    assert handled == [{"event": 2}]

"""Door I/O fixtures: gpiozero's own MockFactory for the pins, a pseudo-terminal for the RS-485
line (the far end driven by libosdp's own ControlPanel or PeripheralDevice), an SCBK file."""
from __future__ import annotations

import os
import tty

import pytest
from doorkit import Events, PeerChannel


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def pins():
    from gpiozero.pins.mock import MockFactory  # in the dev extra: its absence fails, never skips

    factory = MockFactory()
    yield factory
    factory.close()


@pytest.fixture
def line():
    """``(peer channel, tty path)``: the door opens the path through its SerialChannel."""
    master, slave = os.openpty()
    tty.setraw(master)
    os.set_blocking(master, False)
    yield PeerChannel(master), os.ttyname(slave)
    os.close(master)
    os.close(slave)


@pytest.fixture
def scbk(tmp_path):
    """``(key, key file)``: a fresh secure-channel base key, stored owner-only."""
    key = os.urandom(16)
    path = tmp_path / "osdp-scbk.hex"
    path.write_text(key.hex() + "\n")
    path.chmod(0o600)
    return key, path


@pytest.fixture
def osdp():
    return pytest.importorskip("osdp", reason="libosdp has no wheel for this platform")

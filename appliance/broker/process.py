"""A Mosquitto process managed by the project: for development, tests and the demo.

Production runs the same rendered configuration under systemd on a broker host (see
docs/deployment.md); this class only adds start/stop/restart around it.
"""
from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from appliance.broker.bridge import BridgeSettings
from appliance.broker.config import BrokerSettings, render
from appliance.broker.pki import ProjectPKI
from appliance.errors import ApplianceError, ErrorCode

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mosquitto_binary() -> str:
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise ApplianceError(ErrorCode.DEPENDENCY_MISSING, "mosquitto is not installed (apt-get install mosquitto)")


class ManagedBroker:
    """``folder/pki`` holds the PKI, ``folder/broker`` the rendered config and data. A site
    broker of a bridged deployment shares the central PKI (``pki``) and carries a ``bridge``."""

    def __init__(self, folder: str | Path, port: int | None = None, host: str = "127.0.0.1",
                 pki: ProjectPKI | None = None, bridge: BridgeSettings | None = None):
        self.folder = Path(folder)
        self.pki = pki or ProjectPKI(self.folder / "pki")
        self.settings = BrokerSettings(port=port or free_port(), bind_address=host, bridge=bridge)
        self.host = host
        self._process: subprocess.Popen | None = None

    @property
    def port(self) -> int:
        return self.settings.port

    def provision(self, devices: tuple[str, ...] = (), matchers: tuple[str, ...] = (),
                  auditors: tuple[str, ...] = (), integrations: tuple[str, ...] = ()) -> None:
        """CA and broker certificate once; a client certificate per missing identity."""
        self.pki.create_ca()
        if not self.pki.broker_cert.exists():
            self.pki.issue_broker()
        known = self.pki.identities()
        for role, names in (("device", devices), ("matcher", matchers), ("auditor", auditors),
                            ("integration", integrations)):
            for name in names:
                if name not in known:
                    self.pki.issue_client(name, role)

    def start(self) -> None:
        if self.running:
            return
        config = render(self.pki, self.folder / "broker", self.settings)
        log = (self.folder / "broker" / "stdout.log").open("ab")
        self._process = subprocess.Popen([mosquitto_binary(), "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise ApplianceError(ErrorCode.BROKER_UNAVAILABLE, f"mosquitto exited: see {self.folder / 'broker'}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise ApplianceError(ErrorCode.BROKER_UNAVAILABLE, f"mosquitto did not listen on {self.port}")

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def reload(self) -> None:
        """Re-render the configuration and signal the broker (SIGHUP): it re-reads the CRL for
        new handshakes, but the access rules only at start (the dynamic-security plugin has no
        reload), so a newly issued identity needs ``restart``."""
        render(self.pki, self.folder / "broker", self.settings)
        if self.running:
            self._process.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self._process is None:
            return
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "ManagedBroker":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

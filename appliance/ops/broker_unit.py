"""Restarting the site's broker unit after a revocation, shared by the CLI and the console.

Mosquitto reads its CRL and access rules at start: a SIGHUP stops new handshakes with a
revoked certificate but keeps an established session open (docs/operations.md), so only a
restart cuts a revoked door off. A sandboxed console has no right over other units, so the
restart may fail: :class:`BrokerRestart` remembers why, and the caller reports it instead of
failing the revocation that has already happened.
"""
from __future__ import annotations

import subprocess

BROKER_UNIT = "appliance-broker.service"
RESTART_TIMEOUT_S = 30.0


class BrokerRestart:
    """Asks systemd to restart the broker; ``done`` and ``detail`` say how it went."""

    def __init__(self) -> None:
        self.detail = "broker restarted; live sessions of the device are cut"
        self.done = False

    def __call__(self) -> None:
        try:
            result = subprocess.run(["systemctl", "restart", BROKER_UNIT], capture_output=True, text=True,
                                    timeout=RESTART_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.detail = f"restart {BROKER_UNIT} now to cut a live session ({exc})"
            return
        self.done = result.returncode == 0
        if not self.done:
            why = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no reason given"]
            self.detail = f"restart {BROKER_UNIT} now to cut a live session (systemctl: {why[0]})"

"""The units in systemd/ as scripts/install-systemd.sh installs them, checked by systemd itself.

``systemd-analyze verify`` insists that ExecStart binaries exist, so the units are installed
(``--root`` into tmp_path) with the prefix of this checkout, whose .venv holds the real
``appliance`` entry point: exactly what the script writes on a Pi with its default prefix.
scripts/bootstrap.sh installs Debian's systemd package, so a missing tool is a failure.
"""
from __future__ import annotations

import configparser
import re
import subprocess
from pathlib import Path

import pytest

from appliance import paths
from unitfiles import install_units, service_section

REPLICA_TEMPLATE = "appliance-matcher@.service"  # made by the install script from the matcher's unit
UNITS = ("appliance-edge.service", "appliance-matcher.service", "appliance-broker.service",
         "appliance-maintenance.service", "appliance-maintenance.timer", REPLICA_TEMPLATE)
DAEMONS = ("appliance-edge.service", "appliance-matcher.service", REPLICA_TEMPLATE)
HARDENING = {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes", "NoNewPrivileges": "yes",
             "CapabilityBoundingSet": ""}
# docs/operations.md reports these figures; a unit that gets weaker fails here
MAX_EXPOSURE = {"appliance-edge.service": 1.5, "appliance-matcher.service": 1.3, REPLICA_TEMPLATE: 1.3,
                "appliance-broker.service": 1.2, "appliance-maintenance.service": 0.5}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    return install_units(tmp_path_factory.mktemp("root"))


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_analyze_verify_passes(installed, unit):
    result = subprocess.run(["systemd-analyze", "verify", str(installed / unit)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr  # no warnings either


def test_verify_catches_a_broken_unit(installed, tmp_path):
    broken = tmp_path / "appliance-edge.service"
    broken.write_text((installed / "appliance-edge.service").read_text()
                      .replace(str(paths.REPO_ROOT) + "/.venv/bin/appliance", "/nonexistent/appliance"))
    result = subprocess.run(["systemd-analyze", "verify", str(broken)], capture_output=True, text=True)
    assert result.returncode != 0 and "not executable" in result.stderr


@pytest.mark.parametrize("unit", [u for u in UNITS if u.endswith(".service")])
def test_hardening_and_data_folder_only(installed, unit):
    service = service_section(installed / unit)
    for key, value in HARDENING.items():
        assert service.get(key) == [value], (unit, key)
    assert len(service["ReadWritePaths"]) == 1 and service["ReadWritePaths"][0].startswith("/var/lib/appliance")
    assert service["User"][0].startswith("appliance") and service["User"][0] != "root"
    assert service["ExecStart"][0].split()[0] in (f"{paths.REPO_ROOT}/.venv/bin/appliance", "/usr/sbin/mosquitto")


@pytest.mark.parametrize("unit", DAEMONS)
def test_daemons_notify_watchdog_and_restart(installed, unit):
    service = service_section(installed / unit)
    assert service["Type"] == ["notify"] and service["Restart"] == ["always"]
    assert re.fullmatch(r"\d+s", service["WatchdogSec"][0])


def test_a_replica_instance_is_the_matchers_unit_under_its_own_name(installed):
    """``appliance-matcher@NAME``: every line of the matcher's unit, the replica's name given
    by the instance (``%i``: ``%I`` would unescape each '-' of ``matcher-2`` into '/')."""
    matcher = (installed / "appliance-matcher.service").read_text().splitlines()
    replica = (installed / REPLICA_TEMPLATE).read_text().splitlines()
    changed = [(before, after) for before, after in zip(matcher, replica, strict=True) if before != after]
    start = service_section(installed / "appliance-matcher.service")["ExecStart"][0]
    assert changed == [("Description=Face appliance matcher", "Description=Face appliance matcher replica %i"),
                       (f"ExecStart={start}", f"ExecStart={start} --name %i")]


def test_edge_may_use_camera_and_gpio_only(installed):
    service = service_section(installed / "appliance-edge.service")
    assert service["DevicePolicy"] == ["closed"]
    allowed = {entry.split()[0] for entry in service["DeviceAllow"]}
    assert {"char-video4linux", "char-gpiochip"} <= allowed
    assert all("video" in e or "media" in e or "gpio" in e or "dma_heap" in e for e in allowed)


def test_timer_runs_the_maintenance_service(installed):
    timer = configparser.ConfigParser(strict=False)
    timer.read(installed / "appliance-maintenance.timer")
    assert timer["Timer"]["OnCalendar"] and timer["Timer"]["Persistent"] == "true"
    maintenance = service_section(installed / "appliance-maintenance.service")
    assert maintenance["Type"] == ["oneshot"] and " maintenance " in maintenance["ExecStart"][0] + " "


@pytest.mark.parametrize("unit", list(MAX_EXPOSURE))
def test_security_exposure_stays_as_documented(installed, unit):
    result = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(installed / unit)],
                            capture_output=True, text=True)
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE[unit]

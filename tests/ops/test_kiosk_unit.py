"""systemd/appliance-kiosk.service as scripts/install-systemd.sh installs it: systemd's own check,
its order after the edge, its hardening, and its command line run as the service manager would
run it - against a real kiosk page served on 127.0.0.1 - with the chromium command it would exec
launched headless with the same no-network flags (the page still loads: only the loopback
address resolves)."""
from __future__ import annotations

import shlex
import socket
import subprocess
from pathlib import Path

import pytest

from appliance import paths
from appliance.edge.kiosk.preview import Preview
from appliance.edge.kiosk.server import KioskDisplay, KioskServer, door_notice
from appliance.errors import ErrorCode
from unitfiles import install_units, service_section

UNIT = "appliance-kiosk.service"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    return install_units(tmp_path_factory.mktemp("root")) / UNIT


@pytest.fixture
def page():
    display = KioskDisplay("en", Preview(0.0, 480), door_notice("en"))
    server = KioskServer(display, 0).start()
    yield server
    server.stop()


def start_command(unit: Path, config: Path, *extra: str) -> list[str]:
    """The unit's ExecStart with the configuration file of this test."""
    command = shlex.split(service_section(unit)["ExecStart"][0])
    command[command.index("--config") + 1] = str(config)
    return [*command, *extra]


def kiosk_config(tmp_path: Path, port: int, enabled: bool = True) -> Path:
    path = tmp_path / "appliance.toml"
    path.write_text(f"[kiosk]\nenabled = {str(enabled).lower()}\nport = {port}\nlanguage = \"en\"\n", encoding="utf-8")
    return path


def test_systemd_analyze_verify_passes(installed):
    result = subprocess.run(["systemd-analyze", "verify", str(installed)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_after_the_edge_as_its_own_user_with_only_its_profile_writable(installed):
    text = installed.read_text()
    assert "After=appliance-edge.service" in text and "Wants=appliance-edge.service" in text
    service = service_section(installed)
    assert service["User"] == ["appliance-kiosk"] and service["ReadWritePaths"] == ["/var/lib/appliance-kiosk"]
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "NoNewPrivileges": "yes",
                       "CapabilityBoundingSet": ""}.items():
        assert service[key] == [value], key
    assert service["ExecStart"][0].split()[:3] == [f"{paths.REPO_ROOT}/.venv/bin/python", "-m",
                                                   "appliance.edge.kiosk.browser"]


def test_the_command_waits_for_the_page_and_runs_chromium_in_kiosk_mode(installed, page, tmp_path):
    config = kiosk_config(tmp_path, page.port)
    result = subprocess.run(start_command(installed, config, "--print", "--profile", str(tmp_path / "profile")),
                            capture_output=True, text=True, timeout=60, env={"PATH": "/usr/bin:/bin", "DISPLAY": ":0"})
    assert result.returncode == 0, result.stderr
    command = shlex.split(result.stdout)
    assert command[0] == str(CHROMIUM) and "--kiosk" in command and f"--app={page.url}" in command
    assert "--incognito" in command
    assert any(flag.startswith("--host-resolver-rules=MAP * ~NOTFOUND") for flag in command)
    # the same flags reach the page in a real chromium (headless here: no display on this machine)
    headless = [flag for flag in command if flag not in ("--kiosk",) and not flag.startswith("--app=")]
    dom = subprocess.run([*headless, "--headless=new", "--no-sandbox", "--dump-dom", page.url],
                         capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT_S)
    assert 'lang="en"' in dom.stdout and "Privacy notice" in dom.stdout, dom.stderr[-2000:]


def test_without_the_page_it_gives_up_saying_why(installed, tmp_path):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    config = kiosk_config(tmp_path, free)
    result = subprocess.run(start_command(installed, config, "--print", "--wait", "1"), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == ErrorCode.REQUEST_TIMEOUT.value[1]
    assert "appliance-edge.service" in result.stderr


def test_a_disabled_kiosk_is_a_configuration_error(installed, tmp_path):
    result = subprocess.run(start_command(installed, kiosk_config(tmp_path, 8765, enabled=False), "--print"),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == ErrorCode.CONFIG_INVALID.value[1] and "enabled = false" in result.stderr

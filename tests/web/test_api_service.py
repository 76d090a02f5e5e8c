"""What ships: the real ``appliance console`` command serving HTTPS with a certificate from
the project CA (a client verifies it against ca.crt), stopping cleanly on SIGTERM, with an
access log that never holds a query string, after finishing an update cut short; and its systemd
unit, checked by systemd."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from apikit import bearer
from appliance import paths
from appliance.broker.pki import ProjectPKI
from appliance.ops.updates import Release, Slots, SlotState
from appliance.security.roles import Role
from authkit import make_token
from polling import wait_for

APPLIANCE = Path(sys.executable).parent / "appliance"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
SECRET_QUERY = "Ouyang-Mingzhu"
UNIT = "appliance-console.service"
CONFIG_INVALID_EXIT = 2
UPDATED_PACK = "tiny"  # not a working pack: its interrupted update is rolled back


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def environment(root: Path, config: Path) -> dict[str, str]:
    return {**os.environ, "APPLIANCE_DATA_DIR": str(root), "APPLIANCE_CONFIG": str(config), "PYTHONUNBUFFERED": "1"}


@pytest.fixture
def site(tmp_path):
    root, port = tmp_path / "data", free_port()
    config = tmp_path / "appliance.toml"
    config.write_text(f'[console]\nport = {port}\n\n[ops]\nlog_level = "info"\nlog_format = "json"\n')
    token = make_token(root, Role.AUDITOR)
    ProjectPKI(root / "pki").create_ca()
    return root, config, port, token


def test_the_console_command_serves_https_verified_against_the_project_ca(site, tmp_path):
    root, config, port, token = site
    env = environment(root, config)
    missing = subprocess.run([str(APPLIANCE), "console"], env=env, capture_output=True, text=True, timeout=60)
    assert missing.returncode != 0 and "appliance console certificate" in missing.stderr
    issued = subprocess.run([str(APPLIANCE), "console", "certificate", "--host", "127.0.0.1", "--host", "localhost"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert issued.returncode == 0, issued.stderr
    # an update of a pack cut short on this host (state on trial): self-tested before the console serves
    updated = Slots(root / "packs", UPDATED_PACK)
    updated.install(Release("model-pack", UPDATED_PACK, "2.0.0"), {"model.bin": b"\0" * 16})
    updated.activate("2.0.0")
    logs = tmp_path / "console.log"
    with logs.open("w") as log:
        server = subprocess.Popen([str(APPLIANCE), "console"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        trusted = ssl.create_default_context(cafile=str(root / "pki" / "ca.crt"))
        url = f"https://127.0.0.1:{port}"
        with httpx.Client(base_url=url, verify=trusted, timeout=10) as client:
            def answering() -> bool:
                try:
                    return client.get("/api/openapi.json").status_code == 200
                except httpx.TransportError:
                    return False

            assert wait_for(answering, START_TIMEOUT_S), logs.read_text()
            assert client.get("/api/events", params={"device": SECRET_QUERY}, headers=bearer(token)).status_code == 200
            assert client.get("/api/events").status_code == 401
        with httpx.Client(verify=ssl.create_default_context(), timeout=10) as stranger:
            with pytest.raises(httpx.ConnectError):  # not signed by a public CA: only the site's CA vouches
                stranger.get(f"{url}/api/openapi.json")
        with pytest.raises(httpx.TransportError):  # no plain HTTP on the TLS port
            httpx.get(f"http://127.0.0.1:{port}/api/openapi.json", timeout=10)
        server.send_signal(signal.SIGTERM)
        assert server.wait(STOP_TIMEOUT_S) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    text = logs.read_text()
    assert "console: ready on https://127.0.0.1" in text and "console: stopped" in text
    assert updated.state() == SlotState(active=None, failed=["2.0.0"])
    assert "an interrupted update is rolled back" in text
    assert "/api/events" in text and SECRET_QUERY not in text  # the access log drops query strings


def test_plain_http_is_refused_off_loopback(site):
    root, config, _, _ = site
    result = subprocess.run([str(APPLIANCE), "console", "--insecure-http", "--bind", "0.0.0.0"],
                            env=environment(root, config), capture_output=True, text=True, timeout=60)
    assert result.returncode == CONFIG_INVALID_EXIT and "loopback" in result.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze missing: scripts/bootstrap.sh installs Debian's systemd package")
    root = tmp_path_factory.mktemp("root")
    subprocess.run(["bash", str(paths.REPO_ROOT / "scripts" / "install-systemd.sh"), "--root", str(root),
                    "--prefix", str(paths.REPO_ROOT)], check=True, capture_output=True, text=True)
    return root / "etc" / "systemd" / "system" / UNIT


def test_the_unit_passes_systemd_verify_and_is_sandboxed_like_the_matcher(installed):
    result = subprocess.run(["systemd-analyze", "verify", str(installed)], capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    lines = installed.read_text().splitlines()
    for setting in ("Type=notify", "ProtectSystem=strict", "NoNewPrivileges=yes", "CapabilityBoundingSet=",
                    "User=appliance", "ReadWritePaths=/var/lib/appliance", "PrivateTmp=yes", "WatchdogSec=30s"):
        assert setting in lines, setting
    assert f"ExecStart={paths.REPO_ROOT}/.venv/bin/appliance console --config /etc/appliance/appliance.toml" in lines
    exposure = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager", str(installed)],
                              capture_output=True, text=True)
    matcher = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                              str(installed.with_name("appliance-matcher.service"))], capture_output=True, text=True)
    assert exposure.stdout.splitlines()[-1].split(":")[-1] == matcher.stdout.splitlines()[-1].split(":")[-1]

"""Fixtures of the web tests.

The console's browser tests (``test_console_browser.py``) need a whole site: Mosquitto with
TLS and the project's ACL, a matcher replica recording door events in the sync store, a
door (cache, outbox, sync client) and the console itself - ``create_app`` served by a real
uvicorn server over TLS with a certificate of the project PKI - and headless Chromium
(Debian's ``/usr/bin/chromium``; never a downloaded browser). Chromium is told to trust the
project CA by pinning the CA's public key (``--ignore-certificate-errors-spki-list``; the
server sends its certificate with the CA's, so the pinned key is in the chain it checks):
no certificate error of another issuer is ignored.
"""
from __future__ import annotations

import base64
import dataclasses
import hashlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "offline"))  # offkit: a site with a broker

CHROMIUM = Path("/usr/bin/chromium")
SERVER_NAME = "console"
HOSTS = ("127.0.0.1", "localhost")
LOOPBACK = "127.0.0.1"
SERVER_START_S = 30.0
GENEROUS = {"requests_per_s": 10_000.0, "request_burst": 10_000}  # the browser tests are not about rate limits
DOOR = "door-a"


@dataclass
class ConsoleSite:
    """What the browser tests drive: the console's address, the site behind it and the door."""

    url: str
    ca_pin: str
    config: object
    site: object
    matcher: object
    door: object
    folder: Path
    door_name: str = DOOR


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def spki_pin(pem: bytes) -> str:
    """base64(sha256(SubjectPublicKeyInfo)) of a certificate: Chromium's pin format."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    public = x509.load_pem_x509_certificate(pem).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(public).digest()).decode("ascii")


@contextmanager
def serving(app, folder: Path, pki) -> Iterator[str]:
    """``app`` (``create_app``'s) under a real uvicorn server over TLS, with a certificate of
    ``pki`` (the project PKI) sent with its CA; yields the base URL."""
    import uvicorn

    cert, key = pki.issue_server(SERVER_NAME, HOSTS)
    chain = folder / "console-chain.pem"  # the certificate and its CA, as a server should send them
    chain.write_bytes(cert.read_bytes() + pki.ca_cert.read_bytes())
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host=LOOPBACK, port=port,
                                           ssl_certfile=str(chain), ssl_keyfile=str(key), log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="console-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + SERVER_START_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the console server did not start"
    try:
        yield f"https://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(SERVER_START_S)


@contextmanager
def launched_chromium(ca_pin: str):
    """Headless Debian Chromium that trusts the project CA (by its pinned key) and nothing new."""
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium package (browsers are never downloaded)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=[f"--ignore-certificate-errors-spki-list={ca_pin}"])
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def console_site(tmp_path_factory, config, pipeline):
    """A provisioned site (broker, matcher, door) and its console served over TLS."""
    from appliance.config import ConsoleConfig
    from appliance.edge.offline import open_door
    from appliance.site import Site
    from appliance.web.app import create_app
    from offkit import offline_config, start_matcher

    folder = tmp_path_factory.mktemp("console-site")
    site = Site(folder)
    site.provision((DOOR,), matchers=("matcher-1",))
    site.data = site.protected_data(config)
    site.broker.start()
    console_config = dataclasses.replace(config, security=site.security(config),
                                         console=dataclasses.replace(ConsoleConfig(), **GENEROUS))
    try:
        with serving(create_app(console_config, folder), folder, site.broker.pki) as url:
            matcher = start_matcher(site, threshold=pipeline.threshold)
            door = open_door(site, DOOR, offline_config(mode="central"), pipeline.threshold)
            try:
                yield ConsoleSite(url, spki_pin(site.broker.pki.ca_cert.read_bytes()), console_config, site,
                                  matcher, door, folder)
            finally:
                door.close()
                matcher.stop()
                matcher.store.close()
    finally:
        site.broker.stop()
        site.data.close()


@pytest.fixture(scope="module")
def chromium(console_site):
    """Headless Debian Chromium that trusts the console site's CA."""
    with launched_chromium(console_site.ca_pin) as browser:
        yield browser


@pytest.fixture(scope="session")
def console_kit():
    """``serving``, ``launched_chromium`` and ``spki_pin`` for tests that serve a console on a
    site of their own (``tests/conftest.py`` shares the module name, so they are not imported)."""
    return ConsoleKit(serving, launched_chromium, spki_pin)


@dataclass(frozen=True)
class ConsoleKit:
    serving: object
    launched_chromium: object
    spki_pin: object

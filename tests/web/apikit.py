"""A real console application over a real data folder, for the API tests.

Everything is what production runs: SQLCipher stores and keys in the test's folder, accounts
and API tokens made through ``Accounts`` (``tests/authkit.py``), the project PKI for devices,
the sync store the matcher records door events in, and ``create_app`` served in-process by
Starlette's test client over ``https://testserver`` (the session cookie is Secure).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fastapi.testclient import TestClient

from appliance.broker.pki import ProjectPKI
from appliance.config import Config
from appliance.config import ConsoleConfig
from appliance.matcher.sync_store import EventRecord
from appliance.ops import provisioning
from appliance.security.roles import Role
from appliance.web.app import create_app
from appliance.web.services import PKI_DIR
from authkit import make_token

BASE_URL = "https://testserver"
GENEROUS = {"requests_per_s": 10_000.0, "request_burst": 10_000}  # tests that are not about rate limits
DEVICES = (("door-1", "lobby", ("verify",)), ("door-2", "lab", ("verify", "identify")))


def api_config(**console) -> Config:
    return dataclasses.replace(Config(), console=dataclasses.replace(ConsoleConfig(), **{**GENEROUS, **console}))


def tokens_for(root: Path, config: Config) -> dict[Role, str]:
    """One API token per role, with every scope the role can use."""
    return {role: make_token(root, role, config=config) for role in Role}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextmanager
def running(root: Path, config: Config) -> Iterator[TestClient]:
    """The application over ``root``, started and (on exit) shut down, its stores closed."""
    with TestClient(create_app(config, root), base_url=BASE_URL) as client:
        yield client


def provision_devices(root: Path) -> ProjectPKI:
    pki = ProjectPKI(root / PKI_DIR)
    pki.create_ca()
    for name, group, modes in DEVICES:
        provisioning.enroll_device(pki, name, group, modes)
    return pki


def record_events(client: TestClient, events: list[EventRecord], now: float | None = None) -> None:
    """Events as the matcher's EventRecorder records them from device outboxes."""
    services = client.app.state.services
    with services.stores():
        services.sync.record_events(events, time.time() if now is None else now)


def door_event(event_id: str, device: str, outcome: str, at: float, kind: str = "pass") -> EventRecord:
    return EventRecord(event_id, device, "event", kind, at,
                       {"outcome": outcome, "reason": "test", "latency_ms": 120.0, "faces_in_view": 1})

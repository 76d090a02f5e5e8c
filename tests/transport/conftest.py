"""A real Mosquitto broker with TLS and ACLs, started and stopped by the tests themselves."""
from __future__ import annotations

import os
import resource

import pytest

from appliance.broker.process import ManagedBroker

DEVICES = ("door-a", "door-b")
MATCHERS = ("matcher-1", "matcher-2")
AUDITORS = ("auditor-1",)


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    managed = ManagedBroker(tmp_path_factory.mktemp("broker"))
    managed.provision(devices=DEVICES, matchers=MATCHERS, auditors=AUDITORS, integrations=("erp",))
    managed.start()
    yield managed
    managed.stop()


@pytest.fixture(scope="module")
def site(tmp_path_factory, pipeline, faces, config):
    from sitekit import make_site

    provisioned = make_site(tmp_path_factory, pipeline, faces, config)
    yield provisioned
    provisioned.broker.stop()
    provisioned.data.close()


SELECT_LIMIT = 1024  # FD_SETSIZE: select() cannot watch a descriptor from here on


@pytest.fixture
def high_descriptors():
    """Descriptors 0-1100 held open, so sockets opened meanwhile land above ``SELECT_LIMIT``
    (as in a process holding many files and connections)."""
    taken = 1100
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < taken + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, taken + 200), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(taken)]
    yield SELECT_LIMIT
    for descriptor in held:
        os.close(descriptor)
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

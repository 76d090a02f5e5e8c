"""A real Mosquitto broker with TLS and ACLs, started and stopped by the tests themselves."""
from __future__ import annotations

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

"""A whole site in one folder, for development, tests and the demo: broker and PKI, node
keys and the public-key directory, and the central protected stores.

Layout under ``folder`` (a host's data folder): ``pki/`` (CA, certificates), ``broker/``
(rendered Mosquitto config, data), ``nodes/<device>/`` (each device's envelope keys, cache
and outbox), the matcher's SQLCipher stores with their ``keys/``, and ``directory.json``
(public keys of every node).
Production puts the same pieces on different machines; ``docs/deployment.md`` says how.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from appliance.broker.process import ManagedBroker
from appliance.config import Config, SecurityConfig
from appliance.ops import provisioning
from appliance.protocol.directory import MATCHER, MATCHER_NODE, NodeDirectory
from appliance.security.envelope import NodeKeys
from appliance.security.keys import ALL_KEYS, NODE_AGREEMENT, NODE_SIGNING, FileKeyProvider, ensure_keys
from appliance.stores.protected import KEYS_DIR, ProtectedData
from appliance.transport.mqtt import MqttSettings, settings_for


class Site:
    def __init__(self, folder: str | Path, port: int | None = None, host: str = "127.0.0.1"):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.broker = ManagedBroker(self.folder, port=port, host=host)
        # the central stores and their keys sit at the top of the folder, where the admin
        # commands (ProtectedData.from_config on the data folder) find them too
        self.central = self.folder

    @property
    def directory(self) -> NodeDirectory:
        return NodeDirectory.load(self.folder / "directory.json")

    def provision(self, devices: tuple[str, ...], matchers: tuple[str, ...] = ("matcher-1",),
                  auditors: tuple[str, ...] = (), integrations: tuple[str, ...] = ()) -> None:
        """Certificates for every identity, envelope keys for every node (idempotent).
        Devices are enrolled with a policy allowing both 1:1 and 1:N matching."""
        self.broker.provision((), matchers, auditors, integrations)
        known = self.broker.pki.identities()
        for device in devices:
            if device not in known:
                provisioning.enroll_device(self.broker.pki, device, modes=provisioning.MATCHING_MODES)
        for replica in matchers:
            self.add_matcher_keys(replica)
        for device in devices:
            self.add_device_keys(device)

    def add_device_keys(self, device: str) -> None:
        """The device's envelope key pair (in ``nodes/<device>``) and its directory entry."""
        self.directory.add(self.device_keys(device))

    def add_matcher_keys(self, replica: str) -> None:
        """A matcher replica signs under its own name with the shared matcher keys."""
        directory, central = self.directory, self.central_keys()
        directory.add(central, MATCHER)
        directory.add(central, MATCHER, name=replica)

    def security(self, config: Config) -> SecurityConfig:
        return dataclasses.replace(config.security, node_id=MATCHER_NODE, key_provider="file",
                                   key_dir=str(self.central / KEYS_DIR))

    def central_keys(self) -> NodeKeys:
        provider = FileKeyProvider(self.central / KEYS_DIR)
        ensure_keys(provider, ALL_KEYS)
        return NodeKeys.from_provider(MATCHER_NODE, provider)

    def device_keys(self, device: str) -> NodeKeys:
        provider = FileKeyProvider(self.folder / "nodes" / device)
        ensure_keys(provider, (NODE_SIGNING, NODE_AGREEMENT))
        return NodeKeys.from_provider(device, provider)

    def protected_data(self, config: Config) -> ProtectedData:
        self.central_keys()
        return ProtectedData(self.central, FileKeyProvider(self.central / KEYS_DIR), self.security(config))

    def mqtt(self, name: str, **options) -> MqttSettings:
        return settings_for(self.broker.pki, name, self.broker.host, self.broker.port, **options)

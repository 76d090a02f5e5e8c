"""A whole site in one folder, for development, tests and the demo: broker and PKI, node
keys and the public-key directory, and the central protected stores.

Layout under ``folder`` (a host's data folder): ``pki/`` (CA, certificates), ``broker/``
(rendered Mosquitto config, data), ``nodes/<device>/`` (each device's envelope keys, cache
and outbox), the matcher's SQLCipher stores with their ``keys/``, and ``directory.json``
(public keys of every node, and the envelope suite each one seals with). ``central`` puts the
matcher's stores and their keys in a folder of their own instead (a volume of their own, as on
a central server; the full-disk tests fill only it).
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
from appliance.security.suites import Suite
from appliance.security.keys import ALL_KEYS, NODE_AGREEMENT, NODE_SIGNING, FileKeyProvider, ensure_keys
from appliance.stores.protected import KEYS_DIR, ProtectedData
from appliance.transport.mqtt import MqttSettings, settings_for


class Site:
    def __init__(self, folder: str | Path, port: int | None = None, host: str = "127.0.0.1",
                 central: str | Path | None = None):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.broker = ManagedBroker(self.folder, port=port, host=host)
        # by default the central stores and their keys sit at the top of the folder, where the
        # admin commands (ProtectedData.from_config on the data folder) find them too
        self.central = Path(central) if central is not None else self.folder
        self.central.mkdir(parents=True, exist_ok=True)

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

    def recorded_suite(self, node: str) -> Suite | None:
        """The envelope suite the directory says ``node`` seals with (None: not provisioned)."""
        peer = self.directory.peers.get(node)
        return None if peer is None else peer.suite

    def add_device_keys(self, device: str, suite: Suite | str | None = None) -> None:
        """The device's envelope key pairs (in ``nodes/<device>``) and its directory entry.
        ``suite`` (``[security] crypto_suite``): by default the one the device already has, else
        the matcher's, so that doors provisioned on an SM site get SM2 keys too."""
        chosen = _suite(suite) or self.recorded_suite(device) or self.recorded_suite(MATCHER_NODE) or Suite.DEFAULT
        self.directory.add(self.device_keys(device, chosen))

    def add_matcher_keys(self, replica: str, suite: Suite | str | None = None) -> None:
        """A matcher replica signs under its own name with the shared matcher keys."""
        directory, central = self.directory, self.central_keys(suite)
        directory.add(central, MATCHER)
        directory.add(central, MATCHER, name=replica)

    def use_matcher_suite(self, suite: Suite | str) -> None:
        """Switch the matcher and every replica to ``suite`` (SM2 keys made when needed), so the
        directory says what the matcher's ``[security] crypto_suite`` does."""
        chosen = _suite(suite) or Suite.DEFAULT
        central = self.central_keys(chosen)
        if self.directory.peers.get(MATCHER_NODE) == central.public():
            return
        directory = self.directory
        for name, role in list(directory.roles.items()):
            if role == MATCHER:
                directory.add(central, MATCHER, name=name)

    def security(self, config: Config) -> SecurityConfig:
        return dataclasses.replace(config.security, node_id=MATCHER_NODE, key_provider="file",
                                   key_dir=str(self.central / KEYS_DIR))

    def central_keys(self, suite: Suite | str | None = None) -> NodeKeys:
        """The matcher's keys; ``suite`` by default the one the directory records for it."""
        provider = FileKeyProvider(self.central / KEYS_DIR)
        ensure_keys(provider, ALL_KEYS)
        return NodeKeys.from_provider(MATCHER_NODE, provider,
                                      _suite(suite) or self.recorded_suite(MATCHER_NODE) or Suite.DEFAULT)

    def device_keys(self, device: str, suite: Suite | str | None = None) -> NodeKeys:
        """A door's keys; ``suite`` by default the one its provisioning recorded in the
        directory (which the door's bundle carries), so the door seals as the site decided."""
        provider = FileKeyProvider(self.folder / "nodes" / device)
        ensure_keys(provider, (NODE_SIGNING, NODE_AGREEMENT))
        return NodeKeys.from_provider(device, provider, _suite(suite) or self.recorded_suite(device) or Suite.DEFAULT)

    def protected_data(self, config: Config) -> ProtectedData:
        self.use_matcher_suite(config.security.crypto_suite)
        return ProtectedData(self.central, FileKeyProvider(self.central / KEYS_DIR), self.security(config))

    def mqtt(self, name: str, **options) -> MqttSettings:
        return settings_for(self.broker.pki, name, self.broker.host, self.broker.port, **options)


def _suite(suite: Suite | str | None) -> Suite | None:
    return Suite.named(suite) if isinstance(suite, str) else suite

"""A site broker bridged to the central broker (docs/deployment.md, "Sites bridged to a centre").

Doors keep talking to the broker of their own site; that broker forwards their traffic to the
central broker over one connection, where the matcher replicas share the requests
(``$share/matchers/...``). The bridge is a Mosquitto ``connection`` block rendered into the
site broker's configuration: MQTT 5, mutual TLS with a ``bridge`` certificate of the project
PKI (its CN is the bridge's identity on the central broker), ``cleansession false`` so that
both ends keep the bridge's session and queue QoS 1 messages while the link is down, and one
``topic`` line per door and direction: ``topics.BRIDGE_UP`` out, ``topics.BRIDGE_DOWN`` in
(decisions at QoS 0: ``QOS_DOWN`` says why).

On the central broker the bridge identity holds exactly those topics (``rights``): a site can
neither speak for another site's doors nor read what is sent to them. Which doors belong to
which bridge is recorded beside the PKI registry (``bridges.json``), by ``provision_bridge``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from appliance.broker.pki import IDENTITY, Identity, ProjectPKI
from appliance.config.bridge_tables import (
    DEFAULT_KEEPALIVE_S, DEFAULT_PORT, DEFAULT_RESTART_BASE_S, DEFAULT_RESTART_CAP_S, MAX_KEEPALIVE_S, MAX_RESTART_S,
    MIN_KEEPALIVE_S, MIN_RESTART_S, BridgeConfig,
)
from appliance.durable_file import SHARED, write_durably
from appliance.errors import ApplianceError, ErrorCode
from appliance.filecache import read_json
from appliance.protocol import topics

BRIDGES_FILE = "bridges.json"  # bridge name -> the doors of its site, in the PKI folder
BRIDGE_ROLE = "bridge"
BRIDGE_QOS = 1  # acknowledged hop by hop, queued while the link is down
# Decisions cross at QoS 0 (QOS_DOWN). Mosquitto leaves Nagle's algorithm on a bridge's own socket
# (set_tcp_nodelay covers accepted sockets only), so the PUBACK of a QoS 1 decision going up
# held the door's next request until the central broker's delayed ACK: 44 ms per request
# instead of 0.3 ms (measured on loopback). A decision lost with the link costs one retry of
# the door, answered from the replica's cache; deltas and wipe orders stay QoS 1.
QOS_DOWN = {topics.DECISION: 0}


@dataclass(frozen=True)
class BridgeSettings:
    """The site broker's side of one bridge: its identity and where the central broker is."""

    name: str  # the bridge identity (certificate CN, client id on the central broker)
    remote_host: str
    remote_port: int = DEFAULT_PORT
    # reconnection back-off of the bridge: first wait and ceiling (Mosquitto adds jitter)
    restart_base_s: int = DEFAULT_RESTART_BASE_S
    restart_cap_s: int = DEFAULT_RESTART_CAP_S
    keepalive_s: int = DEFAULT_KEEPALIVE_S

    def __post_init__(self) -> None:
        if not IDENTITY.match(self.name):
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"bridge {self.name!r}: lower-case letters, digits, '-'")
        if not self.remote_host or any(c.isspace() or c == ":" for c in self.remote_host):
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"bridge {self.name}: host {self.remote_host!r}")
        if not 0 < self.remote_port < 65536:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"bridge {self.name}: port {self.remote_port}")
        if not MIN_RESTART_S <= self.restart_base_s <= self.restart_cap_s <= MAX_RESTART_S:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"bridge {self.name}: restart back-off must satisfy "
                                 f"{MIN_RESTART_S} <= base <= cap <= {MAX_RESTART_S} s")
        if not MIN_KEEPALIVE_S <= self.keepalive_s <= MAX_KEEPALIVE_S:
            raise ApplianceError(ErrorCode.CONFIG_INVALID,
                                 f"bridge {self.name}: keepalive {MIN_KEEPALIVE_S}..{MAX_KEEPALIVE_S} s")

    @classmethod
    def from_config(cls, table: BridgeConfig) -> "BridgeSettings | None":
        """The ``[site_bridge]`` table's bridge; None when it names none."""
        if not table.name:
            return None
        return cls(table.name, table.remote_host, table.remote_port, table.restart_base_s, table.restart_cap_s,
                   table.keepalive_s)

    @classmethod
    def parse(cls, name: str, remote: str) -> "BridgeSettings":
        """``remote`` as ``host:port`` or a bare host (port 8883); a host name or IPv4 address
        (Mosquitto's ``address`` takes no bracketed IPv6 literal)."""
        host, _, port = remote.partition(":")
        try:
            return cls(name, host, int(port) if port else DEFAULT_PORT)
        except ValueError:
            raise ApplianceError(ErrorCode.CONFIG_INVALID, f"bridge target {remote!r}: host:port") from None


def provision_bridge(pki: ProjectPKI, name: str, devices: tuple[str, ...]) -> Identity:
    """Issue (or rotate) the bridge certificate ``name`` and record the doors it carries.
    Every door must be a provisioned, active device of this PKI: a typo would otherwise
    silently leave a door cut off from the centre."""
    known = pki.identities()
    for device in devices:
        identity = known.get(device)
        if identity is None or identity.role != "device" or identity.revoked:
            raise ApplianceError(ErrorCode.PKI_ERROR, f"bridge {name}: {device!r} is not an active device")
    current = known.get(name)
    if current is not None and current.role != BRIDGE_ROLE:
        raise ApplianceError(ErrorCode.PKI_ERROR, f"{name} is a {current.role}, not a bridge")
    identity = pki.issue_client(name, BRIDGE_ROLE)
    bridges = dict(read_json(pki.folder / BRIDGES_FILE, {}))
    bridges[name] = sorted(set(devices))
    write_durably(pki.folder / BRIDGES_FILE, json.dumps(dict(sorted(bridges.items())), indent=2).encode("utf-8"),
                  SHARED)
    return identity


def bridged_devices(pki: ProjectPKI, name: str) -> tuple[str, ...]:
    """The active doors that bridge ``name`` carries (a door revoked since is left out)."""
    identities = pki.identities()
    listed = read_json(pki.folder / BRIDGES_FILE, {}).get(name, [])
    return tuple(d for d in listed if d in identities and not identities[d].revoked)


def rights(pki: ProjectPKI, name: str) -> tuple[tuple[str, str], ...]:
    """The bridge's rules on the central broker, in ``topics.RIGHTS``' terms: publish what its
    doors send up, subscribe to what is sent down to them; nothing else."""
    granted: list[tuple[str, str]] = []
    for device in bridged_devices(pki, name):
        granted += [(topics.PUBLISH, topics.device_topic(device, kind)) for kind in topics.BRIDGE_UP]
        granted += [(topics.SUBSCRIBE, topics.device_topic(device, kind)) for kind in topics.BRIDGE_DOWN]
    return tuple(granted)


def tls_files(pki: ProjectPKI, name: str) -> dict[str, Path]:
    """The files the bridge presents and checks: the project CA, its certificate and key."""
    files = {"bridge_cafile": pki.ca_cert, "bridge_certfile": pki.cert(name), "bridge_keyfile": pki.key(name)}
    for path in files.values():
        if not path.is_file():
            raise ApplianceError(ErrorCode.FILE_NOT_FOUND, f"{path}: run 'appliance provision bridge {name} "
                                 "--devices ...' on the central PKI first")
    return files


def render_connection(pki: ProjectPKI, bridge: BridgeSettings, tls: dict[str, Path]) -> str:
    """The ``connection`` block for the site broker's configuration (it must come last: every
    line after ``connection`` belongs to the bridge)."""
    devices = bridged_devices(pki, bridge.name)
    if not devices:
        raise ApplianceError(ErrorCode.CONFIG_INVALID, f"bridge {bridge.name} carries no active door: "
                             "provision it with --devices")
    lines = [
        f"# bridge to the central broker: {len(devices)} doors (appliance.broker.bridge)",
        f"connection {bridge.name}",
        f"address {bridge.remote_host}:{bridge.remote_port}",
        "bridge_protocol_version mqttv50",
        f"remote_clientid {bridge.name}",
        f"local_clientid {bridge.name}-local",
        # both ends keep the bridge's session: queued while the link is down, sent on reconnect
        "cleansession false",
        "local_cleansession false",
        "start_type automatic",
        f"restart_timeout {bridge.restart_base_s} {bridge.restart_cap_s}",
        f"keepalive_interval {bridge.keepalive_s}",
        # an ordinary MQTT 5 client to the central broker (EMQX too); no $SYS notices to publish,
        # which the central rules would refuse anyway
        "try_private false",
        "notifications false",
        "bridge_insecure false",
        "bridge_tls_version tlsv1.2",
        *(f"{option} {path.resolve()}" for option, path in tls.items()),
    ]
    for device in devices:
        lines += [f"topic {topics.device_topic(device, kind)} out {BRIDGE_QOS}" for kind in topics.BRIDGE_UP]
        lines += [f"topic {topics.device_topic(device, kind)} in {QOS_DOWN.get(kind, BRIDGE_QOS)}"
                  for kind in topics.BRIDGE_DOWN]
    return "\n".join(lines) + "\n"

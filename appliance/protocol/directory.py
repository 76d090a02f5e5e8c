"""Who is who on the wire: the public envelope keys of every node (devices, the matcher).

Written by provisioning next to the PKI; every node loads it to seal to its peers and to
check their signatures. Only public keys live here; private keys stay with the node's key
provider (``appliance.security.keys``). A node with SM2 keys has them beside its default ones
(``sm2_signing``, ``sm2_agreement``) and the suite it seals with (``suite``); an entry without
them is a default-suite node, as every entry written before the SM suite existed.
"""
from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from appliance.durable_file import SHARED, write_durably
from appliance.errors import ApplianceError, ErrorCode
from appliance.security.envelope import NodeKeys, PeerKeys, Sm2Public
from appliance.security.sm import Sm2PublicKey
from appliance.security.suites import Suite

MATCHER_NODE = "matcher"  # devices seal to this key; every replica holds its private half
DEVICE, MATCHER, CONSOLE = "device", "matcher", "console"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _peer(name: str, entry: dict) -> PeerKeys:
    sm2 = None
    if "sm2_signing" in entry or "sm2_agreement" in entry:
        sm2 = Sm2Public(Sm2PublicKey(base64.b64decode(entry["sm2_signing"])),
                        Sm2PublicKey(base64.b64decode(entry["sm2_agreement"])))
    return PeerKeys(name, Ed25519PublicKey.from_public_bytes(base64.b64decode(entry["signing"])),
                    X25519PublicKey.from_public_bytes(base64.b64decode(entry["agreement"])), sm2,
                    Suite.named(entry.get("suite", Suite.DEFAULT.label)))


def _entry(role: str, peer: PeerKeys) -> dict[str, str]:
    entry = {"role": role, "signing": _b64(peer.signing.public_bytes_raw()),
             "agreement": _b64(peer.agreement.public_bytes_raw())}
    if peer.sm2 is not None:
        entry.update(sm2_signing=_b64(peer.sm2.signing.raw), sm2_agreement=_b64(peer.sm2.agreement.raw))
    if peer.suite is not Suite.DEFAULT:
        entry["suite"] = peer.suite.label
    return entry


@dataclass
class NodeDirectory:
    """Matcher replicas share the matcher's keys but each signs under its own name, so that
    a device's per-sender replay window never confuses two replicas' counters."""

    path: Path
    peers: dict[str, PeerKeys]
    roles: dict[str, str]

    @classmethod
    def load(cls, path: str | Path) -> "NodeDirectory":
        path = Path(path)
        if not path.exists():
            return cls(path, {}, {})
        try:
            entries = json.loads(path.read_text())
            peers = {name: _peer(name, entry) for name, entry in entries.items()}
            roles = {name: entry.get("role", DEVICE) for name, entry in entries.items()}
        except (ApplianceError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ApplianceError(ErrorCode.PKI_ERROR, f"{path}: invalid node directory ({exc})") from None
        return cls(path, peers, roles)

    def add(self, keys: NodeKeys | PeerKeys, role: str = DEVICE, name: str | None = None) -> None:
        """Record a node's public keys; ``name`` lets a matcher replica reuse the matcher's keys."""
        public = keys.public() if isinstance(keys, NodeKeys) else keys
        if name is not None:
            public = dataclasses.replace(public, node_id=name)
        self.peers[public.node_id] = public
        self.roles[public.node_id] = role
        self.save()

    def reload(self) -> list[PeerKeys]:
        """Re-read the file in place (nothing is written): the device entries that are new or
        whose keys changed since (a door provisioned or re-keyed while a replica runs). Entries
        gone from the file stay: a door is cut off by revocation, not by this."""
        current = NodeDirectory.load(self.path)
        changed = [peer for peer in current.devices() if self.peers.get(peer.node_id) != peer]
        self.peers.update(current.peers)
        self.roles.update(current.roles)
        return changed

    def remove(self, node_id: str) -> None:
        self.peers.pop(node_id, None)
        self.roles.pop(node_id, None)
        self.save()

    def save(self) -> None:
        body = {name: _entry(self.roles.get(name, DEVICE), p) for name, p in sorted(self.peers.items())}
        write_durably(self.path, json.dumps(body, indent=2).encode("utf-8"), SHARED)

    def get(self, node_id: str) -> PeerKeys:
        try:
            return self.peers[node_id]
        except KeyError:
            raise ApplianceError(ErrorCode.PKI_ERROR, f"no public keys for node {node_id!r} in {self.path}: a node is "
                                 "known once provisioned ('appliance provision matcher|device NAME' on the site, "
                                 "'appliance provision import FILE' on a door)") from None

    def devices(self) -> list[PeerKeys]:
        return [p for name, p in self.peers.items() if self.roles.get(name) == DEVICE]

    def matchers(self) -> list[PeerKeys]:
        return [p for name, p in self.peers.items() if self.roles.get(name) == MATCHER]

    def consoles(self) -> list[PeerKeys]:
        """The web consoles that may ask a door for an enrollment capture."""
        return [p for name, p in self.peers.items() if self.roles.get(name) == CONSOLE]

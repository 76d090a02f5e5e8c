"""Who is who on the wire: the public envelope keys of every node (devices, the matcher).

Written by provisioning next to the PKI; every node loads it to seal to its peers and to
check their signatures. Only public keys live here; private keys stay with the node's key
provider (``appliance.security.keys``).
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from appliance.errors import ApplianceError, ErrorCode
from appliance.security.envelope import NodeKeys, PeerKeys

MATCHER_NODE = "matcher"  # devices seal to this key; every replica holds its private half
DEVICE, MATCHER, CONSOLE = "device", "matcher", "console"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


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
            peers = {
                name: PeerKeys(
                    name,
                    Ed25519PublicKey.from_public_bytes(base64.b64decode(entry["signing"])),
                    X25519PublicKey.from_public_bytes(base64.b64decode(entry["agreement"])),
                )
                for name, entry in entries.items()
            }
            roles = {name: entry.get("role", DEVICE) for name, entry in entries.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ApplianceError(ErrorCode.PKI_ERROR, f"{path}: invalid node directory ({exc})") from None
        return cls(path, peers, roles)

    def add(self, keys: NodeKeys | PeerKeys, role: str = DEVICE, name: str | None = None) -> None:
        """Record a node's public keys; ``name`` lets a matcher replica reuse the matcher's keys."""
        public = keys.public() if isinstance(keys, NodeKeys) else keys
        if name is not None:
            public = PeerKeys(name, public.signing, public.agreement)
        self.peers[public.node_id] = public
        self.roles[public.node_id] = role
        self.save()

    def remove(self, node_id: str) -> None:
        self.peers.pop(node_id, None)
        self.roles.pop(node_id, None)
        self.save()

    def save(self) -> None:
        body = {
            name: {"role": self.roles.get(name, DEVICE), "signing": _b64(p.signing.public_bytes_raw()),
                   "agreement": _b64(p.agreement.public_bytes_raw())}
            for name, p in sorted(self.peers.items())
        }
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(body, indent=2))
        tmp.replace(self.path)

    def get(self, node_id: str) -> PeerKeys:
        try:
            return self.peers[node_id]
        except KeyError:
            raise ApplianceError(ErrorCode.PKI_ERROR, f"no public keys for node {node_id!r}") from None

    def devices(self) -> list[PeerKeys]:
        return [p for name, p in self.peers.items() if self.roles.get(name) == DEVICE]

    def matchers(self) -> list[PeerKeys]:
        return [p for name, p in self.peers.items() if self.roles.get(name) == MATCHER]

    def consoles(self) -> list[PeerKeys]:
        """The web consoles that may ask a door for an enrollment capture."""
        return [p for name, p in self.peers.items() if self.roles.get(name) == CONSOLE]

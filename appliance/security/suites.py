"""Envelope cipher suites: which one a node seals with, and which ones a site has in use.

Two suites, one envelope (``appliance.security.envelope``):
- ``default``: X25519 agreement, HKDF-SHA256, AES-256-GCM (or ChaCha20-Poly1305), Ed25519;
- ``sm``: SM2 public-key encryption of a fresh SM4 key, SM4-GCM, SM2 signatures
  (``appliance.security.sm``), asked of sites under classified protection level 3.

``[security] crypto_suite`` says which one a node seals with. A node on ``sm`` has SM2 keys
beside its default ones, and the directory carries both public keys and the suite each node
declared. A sender uses SM whenever it is on ``sm`` and the recipient has SM2 keys, and the
default suite otherwise (a recipient without SM2 keys could not open anything else); so a site
migrates one node at a time. A receiver opens both suites, and refuses a default envelope
from a sender that declared ``sm`` when both hold SM2 keys: that is a downgrade.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol


class Suite(Enum):
    """The wire value is the suite byte of a version-2 envelope header."""

    DEFAULT = 1
    SM = 2

    @property
    def label(self) -> str:
        """The name in configuration, the directory and reports: 'default' or 'sm'."""
        return self.name.lower()

    @classmethod
    def named(cls, label: str) -> "Suite":
        try:
            return cls[label.upper()]
        except KeyError:
            raise ValueError(f"unknown crypto suite {label!r}: {', '.join(s.label for s in cls)}") from None


class _Peer(Protocol):
    suite: Suite
    sm2: Any


class _Directory(Protocol):
    peers: dict[str, Any]
    roles: dict[str, str]


@dataclass(frozen=True)
class SuitesInUse:
    """What the compliance report shows: the suite configured here and what each node declared."""

    configured: str  # this host's [security] crypto_suite
    by_node: dict[str, str]  # node -> the suite it seals with, per the directory
    with_sm2_keys: tuple[str, ...]  # nodes whose SM2 public keys the directory carries
    library: str  # the SM2 library and its version, or "not installed"

    @property
    def suites(self) -> tuple[str, ...]:
        """Every suite that some node seals with, or this host is configured for."""
        return tuple(sorted({self.configured, *self.by_node.values()}))

    @property
    def mixed(self) -> bool:
        """A site in migration: both suites in use."""
        return len(self.suites) > 1

    def as_dict(self) -> dict[str, Any]:
        return {"configured": self.configured, "suites": list(self.suites), "mixed": self.mixed,
                "by_node": dict(sorted(self.by_node.items())), "with_sm2_keys": list(self.with_sm2_keys),
                "library": self.library}


def suites_in_use(config: Any, directory: _Directory) -> SuitesInUse:
    """The suites in use on a site, from this host's configuration (``config.security``) and the
    node directory (``appliance.protocol.directory.NodeDirectory``). Reads public data only."""
    from appliance.security.sm import library_version

    peers: dict[str, _Peer] = directory.peers
    return SuitesInUse(
        configured=config.security.crypto_suite,
        by_node={name: peer.suite.label for name, peer in peers.items()},
        with_sm2_keys=tuple(sorted(name for name, peer in peers.items() if peer.sm2 is not None)),
        library=library_version(),
    )

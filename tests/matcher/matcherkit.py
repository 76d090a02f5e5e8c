"""Helpers for the matcher tests without a broker: temporary central stores and sync store,
node keys and a directory, enrolled people, and a fake broker connection that keeps what the
replica publishes (the ``Courier`` attached to it) so a test can open it as the device would."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from appliance.config import SecurityConfig
from appliance.matcher.eligibility import LOCAL_MATCH_SCOPE, restamp_credentials
from appliance.matcher.replica_io import Courier
from appliance.matcher.sync_store import SyncStore
from appliance.matching.credentials import hash_pin
from appliance.protocol import messages, topics
from appliance.protocol.directory import DEVICE, MATCHER, MATCHER_NODE, NodeDirectory
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
from appliance.security.envelope import MessageType, NodeKeys, Opener, PeerKeys, ReplayGuard, Sealer
from appliance.security.roles import Principal, Role
from appliance.stores.identity import FACE_REFUSED_SCOPE
from appliance.stores.protected import ProtectedData
from appliance.transport.mqtt import Incoming
from appliance.vision.templates import Template, normalise

OPERATOR = Principal("enroller", Role.OPERATOR)
ADMIN = Principal("secadmin", Role.SECURITY_ADMIN)
DEVICES = ("door-a", "door-b")


@dataclass
class Published:
    topic: str
    payload: bytes
    options: dict


@dataclass
class FakeBroker:
    """Stands in for ``MqttEndpoint.publish``."""

    sent: list[Published] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes, **options) -> None:
        self.sent.append(Published(topic, payload, options))

    def on(self, topic: str) -> list[Published]:
        return [p for p in self.sent if p.topic == topic]


class FakeLog:
    """Stands in for the audit log: (actor, device, action, object, result, detail) per entry."""

    def __init__(self):
        self.entries: list[tuple] = []

    def append(self, principal, action, obj, result, detail="", wait=True, block=True):
        """Same signature as ``AuditLog.append``; every entry is "written" at once."""
        self.entries.append((principal.actor, principal.device, action, obj, result, detail))

    @property
    def actions(self) -> list[tuple[str, str]]:
        return [(device, action) for _, device, action, *_ in self.entries]


@dataclass
class Node:
    """The central stores, the sync store, the keys of every node and the directory."""

    data: ProtectedData
    store: SyncStore
    directory: NodeDirectory
    devices: dict[str, NodeKeys]
    pack: tuple[str, str]
    dimension: int
    rng: np.random.Generator
    broker: FakeBroker = field(default_factory=FakeBroker)

    @property
    def keys(self) -> NodeKeys:
        return self.data.node

    def courier(self, name: str = "matcher-1") -> Courier:
        courier = Courier(name, self.keys, self.directory)
        courier.attach(self.broker.publish)
        return courier

    def vector(self) -> np.ndarray:
        return normalise(self.rng.normal(size=self.dimension)).astype(np.float32)

    def enroll(self, name: str, card: str = "", local: bool = True,
               vector: np.ndarray | None = None) -> tuple[str, np.ndarray]:
        subject = new_subject_id()
        self.data.register_person(OPERATOR, Person(subject, name, AgeBand.ADULT, Alternative.CARD, card_no=card))
        self.data.record_consent(OPERATOR, ConsentRecord(subject, ENROLL_SCOPE, "v1", time.time(), name))
        if local:
            self.data.record_consent(OPERATOR, ConsentRecord(subject, LOCAL_MATCH_SCOPE, "v1", time.time(), name))
        vector = self.vector() if vector is None else vector
        self.data.enroll(OPERATOR, subject, Template(vector, *self.pack), np.zeros(1, np.float32))
        return subject, vector

    # -- as a device ----------------------------------------------------------------------
    def sealed_by(self, device: str, message: messages.Message, message_type: MessageType,
                  pack: tuple[str, str] = ("", ""), topic_of: str | None = None, kind: str = topics.REQUEST,
                  now: float | None = None) -> Incoming:
        """``message`` sealed by ``device`` to the matcher, arriving on ``topic_of``'s ``kind`` topic."""
        sealed = Sealer(self.devices[device]).seal(self.directory.get(MATCHER_NODE), message_type, message.encode(),
                                                   *pack, now=now)
        return Incoming(topics.device_topic(topic_of or device, kind), sealed, 1, False,
                        correlation=b"corr" if kind == topics.REQUEST else None)

    def opened_by(self, device: str, published: Published, expect: MessageType) -> messages.Message:
        """What ``device`` reads in a message the replica published to it."""
        opener = Opener(self.devices[device], self.directory.matchers(), guard=ReplayGuard())
        return messages.decode(opener.open(published.payload, expect=expect).payload)


def make_node(folder: Path, keys, pack: tuple[str, str] = ("pack", "1"), dimension: int = 64, seed: int = 0) -> Node:
    data = ProtectedData(folder / "central", keys, SecurityConfig(node_id=MATCHER_NODE))
    store = SyncStore.open(folder / "central" / "sync.db", keys)
    devices = {name: NodeKeys.generate(name) for name in DEVICES}
    matcher: PeerKeys = data.node.public()
    peers = {name: keys_.public() for name, keys_ in devices.items()}
    peers.update({MATCHER_NODE: matcher, "matcher-1": PeerKeys("matcher-1", matcher.signing, matcher.agreement),
                  "matcher-2": PeerKeys("matcher-2", matcher.signing, matcher.agreement)})
    roles = {name: DEVICE for name in devices} | {name: MATCHER for name in (MATCHER_NODE, "matcher-1", "matcher-2")}
    directory = NodeDirectory(folder / "directory.json", peers, roles)
    return Node(data, store, directory, devices, pack, dimension, np.random.default_rng(seed))


def stats() -> Counter[str]:
    return Counter()


def refusing(node, name: str, card: str, pin: str) -> str:
    """A person who refused face recognition: a card and a PIN, no template (the desk's way)."""
    subject = new_subject_id()
    node.data.register_person(OPERATOR, Person(subject, name, AgeBand.ADULT, Alternative.CARD_AND_PIN, card_no=card))
    node.data.record_consent(OPERATOR, ConsentRecord(subject, FACE_REFUSED_SCOPE, "v1", 0.0, name))
    node.data.identity.set_pin_hash(OPERATOR, subject, hash_pin(pin))
    restamp_credentials(node.data, OPERATOR, subject)
    return subject

"""One unreadable template must not stop the matcher (finding 8 of issue 12).

A template row of a real SQLCipher biometric store is damaged with the store's own
connection (a flipped ciphertext byte: the AEAD tag fails; a short garbage blob: not even a
nonce): ``appliance matcher`` (``matcher.app.build``) still starts, serves everyone else,
raises one alarm per quarantined template naming the masked subject id and the reason, and
counts them in its stats. A replica following the revision stream does the same.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from appliance.config import registry_for, with_overrides
from appliance.matcher.app import build
from appliance.matcher.eligibility import Profiles
from appliance.matcher.loaded import LoadedGallery
from appliance.matcher.replica import ReplicaFollower
from appliance.matching import Gallery
from appliance.protocol import messages, topics
from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person
from appliance.security.envelope import MessageType, Opener, ReplayGuard, Sealer
from appliance.security.masking import mask_number
from appliance.security.roles import Principal, Role
from appliance.site import Site
from appliance.transport.mqtt import Incoming
from appliance.vision.templates import Template, normalise
from matcherkit import DEVICES, FakeBroker

OPERATOR = Principal("enroller", Role.OPERATOR)
NONCE_BYTES = 12  # AES-GCM nonce at the front of a sealed template


def damage(biometric, subject: str, how: str) -> None:
    """Write bad ciphertext for ``subject`` with the store's own connection."""
    (sealed,) = biometric.execute("SELECT sealed FROM templates WHERE subject_id = ?", (subject,)).fetchone()
    if how == "flipped":
        bad = bytearray(sealed)
        bad[NONCE_BYTES + 3] ^= 0x01
        sealed = bytes(bad)
    else:
        sealed = b"\x00garbage"
    with biometric.transaction():
        biometric.execute("UPDATE templates SET sealed = ? WHERE subject_id = ?", (sealed, subject))


def enroll(data, subject: str, name: str, card: str, vector: np.ndarray, pack) -> None:
    data.register_person(OPERATOR, Person(subject, name, AgeBand.ADULT, Alternative.CARD, card_no=card))
    data.record_consent(OPERATOR, ConsentRecord(subject, ENROLL_SCOPE, "v1", 0.0, name))
    data.enroll(OPERATOR, subject, Template(vector, pack.id, pack.version), np.zeros(1, np.float32))


def test_the_matcher_starts_without_the_unreadable_templates_and_serves_the_rest(tmp_path, config):
    site = Site(tmp_path / "site")
    site.provision(("door-a",), matchers=("matcher-1",))
    config = with_overrides(config, matcher={"name": "matcher-1"}, liveness={"level": "off"})
    pack = registry_for(config).get(config.models.embedder)
    rng = np.random.default_rng(0)
    vectors = {s: normalise(rng.normal(size=pack.embedding_size)).astype(np.float32)
               for s in ("s-good", "s-flipped", "s-garbage")}
    data = site.protected_data(config)
    try:
        for index, (subject, vector) in enumerate(vectors.items()):
            enroll(data, subject, f"Person Number{index}", f"C-{index}", vector, pack)
        damage(data.biometric, "s-flipped", "flipped")
        damage(data.biometric, "s-garbage", "garbage")
    finally:
        data.close()
    app = build(config, site)
    try:
        matcher = app.matcher
        assert len(matcher.loaded.gallery) == 1 and "s-good" in matcher.loaded.gallery
        assert matcher.loaded.claims == {"C-0": "s-good"}
        assert matcher.stats["templates_quarantined"] == 2
        alarms = [e for e in app.data.audit.entries() if e.action == "alarm.template_quarantined"]
        assert sorted(e.object for e in alarms) == sorted(mask_number(s) for s in ("s-flipped", "s-garbage"))
        assert all(e.result == "quarantined" and e.detail for e in alarms)
        assert not any("s-flipped" in e.object + e.detail or "s-garbage" in e.object + e.detail for e in alarms)
        # and it serves: door-a asks about the readable person
        broker = FakeBroker()
        matcher.service.courier.attach(broker.publish)
        door = site.device_keys("door-a")
        asked = messages.MatchRequest(messages.new_id(), "door-a", "identify",
                                      messages.MatchRequest.pack_vector(vectors["s-good"]), 0.0)
        sealed = Sealer(door).seal(site.directory.get("matcher"), MessageType.PROBE, asked.encode(), pack.id,
                                   pack.version)
        matcher.requests.handle(Incoming(topics.device_topic("door-a", topics.REQUEST), sealed, 1, False))
        (answer,) = broker.on(topics.device_topic("door-a", topics.DECISION))
        opener = Opener(door, site.directory.matchers(), guard=ReplayGuard())
        decision = messages.decode(opener.open(answer.payload, expect=MessageType.DECISION).payload)
        assert decision.accepted and decision.request_id == asked.request_id
    finally:
        app.close()


def test_a_replica_following_the_store_quarantines_a_new_unreadable_template_and_keeps_following(node):
    principal = Principal("matcher-1", Role.OPERATOR, device="matcher-1")
    loaded = LoadedGallery(Gallery(*node.pack, node.dimension), {}, {})
    stats = Counter()
    follower = ReplicaFollower("matcher-1", node.data, node.store, Profiles(node.data.identity, node.store.groups,
                                                                            principal),
                               loaded, node.courier(), node.keys, lambda: list(DEVICES), stats, principal)
    broken, _ = node.enroll("Maria Gomez")
    fine, _ = node.enroll("Ana Lima")
    damage(node.data.biometric, broken, "flipped")
    assert follower.follow() == 2
    assert len(loaded.gallery) == 1 and fine in loaded.gallery and follower.revision == node.data.biometric.revision
    assert stats["templates_quarantined"] == 1 and list(loaded.quarantined) == [mask_number(broken)]
    (alarm,) = [e for e in node.data.audit.entries() if e.action == "alarm.template_quarantined"]
    assert alarm.object == mask_number(broken) and alarm.device == "matcher-1"
    # re-enrolled (a readable template at a new revision): it leaves quarantine and is served
    node.data.enroll(Principal("enroller", Role.OPERATOR), broken, Template(node.vector(), *node.pack),
                     np.zeros(1, np.float32))
    assert follower.follow() == 1
    assert len(loaded.gallery) == 2 and broken in loaded.gallery and not loaded.quarantined

"""A replica following the revision stream when its sync store cannot be written: the gallery
serves a new enrollment at once, and its announcement (the doors' notice, the integrations'
enrollment event) goes out once there is room - none is skipped. On a real tmpfs filled to the
last byte (root, as CI runs: ``diskkit``)."""
from __future__ import annotations

from collections import Counter

from appliance.matcher.eligibility import Profiles
from appliance.matcher.loaded import LoadedGallery
from appliance.matcher.replica import ReplicaFollower
from appliance.matching import Gallery
from appliance.protocol import topics
from appliance.security.roles import Principal, Role
from diskkit import fill, small_disk
from matcherkit import DEVICES, make_node

DISK_BYTES = 16 * 1024 * 1024


def test_a_revision_the_full_store_cannot_claim_is_served_now_and_announced_once_there_is_room(tmp_path, keys):
    principal = Principal("matcher-1", Role.OPERATOR, device="matcher-1")
    with small_disk(tmp_path / "disk", DISK_BYTES) as disk:
        node = make_node(disk, keys)
        try:
            loaded = LoadedGallery(Gallery(*node.pack, node.dimension), {}, {})
            stats: Counter[str] = Counter()
            follower = ReplicaFollower("matcher-1", node.data, node.store,
                                       Profiles(node.data.identity, node.store.groups, principal), loaded,
                                       node.courier(), node.keys, lambda: list(DEVICES), stats, principal)
            before = follower.revision
            subject, _ = node.enroll("Maria Gomez")
            for store in (*node.data.stores.values(), node.store):  # any store's next write needs new room
                store.checkpoint()
            filler = fill(disk)

            for _ in range(3):  # polls while the disk is full
                assert follower.follow() == 1
            assert subject in loaded.gallery  # served at once
            assert follower.revision == before and stats["unwritable:announcement"] == 3
            assert not node.broker.on(topics.ENROLLMENT_EVENTS) and stats["revisions_followed"] == 0

            filler.unlink()  # room made: the next poll claims and announces, once
            assert follower.follow() == 1 and follower.follow() == 0
            assert follower.revision == node.data.biometric.revision
            (event,) = node.broker.on(topics.ENROLLMENT_EVENTS)
            assert follower.subject_ref(subject).encode() in event.payload
            assert stats["revisions_followed"] == 1 and stats["enrollment_events"] == 1
        finally:
            node.store.close()
            node.data.close()

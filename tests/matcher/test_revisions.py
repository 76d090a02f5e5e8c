"""The revision stream without a broker: changes, eligibility, bounded answers, snapshots,
digests - and a real device cache following it through the device's own sync client."""
from __future__ import annotations

import threading
from types import SimpleNamespace

import pytest

from appliance.edge.sync_client import SyncClient
from appliance.matcher.access_site import SiteAccess
from appliance.matcher.deletions import DeletionConfirmations
from appliance.matcher.eligibility import Profiles, restamp_credentials
from appliance.matching.credentials import hash_pin
from appliance.matcher.revisions import MESSAGES_PER_ANSWER, SyncEngine, entries_per_message
from appliance.protocol import messages
from appliance.protocol.messages import MAX_MESSAGE_BYTES
from appliance.protocol.sync_entries import UpsertEntry
from appliance.security.roles import Principal, Role
from appliance.stores.claims import claim_hash, site_claim_key
from appliance.stores.device import DeviceCache
from matcherkit import ADMIN, OPERATOR, make_node, refusing

DIM = 2048  # the largest template a message may carry: 3 per delta, so paging shows with few people
PER = 3


@pytest.fixture
def node(tmp_path, keys):
    made = make_node(tmp_path, keys, dimension=DIM)
    yield made
    made.store.close()
    made.data.close()


def engine_of(node, snapshot_after: int = 5000) -> SyncEngine:
    principal = Principal("matcher-1", Role.OPERATOR)
    return SyncEngine(node.data, Profiles(node.data.identity, node.store.groups, principal), node.pack, DIM,
                      snapshot_after, principal)


def ask(device: str = "door-a", revision: int = 0, digest: str = "", snapshot: tuple[str, int, str] = ("", 0, "")):
    return messages.SyncRequest(messages.new_id(), device, revision, digest, *snapshot)


def upserted(deltas: list[messages.Delta]) -> dict[str, int]:
    return {e["s"]: e["r"] for d in deltas for e in d.upserts}


def tombstoned(deltas: list[messages.Delta]) -> dict[str, int]:
    return {t["s"]: t["r"] for d in deltas for t in d.tombstones}


def test_the_message_size_comes_from_the_pack_not_from_the_stored_ciphertext(node):
    assert entries_per_message(512) == 13 and entries_per_message(DIM) == PER
    assert engine_of(node).per_message == PER  # an empty store: nothing to guess from anyway
    for _ in range(PER):
        node.enroll("Big Template")
    deltas, _ = engine_of(node).answer(ask(), "default")
    assert len(deltas[0].upserts) == PER and len(deltas[0].encode()) <= MAX_MESSAGE_BYTES
    assert messages.decode(deltas[0].encode()) == deltas[0]  # it passes the device's strict decoding


def test_changes_carry_what_the_device_may_hold_and_tombstones_for_the_rest(node):
    local, local_vector = node.enroll("Ana Lima", card="C-1")
    central_only, _ = node.enroll("Bo Central", local=False)
    lobby, lobby_vector = node.enroll("Lia Lobby")
    node.store.assign_groups(lobby, ("lobby",))
    node.data.enroll(OPERATOR, lobby, node.data.biometric.template(OPERATOR, lobby, *node.pack, node.data.vault),
                     node.vector()[:1])  # a new revision: the group now applies
    gone, _ = node.enroll("Gone Soon")
    node.data.delete_subject(ADMIN, gone)
    engine = engine_of(node)
    deltas, why = engine.answer(ask(), "default")
    assert why == "changes" and deltas[-1].revision == deltas[-1].head == node.data.biometric.revision
    assert set(upserted(deltas)) == {local}
    assert set(tombstoned(deltas)) == {central_only, lobby, gone}
    entry = UpsertEntry.from_wire(deltas[0].upserts[0])
    assert entry.display == "A** L***" and entry.claim == claim_hash("C-1", site_claim_key(node.data.vault))
    assert (entry.vector == local_vector).all()
    lobby_deltas, _ = engine.answer(ask(), "lobby")
    assert set(upserted(lobby_deltas)) == {local, lobby}


def test_an_answer_is_bounded_and_the_next_request_continues(node):
    subjects = {node.enroll(f"Person Number{i}")[0] for i in range(PER * MESSAGES_PER_ANSWER + 4)}
    engine = engine_of(node)
    first, why = engine.answer(ask(), "default")
    assert why == "changes" and len(first) == MESSAGES_PER_ANSWER and first[-1].last
    assert [d.base for d in first[1:]] == [d.revision for d in first[:-1]]  # each follows the previous
    assert first[-1].revision < node.data.biometric.revision
    rest, _ = engine.answer(ask(revision=first[-1].revision), "default")
    assert rest[-1].revision == node.data.biometric.revision
    assert set(upserted(first)) | set(upserted(rest)) == subjects


def test_at_the_head_the_device_is_current_unless_its_digest_differs(node):
    node.enroll("Ana Lima")
    engine = engine_of(node)
    head = node.data.biometric.revision
    deltas, why = engine.answer(ask(revision=head), "default")
    assert why == "current" and len(deltas) == 1 and not deltas[0].upserts and deltas[0].revision == head
    assert engine.answer(ask(revision=head, digest=engine.expected_digest("default")), "default")[1] == "current"
    deltas, why = engine.answer(ask(revision=head, digest="0" * 64), "default")
    assert why == "digest_mismatch" and deltas[0].kind == "snapshot"


def test_far_behind_or_ahead_gets_a_snapshot_in_pages(node):
    subjects = {node.enroll(f"Person Number{i}")[0] for i in range(2 * PER + 2)}
    node.enroll("Central Only", local=False)
    engine = engine_of(node, snapshot_after=2)
    head = node.data.biometric.revision
    for revision in (0, head + 5):
        pages, why = engine.answer(ask(revision=revision), "default")
        assert why == "snapshot" and [len(p.upserts) for p in pages] == [PER, PER, 2]
        assert [p.complete for p in pages] == [False, False, True] and pages[-1].last
        assert len({p.snapshot_id for p in pages}) == 1 and all(p.revision == head for p in pages)
        assert [p.after for p in pages] == ["", pages[0].cursor, pages[1].cursor]
        assert set(upserted(pages)) == subjects
    # a device resuming a snapshot at the head gets the pages after its cursor
    resumed, why = engine.answer(ask(snapshot=(pages[0].snapshot_id, head, pages[0].cursor)), "default")
    assert why == "snapshot" and resumed[0].after == pages[0].cursor and len(resumed) == 2
    # ... but if the head moved meanwhile, the snapshot starts over under a new id
    node.enroll("Late Comer")
    restarted, why = engine.answer(ask(snapshot=(pages[0].snapshot_id, head, pages[0].cursor)), "default")
    assert why == "snapshot_restart" and restarted[0].after == "" and restarted[0].snapshot_id != pages[0].snapshot_id


class FakeLink:
    """The device's link as the sync client sees it: requests go to a list, sealed as is."""

    def __init__(self, device: str):
        self.device_id, self.matcher, self.sealer = device, None, self
        self.sent: list[messages.Message] = []
        connected = threading.Event()
        connected.set()
        self.endpoint = SimpleNamespace(publish=lambda topic, payload: self.sent.append(messages.decode(payload)),
                                        connected=connected, connections=1)
        self.on_sync = None

    def seal(self, peer, message_type, payload, *pack):
        return payload

    def heard(self) -> None:
        pass

    def silent(self) -> None:
        pass


def sync(node, client: SyncClient, engine: SyncEngine, confirmations: DeletionConfirmations) -> int:
    """Serve the client's requests until the matcher confirmed its cache (as the sync handler does)."""
    client.current.clear()
    client.request()
    for step in range(200):
        if not client.link.sent:
            assert client.current.is_set(), "the cache never became current"
            return step
        message = client.link.sent.pop(0)
        if isinstance(message, messages.SyncAck):
            confirmations.acknowledge(message.device_id, message.revision)
            continue
        if not message.snapshot_id:
            confirmations.acknowledge(message.device_id, message.revision)
        for delta in engine.answer(message, "default")[0]:
            client.apply(delta)
    raise AssertionError("the sync did not settle")


def test_a_device_cache_follows_the_stream_through_its_sync_client(node, tmp_path, keys):
    people = [node.enroll(f"Person Number{i}")[0] for i in range(PER * 3)]
    engine, confirmations = engine_of(node, snapshot_after=PER * 2), DeletionConfirmations(node.data, node.store)
    cache = DeviceCache.open(tmp_path / "door-a" / "cache.db", keys)
    client = SyncClient(FakeLink("door-a"), cache, node.devices["door-a"], node.directory)
    try:
        sync(node, client, engine, confirmations)  # far behind: a snapshot
        assert cache.revision == node.data.biometric.revision
        assert cache.digest() == engine.expected_digest("default") and client.stats["snapshot_pages"] >= 3
        receipt = node.data.delete_subject(ADMIN, people[0])
        newcomer, _ = node.enroll("New Comer")
        sync(node, client, engine, confirmations)  # close behind: the changes
        held = set(cache.subject_ids())
        assert people[0] not in held and newcomer in held and client.stats["deltas_applied"] >= 1
        assert cache.digest() == engine.expected_digest("default")
        assert node.store.confirmations(receipt.tombstone_revision).keys() == {"door-a"}
    finally:
        cache.close()


def test_cards_pins_and_face_refusing_people_reach_a_cache_and_a_pin_change_is_a_revision(node, tmp_path, keys):
    holder, _ = node.enroll("Pin Holder", card="C-7")
    node.data.identity.set_pin_hash(OPERATOR, holder, hash_pin("2468"))
    restamp_credentials(node.data, OPERATOR, holder)
    people = [node.enroll(f"Person Number{i}")[0] for i in range(PER * 2)]  # snapshot pages before the refusers
    refusers = [refusing(node, f"Refusing Person{i}", f"R-{i}", "864209") for i in range(PER + 1)]
    engine = engine_of(node, snapshot_after=2)
    key = site_claim_key(node.data.vault)
    deltas, why = engine.answer(ask(), "default")  # far behind: a snapshot, templates then refusers
    assert why == "snapshot" and all(d.claim_key == key.hex() for d in deltas)
    entries = {e["s"]: e for d in deltas for e in d.upserts}
    assert set(entries) == {holder, *people, *refusers}
    assert "t" not in entries[refusers[0]] and entries[refusers[0]]["f"] is True
    assert entries[refusers[0]]["c"] == claim_hash("R-0", key) and entries[refusers[0]]["p"].startswith("scrypt$")
    assert entries[holder]["p"].startswith("scrypt$") and "f" not in entries[people[0]]
    assert all(len(d.encode()) <= MAX_MESSAGE_BYTES for d in deltas)

    confirmations = DeletionConfirmations(node.data, node.store)
    cache = DeviceCache.open(tmp_path / "door-a" / "cache.db", keys)
    client = SyncClient(FakeLink("door-a"), cache, node.devices["door-a"], node.directory)
    try:
        sync(node, client, engine, confirmations)
        assert set(cache.subject_ids()) == {holder, *people, *refusers}
        assert cache.digest() == engine.expected_digest("default", "door-a")  # no snapshot loop
        assert cache.claim_holder(cache.claim_of("R-1"))[0] == refusers[1]
        assert refusers[1] not in cache.local_view(*node.pack)[0]
        head = node.data.biometric.revision
        node.data.identity.set_pin_hash(OPERATOR, refusers[1], "")  # cleared: a revision of its own
        assert restamp_credentials(node.data, OPERATOR, refusers[1]) == head + 1
        node.data.identity.set_pin_hash(OPERATOR, holder, "")
        restamp_credentials(node.data, OPERATOR, holder)
        changes, why = engine.answer(ask(revision=head), "default")
        assert why == "changes" and {e["s"] for d in changes for e in d.upserts} == {refusers[1], holder}
        sync(node, client, engine, confirmations)
        assert cache.claim_holder(cache.claim_of("R-1"))[2] == "" and cache.claim_holder(cache.claim_of("C-7"))[2] == ""
        assert cache.digest() == engine.expected_digest("default", "door-a")
        node.data.delete_subject(ADMIN, refusers[0])  # a deleted refuser leaves the cache too
        sync(node, client, engine, confirmations)
        assert refusers[0] not in cache.subject_ids()
    finally:
        cache.close()


def test_a_revoked_group_of_a_face_refusing_person_reaches_the_cache(node, tmp_path, keys):
    from appliance.matcher.access_admin import AccessAdmin

    refuser = refusing(node, "Refusing Person", "R-9", "864209")
    admin = AccessAdmin(node.data, node.store, ADMIN)
    admin.put_group("office")
    admin.grant_doors("office", ["door-a"])
    admin.set_member("office", refuser)
    engine = SyncEngine(node.data, Profiles(node.data.identity, node.store.groups, OPERATOR,
                                            SiteAccess(node.store)), node.pack, DIM, 5000, OPERATOR)
    confirmations = DeletionConfirmations(node.data, node.store)
    cache = DeviceCache.open(tmp_path / "door-a" / "cache.db", keys)
    client = SyncClient(FakeLink("door-a"), cache, node.devices["door-a"], node.directory)
    try:
        sync(node, client, engine, confirmations)
        assert cache.subject_ids() == [refuser] and cache.subject_access(refuser)["g"] == ["office"]
        admin.set_member("office", refuser, False)  # a new revision for their card entry
        sync(node, client, engine, confirmations)
        assert cache.subject_ids() == []
    finally:
        cache.close()

"""A batch of requests taken from the worker's queue at once: every request is decided as it
would be alone (its 1:N search shared with the others in one matrix product), answered once
in arrival order; a retry in the same batch gets the first answer; a replay or a malformed
request in the batch is refused without holding back the others."""
from __future__ import annotations

import threading
from collections import Counter

import numpy as np
import pytest

from appliance.access.schedule import WeeklySchedule
from appliance.matcher.access_admin import ALWAYS_OPEN
from appliance.matcher.access_site import SiteAccess
from appliance.matcher.loaded import LoadedGallery
from appliance.matcher.replica_io import Auditor
from appliance.matcher.requests import SEARCH_BATCH, RequestHandler
from appliance.matcher.sync_store import SyncStore
from appliance.matching import Gallery
from appliance.protocol import messages, topics
from appliance.security.envelope import MessageType
from appliance.security.roles import Principal, Role
from appliance.stores import audit_writer
from appliance.stores.audit import AuditLog
from appliance.vision.templates import Template
from diskkit import fill, small_disk
from matcherkit import FakeLog, make_node
from polling import wait_for

PEOPLE = 20


@pytest.fixture
def setup(tmp_path, keys):
    node = make_node(tmp_path, keys)
    gallery = Gallery(*node.pack, node.dimension)
    vectors = {f"s{i}": node.vector() for i in range(PEOPLE)}
    for subject, vector in vectors.items():
        gallery.upsert(subject, Template(vector, *node.pack))
    loaded = LoadedGallery(gallery, {"C-S0": "s0"}, {subject: f"{subject[0].upper()}**" for subject in vectors})
    log, stats = FakeLog(), Counter()
    handler = RequestHandler("matcher-1", node.keys, node.directory, loaded, 0.5, node.courier(),
                             Auditor("matcher-1", log), stats)
    yield node, handler, vectors, log, stats
    node.store.close()
    node.data.close()


def ask(device: str, vector: np.ndarray, claim: str = "", request_id: str = "") -> messages.MatchRequest:
    return messages.MatchRequest(request_id or messages.new_id(), device, "verify" if claim else "identify",
                                 messages.MatchRequest.pack_vector(vector), 0.0, claim=claim)


def answers(node, device: str) -> list[messages.Decision]:
    return [node.opened_by(device, p, MessageType.DECISION)
            for p in node.broker.on(topics.device_topic(device, topics.DECISION))]


def test_a_batch_is_decided_as_each_request_alone_and_answered_in_order(setup):
    node, handler, vectors, log, stats = setup
    assert handler.route.worker.max_batch == SEARCH_BATCH > 1
    stranger = node.vector()
    asked = [ask("door-a", vectors["s3"]), ask("door-a", stranger), ask("door-a", vectors["s0"], claim="C-S0"),
             ask("door-a", vectors["s7"])]
    retry = asked[0]  # the same request id again, in a new envelope, in the same batch
    sealed = [node.sealed_by("door-a", request, MessageType.PROBE, node.pack) for request in (*asked, retry)]
    replayed = sealed[1]  # the very same envelope twice
    junk = node.sealed_by("door-b", ask("door-a", stranger), MessageType.PROBE, node.pack)  # names another door
    handler.handle_batch([*sealed, replayed, junk])
    got = answers(node, "door-a")
    assert [a.request_id for a in got] == [r.request_id for r in (*asked, retry)]
    assert [(a.accepted, a.reason, a.subject) for a in got[:4]] == [
        (True, messages.Reason.MATCH, "s3"), (False, messages.Reason.NO_MATCH, ""),
        (True, messages.Reason.MATCH, "s0"), (True, messages.Reason.MATCH, "s7")]
    published = node.broker.on(topics.device_topic("door-a", topics.DECISION))
    assert published[4].payload == published[0].payload  # the retry: the very same sealed answer
    assert stats["accepted"] == 3 and stats["rejected"] == 1 and stats["retries"] == 1
    assert stats["rejected:replayed_counter"] == 1 and stats["rejected:malformed"] == 1
    assert [entry[2] for entry in log.entries] == ["decision.identify", "decision.identify", "decision.verify",
                                                   "decision.identify"]  # one entry per decision, none per retry


def test_the_batched_decisions_equal_the_one_by_one_decisions(setup):
    node, handler, vectors, log, stats = setup
    rng = np.random.default_rng(2)
    probes = [vectors[f"s{i}"] + 0.05 * rng.normal(size=node.dimension).astype(np.float32) for i in range(8)]
    probes = [(p / np.linalg.norm(p)).astype(np.float32) for p in probes] + [node.vector() for _ in range(4)]
    requests = [ask("door-a", probe) for probe in probes]
    handler.handle_batch([node.sealed_by("door-a", r, MessageType.PROBE, node.pack) for r in requests])
    batched = [(a.accepted, a.subject) for a in answers(node, "door-a")]
    alone = [(c is not None and c.score >= 0.5, c.subject_id if c is not None and c.score >= 0.5 else "")
             for c in (handler.loaded.gallery.best(Template(p, *node.pack)) for p in probes)]
    assert batched == alone and sum(accepted for accepted, _ in batched) == 8


def test_the_access_rules_are_read_once_per_batch_and_hold_for_each_request(setup):
    node, handler, vectors, log, stats = setup
    node.store.put_group("staff", WeeklySchedule.from_mapping(ALWAYS_OPEN))
    node.store.set_group_doors("staff", ["door-a"], True)
    node.store.set_member("staff", "s3", True)
    handler.access = SiteAccess(node.store)
    reads = []
    generation = node.store.access_generation
    node.store.access_generation = lambda: reads.append(1) or generation()
    asked = [ask("door-a", vectors["s3"]), ask("door-a", vectors["s7"]), ask("door-a", node.vector())]
    handler.handle_batch([node.sealed_by("door-a", r, MessageType.PROBE, node.pack) for r in asked])
    assert [(a.accepted, a.reason) for a in answers(node, "door-a")] == [
        (True, messages.Reason.MATCH), (False, "not_in_group"), (False, messages.Reason.NO_MATCH)]
    assert len(reads) == 1 and stats["access_not_in_group"] == 1


def test_a_retry_reaching_the_other_replica_is_the_same_pass_not_a_second_entry(setup, tmp_path, keys):
    """A door whose answer was lost asks again with the same request id; on a shared
    subscription the retry may reach the replica that did not decide it. Under hard
    anti-passback that replica finds the person inside - by this very pass - and must grant
    it again, not refuse a grant the door never received; a new pass is still refused."""
    node, first, vectors, log, stats = setup
    node.store.put_group("staff", WeeklySchedule.from_mapping(ALWAYS_OPEN))
    node.store.set_group_doors("staff", ["door-a", "door-b"], True)
    node.store.set_member("staff", "s3", True)
    node.store.set_area("hall", "hard", 0, {"door-a": "entry", "door-b": "exit"})
    other_store = SyncStore.open(tmp_path / "central" / "sync.db", keys)  # the second replica's connection
    other_stats = Counter()
    second = RequestHandler("matcher-2", node.keys, node.directory, first.loaded, 0.5, node.courier("matcher-2"),
                            Auditor("matcher-2", log), other_stats)
    first.access, second.access = SiteAccess(node.store), SiteAccess(other_store)
    try:
        entry = ask("door-a", vectors["s3"])
        first.handle_batch([node.sealed_by("door-a", entry, MessageType.PROBE, node.pack)])
        second.handle_batch([node.sealed_by("door-a", entry, MessageType.PROBE, node.pack)])  # the retry
        again = ask("door-a", vectors["s3"])  # a second entry without an exit: a new pass
        second.handle_batch([node.sealed_by("door-a", again, MessageType.PROBE, node.pack)])
        first.handle_batch([node.sealed_by("door-a", again, MessageType.PROBE, node.pack)])
        got = [(a.request_id, a.accepted, a.reason, a.subject) for a in answers(node, "door-a")]
        assert got == [(entry.request_id, True, messages.Reason.MATCH, "s3"),
                       (entry.request_id, True, messages.Reason.MATCH, "s3"),
                       (again.request_id, False, "anti_passback", ""), (again.request_id, False, "anti_passback", "")]
        assert other_stats["access_anti_passback"] == 1 and stats["access_anti_passback"] == 1
        # both replicas audited the retried pass; the request id in both entries says it is one pass
        retried = [(actor, detail) for actor, _, action, _, _, detail in log.entries
                   if action == "decision.identify" and detail.endswith(f"request {entry.request_id}")]
        assert retried == [("matcher-1", f"match; request {entry.request_id}"),
                           ("matcher-2", f"match; request {entry.request_id}")]
        exit_ = ask("door-b", vectors["s3"])
        second.handle_batch([node.sealed_by("door-b", exit_, MessageType.PROBE, node.pack)])
        after = ask("door-a", vectors["s3"])
        first.handle_batch([node.sealed_by("door-a", after, MessageType.PROBE, node.pack)])
        assert [(a.accepted, a.reason) for a in answers(node, "door-b")] == [(True, messages.Reason.MATCH)]
        assert answers(node, "door-a")[-1].accepted  # out by door-b, in again: a new entry is granted
    finally:
        other_store.close()


def test_a_decision_the_full_audit_queue_cannot_take_is_not_given_and_nothing_waits(tmp_path, keys, monkeypatch):
    """The matcher's network thread runs the request batches: with the audit log's queue full
    (its disk full, commits failing) a decision must neither hold that thread (the broker would
    drop the replica, and with it every door's sync and events) nor go out unrecorded. It is not
    given and is no strike against the door, which decides from its cache; once there is room
    the door's retry is decided and recorded."""
    monkeypatch.setattr(audit_writer, "RETRY_FIRST_S", 2.0)  # the queue stays full while the batch runs
    with small_disk(tmp_path / "disk") as disk:
        node = make_node(disk, keys)
        log = AuditLog.open_with(disk / "decisions.db", keys, "matcher-1", group_max_entries=4, group_max_queued=8)
        try:
            gallery = Gallery(*node.pack, node.dimension)
            vectors = {f"s{i}": node.vector() for i in range(4)}
            for subject, vector in vectors.items():
                gallery.upsert(subject, Template(vector, *node.pack))
            stats: Counter[str] = Counter()
            handler = RequestHandler("matcher-1", node.keys, node.directory, LoadedGallery(gallery, {}, {}), 0.5,
                                     node.courier(), Auditor("matcher-1", log), stats)
            log.checkpoint()
            filler = fill(disk)
            for n in range(8):  # what the disk could not take: the queue is full
                log.append(Principal("matcher-1", Role.OPERATOR, device="door-b"), "decision.identify", f"s-{n}",
                           "pass", wait=False)
            assert wait_for(lambda: log.writer.failure is not None and log.writer.depth == 8, 10.0)
            asked = [ask("door-a", vector) for vector in vectors.values()]
            batch = threading.Thread(target=handler.handle_batch, daemon=True,
                                     args=([node.sealed_by("door-a", r, MessageType.PROBE, node.pack) for r in asked],))
            batch.start()
            batch.join(10.0)
            assert not batch.is_alive(), "the request path waited for room in the audit queue"
            assert answers(node, "door-a") == [] and stats["accepted"] == 0
            assert stats[f"unwritable:{topics.REQUEST}"] == 4 and stats["rejected:malformed"] == 0

            filler.unlink()  # room made: the entries are written, the door's retries decided
            assert wait_for(lambda: log.writer.depth == 0 and log.writer.failure is None, 20.0), log.writer.state()
            handler.handle_batch([node.sealed_by("door-a", r, MessageType.PROBE, node.pack) for r in asked])
            assert [(a.request_id, a.accepted) for a in answers(node, "door-a")] == [(r.request_id, True)
                                                                                    for r in asked]
            log.flush()
            decided = [e for e in log.entries() if e.device == "door-a" and e.action == "decision.identify"]
            assert len(decided) == 4 and stats["accepted"] == 4
        finally:
            log.close()
            node.store.close()
            node.data.close()

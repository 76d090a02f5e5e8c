"""Events and alarms arriving in bundles (``protocol.bundles``): each envelope of a door's
outbox bundle is opened, recorded once and acknowledged as if it had come alone; a broken
frame or an envelope another device sealed is refused without losing the rest."""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

from appliance.matcher.events import IDLE_FLUSH_S, EventAuditor, EventRecorder
from appliance.matcher.replica_io import Auditor
from appliance.protocol import bundles, messages, topics
from appliance.protocol.directory import MATCHER_NODE
from appliance.security.envelope import MessageType, Sealer
from appliance.transport.mqtt import Incoming
from matcherkit import FakeLog

BACKLOG = 30


def events(device: str, count: int) -> list[messages.Event]:
    since = time.time() - 3600  # sealed while the door was offline
    return [messages.Event(messages.new_id(), device, "door_held_open", since + i, {"seconds": 12})
            for i in range(count)]


def bundle_of(node, device: str, backlog: list[messages.Event], topic_of: str | None = None):
    sealed = [node.sealed_by(e.device_id, e, MessageType.EVENT, kind=topics.EVENT, topic_of=topic_of or device)
              for e in backlog]
    return replace(sealed[0], payload=bundles.pack([incoming.payload for incoming in sealed]))


def quietly_flushed(recorder: EventRecorder) -> None:
    """Take what is queued, then the flush ticker's nudge once the queue has been quiet."""
    recorder.worker.run_queued_here()
    time.sleep(IDLE_FLUSH_S)
    recorder.worker.put(None)
    recorder.worker.run_queued_here()


def acknowledged(node, device: str) -> list[str]:
    acks = [node.opened_by(device, published, MessageType.SYNC) for published in
            node.broker.on(topics.device_topic(device, topics.SYNC))]
    return [ref for ack in acks for ref in ack.ids]


def test_a_bundle_is_recorded_event_by_event_once_and_acknowledged(node):
    stats = Counter()
    recorder = EventRecorder("matcher-1", node.keys, node.directory, node.store, node.courier(), Auditor("matcher-1"),
                             stats)
    backlog = events("door-a", BACKLOG)
    frame = bundle_of(node, "door-a", backlog)
    for _delivery in range(2):  # the acknowledgement was lost: the door sends the bundle again
        recorder.worker.put(frame)
        quietly_flushed(recorder)
    wanted = [e.event_id for e in backlog]
    assert node.store.event_ids("door-a") == wanted  # in the outbox's order, each once
    assert stats["events_recorded"] == BACKLOG and stats["events_duplicate"] == BACKLOG
    assert acknowledged(node, "door-a") == wanted * 2  # every delivery is acknowledged


def test_a_broken_frame_is_refused_whole_and_a_foreign_envelope_alone(node):
    stats = Counter()
    recorder = EventRecorder("matcher-1", node.keys, node.directory, node.store, node.courier(), Auditor("matcher-1"),
                             stats)
    good = bundle_of(node, "door-a", events("door-a", 3))
    recorder.worker.put(replace(good, payload=good.payload[:-5]))  # cut short: nothing of it is taken
    mixed = events("door-a", 2) + events("door-b", 1)  # door-b's envelope on door-a's topic
    recorder.worker.put(bundle_of(node, "door-a", mixed, topic_of="door-a"))
    quietly_flushed(recorder)
    assert node.store.event_ids() == [e.event_id for e in mixed[:2]]
    assert recorder.gate.stats["rejected:malformed"] == 1
    assert recorder.gate.stats["rejected:sender_topic_mismatch"] == 1


def test_without_a_sync_store_each_envelope_of_a_bundle_is_audited(node):
    log, stats = FakeLog(), Counter()
    auditor = EventAuditor("matcher-1", node.keys, node.directory, Auditor("matcher-1", log), stats)
    sealer = Sealer(node.devices["door-a"])  # one sealer: its counters rise as a door's do
    sealed = [sealer.seal(node.directory.get(MATCHER_NODE), MessageType.EVENT, e.encode())
              for e in events("door-a", 3)]
    auditor.handle(Incoming(topics.device_topic("door-a", topics.EVENT), bundles.pack(sealed), 0, False))
    assert stats[topics.EVENT] == 3 and log.actions == [("door-a", "event.door_held_open")] * 3

"""The device's side of enrollment sync: keep the SQLCipher cache on the matcher's revisions.

On every (re)connection the client asks for everything after the revision its cache holds;
each ``Delta`` it receives (sealed to this device, signed by a matcher replica) is applied in
one transaction - the cache is always at a whole revision - and the revision reached is
acknowledged. Until the matcher has confirmed the cache is at its head after a connection,
``current`` is clear and local decisions wait for it (``CacheDecider``), so a tombstone
issued while the device was away is applied before its next local match. A periodic
request carries the cache digest; on a mismatch the matcher sends a full snapshot. Every
answer carries the site's claim key: the first one (or a new one) empties the cache, which
is then synced again with claims keyed by it (``DeviceCache.adopt_claim_key``).
Outbox acknowledgements arrive on the same topic and go to the pump. Each message that opens
tells the link a matcher is there; a request left unanswered for ``REQUEST_TIMEOUT_S`` tells
it the matcher is not (``MatcherLink.matcher_reachable``). While the link holds the matcher
silent (a door's request went unanswered) the client asks every ``REQUEST_TIMEOUT_S``, so the
door learns the matcher is back from the first answer without a person waiting for it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import messages, topics
from appliance.protocol.inbound import open_on_topic
from appliance.protocol.sync_entries import TombstoneEntry, UpsertEntry
from appliance.security.envelope import MessageType, NodeKeys, Opener, ReplayGuard
from appliance.stores.device import CacheEntry, DeviceCache
from appliance.transport.mqtt import Incoming
from appliance.vision.templates import Template
from appliance.workers import QueueWorker, Ticker

log = logging.getLogger(__name__)

REQUEST_TIMEOUT_S = 5.0  # ask again when an answer does not come
CHECK_S = 0.05  # how often the connection, the answer timeout and the digest are looked at
QUEUE_LIMIT = 100_000
_CHECK = None  # the ticker's item
NO_FACE = np.zeros(0, np.float32)  # the cached "template" of a person without one (stores.device)


class SyncClient:
    def __init__(self, link, cache: DeviceCache, keys: NodeKeys, directory, digest_every_s: float = 300.0,
                 on_outbox_ack: Callable[[list[str]], None] | None = None, replay_window_s: float = 120.0):
        self.link = link
        self.cache = cache
        self.device_id = link.device_id
        self.opener = Opener(keys, directory.matchers(), window_s=replay_window_s,
                             guard=ReplayGuard(not_before=time.time()))
        self.digest_every_s = digest_every_s
        self.on_outbox_ack = on_outbox_ack
        self.current = threading.Event()  # the matcher confirmed the cache is at its head
        self.stats: Counter[str] = Counter()
        self.head = 0
        # the matcher's last answer said the site justified central matching; until one says
        # so (a fresh start included) no template leaves the door (CacheDecider)
        self.central_allowed = False
        self._generation = -1
        self._awaiting = ""  # request id of the answer being applied
        self._asked_at = 0.0
        self._next_digest = time.monotonic() + digest_every_s
        self._worker: QueueWorker[Incoming | None] = QueueWorker("sync-client", self._take, QUEUE_LIMIT, self.stats)
        self._ticker = Ticker("sync-client-check", CHECK_S, lambda: self._worker.put(_CHECK))
        link.on_sync = self._worker.put

    def start(self) -> "SyncClient":
        self._worker.start()
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()
        self._worker.stop()

    def wait_current(self, timeout: float) -> bool:
        return self.current.wait(timeout)

    # -- requests -------------------------------------------------------------------------
    def request(self, digest: bool = False) -> None:
        snapshot_id, snapshot_revision, cursor = self.cache.snapshot_progress()
        message = messages.SyncRequest(messages.new_id(), self.device_id, self.cache.revision,
                                       self.cache.digest() if digest else "", snapshot_id, snapshot_revision, cursor)
        self._awaiting, self._asked_at = message.request_id, time.monotonic()
        self._send(message)
        self.stats["requests"] += 1

    def _send(self, message: messages.Message) -> None:
        try:
            sealed = self.link.sealer.seal(self.link.matcher, MessageType.SYNC_ACK, message.encode())
            self.link.endpoint.publish(topics.device_topic(self.device_id, topics.SYNC_ACK), sealed)
        except ApplianceError as exc:
            log.info("%s: sync message not sent: %s", self.device_id, exc)

    # -- on the worker --------------------------------------------------------------------
    def _take(self, incoming: Incoming | None) -> None:
        if incoming is None:
            self._check()
            return
        try:
            self._handle(incoming)
        except Exception:  # one bad message must not stop syncing
            self.stats["errors"] += 1
            log.exception("%s: sync message failed", self.device_id)

    def _check(self) -> None:
        """What time and the connection ask for: catch up after a (re)connection, ask again
        when an answer did not come, send the digest now and then."""
        endpoint = self.link.endpoint
        if not endpoint.connected.is_set():
            self.current.clear()
        elif endpoint.connections != self._generation:  # (re)connected: catch up first
            self._generation = endpoint.connections
            self.current.clear()
            self.request()
        elif self._awaiting and time.monotonic() - self._asked_at > REQUEST_TIMEOUT_S:
            self.link.silent()  # the matcher did not answer: the door must not count on it
            self.request()
        elif not self._awaiting and self.link.matcher_silent:  # asked again: its answer says it is back
            self.request()
        elif time.monotonic() >= self._next_digest and self.current.is_set():
            self._next_digest = time.monotonic() + self.digest_every_s
            self.request(digest=True)

    def _handle(self, incoming: Incoming) -> None:
        try:
            inbound = open_on_topic(self.opener, incoming.topic, incoming.payload, expect=MessageType.SYNC)
            message = messages.decode(inbound.payload)
        except ApplianceError as exc:  # EnvelopeRejected included
            self.stats["rejected"] += 1
            log.warning("%s: dropped a sync message: %s", self.device_id, exc)
            return
        self.link.heard()  # signed by a matcher replica: it is there
        if isinstance(message, messages.OutboxAck):
            if self.on_outbox_ack is not None:
                self.on_outbox_ack(message.ids)
            return
        if isinstance(message, messages.Delta):
            self.apply(message)

    def apply(self, delta: messages.Delta) -> None:
        self.head = max(self.head, delta.head)
        if delta.kind == "notice":
            if delta.head > self.cache.revision:
                self.current.clear()
                self.request()
            return
        if delta.request_id != self._awaiting:
            self.stats["stale_answers"] += 1
            return
        self.central_allowed = delta.central  # every answer says the site's matching decision
        if delta.claim_key and self.cache.adopt_claim_key(bytes.fromhex(delta.claim_key)):
            self.stats["claim_key_resyncs"] += 1  # claims held so far were keyed otherwise: start over
            self.request()
            return
        self.cache.put_rules(delta.access.get("rules", {}))  # and this door's access rules (docs/access.md)
        if delta.kind == "snapshot":
            entries = [_cache_entry(e, delta) for e in delta.upserts]
            if not self.cache.stage_snapshot(delta.snapshot_id, delta.revision, delta.after, delta.cursor, entries,
                                             delta.complete):
                self.stats["snapshot_restarts"] += 1
                self.request()
                return
            self.stats["snapshot_pages"] += 1
            if not (delta.complete or delta.last):
                return
        else:
            tombstones = [TombstoneEntry.from_wire(t) for t in delta.tombstones]
            try:
                applied = self.cache.apply_changes(delta.base, delta.revision,
                                                   [_cache_entry(e, delta) for e in delta.upserts],
                                                   [(t.subject_id, t.revision) for t in tombstones])
            except ApplianceError as exc:
                if exc.code is not ErrorCode.SYNC_GAP:
                    raise
                self.stats["gaps"] += 1
                self.request()
                return
            self.stats["deltas_applied" if applied else "deltas_repeated"] += 1
            if not delta.last:
                return
        revision = self.cache.revision
        self._send(messages.SyncAck(self.device_id, revision, time.time()))
        if revision >= delta.head and not self.cache.snapshot_progress()[0]:
            self._awaiting = ""
            self.cache.confirm_current()
            self.current.set()
        else:
            self.request()


def _cache_entry(wire: dict, delta: messages.Delta) -> CacheEntry:
    entry = UpsertEntry.from_wire(wire)
    vector = entry.vector if entry.vector is not None else NO_FACE
    return CacheEntry(entry.subject_id, Template(vector, delta.pack_id, delta.pack_version), entry.revision,
                      entry.display, entry.claim, delta.access.get("people", {}).get(entry.subject_id, {}), entry.pin,
                      entry.face_refused)

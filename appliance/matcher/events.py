"""Events and alarms from devices.

``EventRecorder`` (a matcher with a sync store): events and alarms come from device outboxes,
possibly sealed hours ago while offline, so they are opened with a long window and without
counters (``_NoCounterGuard``) and deduplicated by their id in the sync store instead: each
is recorded exactly once however often it is delivered, in batches of up to ``EVENT_BATCH``
per transaction, and only then acknowledged (``outbox_ack``) so the device drops it.

A decision the door took itself (``stores.audit_devices.is_door_decision``) also becomes one
entry of the audit chain, with its original time and the device's own signature (checked
here with the device's key): the sync store's dedupe by id decides which replica writes it,
the batch's entries are committed together before the acknowledgement, and an entry a replica
claimed but never wrote (it died in between) is taken over after ``AUDIT_LEASE_S``.

``EventAuditor`` (a matcher without one: benchmarks, transport tests): each event or alarm
is opened like a request, counted and written to the audit log.

A pass a door's cache granted (a face or a card let in while the door decided alone) also goes
into the site's shared anti-passback presence book if it is newer than what the book holds
(``SiteAccess.merge_door_pass``): after an outage the replicas know who went in and out.

A door's outbox sends its backlog in bundles (``protocol.bundles``): both take each envelope
of a bundle as if it had come alone.

Both take only what a provisioned, not revoked device sealed on its own topic
(``Gate.admit``); every refusal is counted and summed up by the gate, never recorded.
"""
from __future__ import annotations

import logging
import time
from collections import Counter, defaultdict
from dataclasses import replace

from appliance.errors import ApplianceError, ErrorCode, is_unwritable
from appliance.matcher.access_site import SiteAccess
from appliance.matcher.device_limits import Limits
from appliance.matcher.gate import MALFORMED, Gate
from appliance.matcher.replica_io import Audit, Courier, StoreTrouble
from appliance.matcher.service import Route
from appliance.matcher.sync_store import EventRecord, SyncStore
from appliance.protocol import bundles, messages, topics
from appliance.protocol.directory import NodeDirectory
from appliance.protocol.inbound import Inbound
from appliance.security import device_reports
from appliance.security.envelope import MessageType, NodeKeys, Opener, ReplayGuard
from appliance.stores import audit_devices
from appliance.stores.audit import AuditLog
from appliance.transport.mqtt import Incoming
from appliance.workers import QueueWorker, Ticker

log = logging.getLogger(__name__)

EVENT_BATCH = 500
IDLE_FLUSH_S = 0.05  # a batch is recorded once no event came for this long
OUTBOX_WINDOW_DAYS = 30  # events sealed up to this long ago are still accepted (deduplicated by id)
QUEUE_LIMIT = 100_000
ACKS_PER_MESSAGE = 1000
AUDIT_LEASE_S = 60.0  # a claimed door-decision entry not written for this long is another replica's to write
_FLUSH = None  # the ticker's item: record the batch if the queue went quiet

KINDS = (topics.EVENT, topics.ALARM)
MESSAGE_OF = {topics.EVENT: (messages.Event, MessageType.EVENT), topics.ALARM: (messages.Alarm, MessageType.ALARM)}


class _NoCounterGuard(ReplayGuard):
    """Outbox events are deduplicated by their id in the sync store, not by counters: an event
    sealed before a restart, or resent, is recorded once whatever its counter."""

    def check_time(self, sender: str, timestamp_ms: int) -> None:
        return None

    def check(self, sender: str, counter: int) -> None:
        return None

    def record(self, sender: str, counter: int) -> None:
        return None


def unbundled(incoming: Incoming, gate: Gate) -> list[Incoming]:
    """The envelopes a message carries, each as if it had come alone on its topic
    (``protocol.bundles``); none, after noting the refusal, when its bundle frame is malformed."""
    if not bundles.is_bundle(incoming.payload):
        return [incoming]
    try:
        return [replace(incoming, payload=envelope) for envelope in bundles.unpack(incoming.payload)]
    except bundles.BundleMalformed as exc:
        device, kind = topics.device_of(incoming.topic), incoming.topic.rsplit("/", 1)[-1]
        log.debug("malformed bundle on %s: %s", incoming.topic, exc)
        if device is not None:
            gate.refuse(device, kind, MALFORMED)
        return []


def _opened(incoming: Incoming, gate: Gate, opener: Opener) -> list[tuple[Inbound, messages.Event | messages.Alarm]]:
    """Every envelope ``incoming`` carries (a bundle's each as if it had come alone), opened
    and decoded; what does not open or decode is noted by the gate and left out."""
    kind = incoming.topic.rsplit("/", 1)[-1]
    opened = []
    for one in unbundled(incoming, gate):
        inbound = gate.admit(opener, one, MESSAGE_OF[kind][1])
        if inbound is None:
            continue
        try:
            opened.append((inbound, _decode(inbound, kind)))
        except (ApplianceError, ValueError) as exc:
            log.debug("malformed %s from %s: %s", kind, inbound.device, exc)
            gate.refuse(inbound.device, kind, MALFORMED)
    return opened


def _decode(inbound: Inbound, kind: str) -> messages.Event | messages.Alarm:
    message = messages.decode(inbound.payload, MESSAGE_OF[kind][0])
    if message.device_id != inbound.device:
        raise ApplianceError(ErrorCode.MESSAGE_REJECTED, "device id does not match the sender")
    return message


class EventRecorder:
    def __init__(self, name: str, keys: NodeKeys, directory: NodeDirectory, store: SyncStore, courier: Courier,
                 audit: Audit, stats: Counter[str], gate: Gate | None = None, audit_log: AuditLog | None = None,
                 access: SiteAccess | None = None):
        self.name, self.store, self.courier, self.audit, self.stats = name, store, courier, audit, stats
        self.audit_log = audit_log  # door decisions enter its chain (None: benchmarks, no central data)
        self.access = access  # passes doors granted alone enter its presence book (None: no access rules)
        self.gate = gate or Gate(name, Limits(), audit, stats)
        self.opener = Opener(keys, directory.devices(), window_s=OUTBOX_WINDOW_DAYS * 86400, guard=_NoCounterGuard())
        self._batch: list[EventRecord] = []
        self.store_trouble = StoreTrouble(name, stats)
        self._last_at = 0.0  # monotonic time of the last event taken
        self.worker: QueueWorker[Incoming | None] = QueueWorker(f"{name}-events", self._take, QUEUE_LIMIT, stats)
        self.route = Route(KINDS, self.worker,
                           Ticker(f"{name}-events-flush", IDLE_FLUSH_S, lambda: self.worker.put(_FLUSH)))

    def _take(self, incoming: Incoming | None) -> None:
        if incoming is not None:
            self._last_at = time.monotonic()
            for inbound, message in _opened(incoming, self.gate, self.opener):
                self._batch.append(EventRecord(message.ref, inbound.device, inbound.kind, message.kind, message.at,
                                               message.details, message.signature))
        quiet = time.monotonic() - self._last_at >= IDLE_FLUSH_S
        if self._batch and (len(self._batch) >= EVENT_BATCH or (incoming is None and quiet)):
            batch, self._batch = self._batch, []
            try:
                self.flush(batch)
            except Exception as exc:  # not acknowledged: the devices send again
                if is_unwritable(exc):  # a full disk: no traceback, counted per event
                    self.store_trouble.note(batch[-1].device_id, topics.EVENT, exc,
                                            "not acknowledged: the doors send them again", len(batch))
                else:
                    self.stats["internal_error"] += 1
                    log.exception("%s: event batch not recorded", self.name)

    def flush(self, batch: list[EventRecord]) -> None:
        """Record ``batch`` exactly once, enter the door's own decisions in the audit chain,
        then acknowledge it to each device."""
        now = time.time()
        new = self.store.record_new_events(batch, now, self._owes_audit)
        self.stats["event"] += sum(1 for e in batch if e.type == topics.EVENT)
        self.stats["events_recorded"] += len(new)
        self.stats["events_duplicate"] += len(batch) - len(new)
        if self.audit_log is not None:
            self._enter_decisions([e for e in new if self._owes_audit(e)])
            self._enter_decisions(self.store.claim_owed_audits(now, AUDIT_LEASE_S, EVENT_BATCH))
        self._merge_door_passes(new)
        for event in batch:
            if event.type == topics.ALARM:
                self.audit(event.device_id, f"alarm.{event.kind}", "-", "received")
        acks: dict[str, list[str]] = defaultdict(list)
        for event in batch:
            acks[event.device_id].append(event.event_id)
        for device, ids in acks.items():
            for start in range(0, len(ids), ACKS_PER_MESSAGE):
                try:
                    self.courier.sync(device, messages.OutboxAck(ids[start:start + ACKS_PER_MESSAGE]))
                except Exception as exc:  # the device resends; recorded once anyway
                    log.warning("%s: ack to %s not sent: %s", self.name, device, exc)

    def _merge_door_passes(self, events: list[EventRecord]) -> None:
        """The passes doors granted from their caches, into the shared presence book (newer
        wins: ``SiteAccess.merge_door_pass``). The events are recorded whatever happens here."""
        if self.access is None:
            return
        memo = None  # the rules read once for the batch, at its first door pass
        for event in events:
            granted = audit_devices.door_pass(event.kind, event.details) if event.type == topics.EVENT else None
            if granted is None:
                continue
            try:
                memo = memo or self.access.current()
                if self.access.merge_door_pass(granted[0], event.device_id, event.at, granted[1], memo):
                    self.stats["door_passes_merged"] += 1
            except Exception:  # noqa: BLE001 - presence is best effort; the event itself is on record
                self.stats["door_passes_not_merged"] += 1
                log.exception("%s: a pass at %s not taken into the presence book", self.name, event.device_id)

    def _owes_audit(self, event: EventRecord) -> bool:
        return (self.audit_log is not None and event.type == topics.EVENT
                and audit_devices.is_door_decision(event.kind, event.details))

    def _enter_decisions(self, events: list[EventRecord]) -> None:
        """One audit entry per door decision, committed together; then they owe nothing."""
        if not events:
            return
        records = []
        for event in events:
            document = messages.Event(event.event_id, event.device_id, event.kind, event.at, event.details).document()
            peer = self.opener.senders.get(event.device_id)
            verified = peer is not None and device_reports.verify(peer.signing, document, event.signature)
            self.stats["decisions_unsigned" if not verified else "decisions_signed"] += 1
            records.append(audit_devices.decision_record(self.name, document, event.signature, verified))
        self.audit_log.append_records(records)
        self.store.audits_written([e.event_id for e in events])
        self.stats["decisions_audited"] += len(events)


class EventAuditor:
    def __init__(self, name: str, keys: NodeKeys, directory: NodeDirectory, audit: Audit, stats: Counter[str],
                 replay_window_s: float = 120.0, gate: Gate | None = None):
        self.name, self.audit, self.stats = name, audit, stats
        self.gate = gate or Gate(name, Limits(), audit, stats)
        self.opener = Opener(keys, directory.devices(), window_s=replay_window_s,
                             guard=ReplayGuard(not_before=time.time()))
        self.route = Route(KINDS, QueueWorker(f"{name}-events", self.handle, QUEUE_LIMIT, stats))

    def handle(self, incoming: Incoming) -> None:
        for inbound, message in _opened(incoming, self.gate, self.opener):
            self.stats[inbound.kind] += 1
            self.audit(inbound.device, f"{inbound.kind}.{message.kind}", "-", "received")

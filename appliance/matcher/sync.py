"""The matcher's side of offline operation: the enrollment revision stream to device caches,
deletion confirmations, exactly-once events from device outboxes, third-party events.

* Revisions come from the central ``BiometricStore``: every upsert and tombstone has its own
  store-wide revision. A device asks for "everything after R" (``SyncRequest``) and gets
  ``Delta`` messages sealed to it; each delta moves it from one whole revision to the next.
  A device too far behind (``snapshot_after``), ahead of the store, or whose digest does not
  match, gets a full snapshot in pages, swapped in atomically on the device.
* Which templates a device may hold: subjects with an active ``face-local-matching`` consent
  whose groups include the device's group (no group assigned: every group). A change that
  makes a subject ineligible for a device reaches it as a tombstone.
* Deletions: a device acknowledges each revision it committed; every tombstone at or below
  an acknowledged revision is confirmed for that device, with the time. The deletion report
  (signed) lists every device's confirmation; ``unconfirmed`` lists what is still missing.
* Events and alarms from device outboxes are opened with a long window (they may have been
  sealed hours ago, offline) and deduplicated by their id in the sync store, so each is
  recorded exactly once however often it is delivered; the device drops it on our ack.
* Replicas: each replica polls the store revision and applies the same stream to its own
  in-memory gallery; one replica (the first to claim a revision in the shared sync store)
  announces it to devices and third parties.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from appliance.matcher.service import MatcherService
from appliance.protocol import messages, topics
from appliance.security.envelope import EnvelopeRejected, MessageType, Opener, ReplayGuard
from appliance.security.keys import SYNC_DB
from appliance.security.masking import mask_name
from appliance.security.roles import Principal, Role
from appliance.stores.base import CipherStore
from appliance.stores.deletion import load_receipt
from appliance.stores.device import cache_digest, claim_hash
from appliance.stores.protected import RECEIPTS_DIR, ProtectedData
from appliance.transport.mqtt import Incoming
from appliance.vision.templates import Template

log = logging.getLogger(__name__)

LOCAL_MATCH_SCOPE = "face-local-matching"  # consent that allows a template on door devices
SYNC_FILE = "sync.db"
DEFAULT_GROUP = "default"
ENTRIES_BYTES = 40_000  # upserts per delta message stay under the 48 KiB message limit
MESSAGES_PER_ANSWER = 8  # deltas per sync answer; the device asks again for more
POLL_S = 0.2  # replicas look for new revisions this often
EVENT_BATCH = 500
OUTBOX_WINDOW_DAYS = 30  # events sealed up to this long ago are still accepted (deduplicated by id)
_REPORT_DOMAIN = b"appliance/deletion-confirmations/v1|"


SNAPSHOT_ATTEMPTS = 5  # re-reads of a snapshot whose head moved before giving up for this round


class SyncStore(CipherStore):
    """The matcher's sync state (shared by replicas): device revisions, deletion
    confirmations, received event ids, who announced which revision, subject groups."""

    KEY_NAME = SYNC_DB
    MIGRATIONS = (
        """
        CREATE TABLE devices (device_id TEXT PRIMARY KEY, revision INTEGER NOT NULL, acked_at REAL NOT NULL);
        CREATE TABLE confirmations (revision INTEGER NOT NULL, subject_id TEXT NOT NULL, device_id TEXT NOT NULL,
                                    confirmed_at REAL NOT NULL, PRIMARY KEY (revision, device_id));
        CREATE TABLE events (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,
                             device_id TEXT NOT NULL, type TEXT NOT NULL, kind TEXT NOT NULL, at REAL NOT NULL,
                             received_at REAL NOT NULL, details TEXT NOT NULL);
        CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        CREATE TABLE announced (revision INTEGER PRIMARY KEY, by TEXT NOT NULL, at REAL NOT NULL);
        CREATE TABLE subject_groups (subject_id TEXT NOT NULL, grp TEXT NOT NULL, PRIMARY KEY (subject_id, grp));
        """,
    )

    def __init__(self, path, key) -> None:
        super().__init__(path, key)
        self._lock = threading.RLock()  # the sync and event threads share this connection

    @contextmanager
    def transaction(self) -> Iterator:
        with self._lock, super().transaction() as conn:
            yield conn

    def execute(self, sql: str, params=()):
        with self._lock:
            return list(self.conn.execute(sql, params))

    def record_ack(self, device: str, revision: int, tombstones: list[tuple[str, int]], now: float) -> None:
        with self.transaction():
            self.execute("INSERT INTO devices VALUES (?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
                         "revision = excluded.revision, acked_at = excluded.acked_at", (device, revision, now))
            self.conn.executemany("INSERT OR IGNORE INTO confirmations VALUES (?, ?, ?, ?)",
                                  [(rev, subject, device, now) for subject, rev in tombstones])

    def device_revision(self, device: str) -> int:
        rows = self.execute("SELECT revision FROM devices WHERE device_id = ?", (device,))
        return int(rows[0][0]) if rows else 0

    def confirmations(self, revision: int) -> dict[str, float]:
        return {d: t for d, t in self.execute(
            "SELECT device_id, confirmed_at FROM confirmations WHERE revision = ?", (revision,))}

    def record_events(self, batch: list[tuple[str, str, messages.Message]], now: float) -> tuple[int, int]:
        """(new, duplicate) after recording a batch in one transaction, in arrival order."""
        new = 0
        with self.transaction():
            for device, kind, message in batch:
                event_id = message.event_id if isinstance(message, messages.Event) else message.alarm_id
                new += self.conn.execute(
                    "INSERT OR IGNORE INTO events (event_id, device_id, type, kind, at, received_at, details) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (event_id, device, kind, message.kind, message.at, now,
                     json.dumps(message.details, separators=(",", ":"), ensure_ascii=False))).rowcount
            duplicates = len(batch) - new
            if duplicates:
                self.execute("INSERT INTO counters VALUES ('duplicate_events', ?) ON CONFLICT (name) DO UPDATE "
                             "SET value = value + excluded.value", (duplicates,))
        return new, duplicates

    def event_ids(self, device: str | None = None) -> list[str]:
        sql = "SELECT event_id FROM events" + (" WHERE device_id = ?" if device else "") + " ORDER BY seq"
        return [r[0] for r in self.execute(sql, (device,) if device else ())]

    def counter(self, name: str) -> int:
        rows = self.execute("SELECT value FROM counters WHERE name = ?", (name,))
        return int(rows[0][0]) if rows else 0

    def claim_announcements(self, revisions: list[int], by: str) -> set[int]:
        """The revisions this replica is first to announce (one transaction)."""
        claimed = set()
        with self.transaction():
            for revision in revisions:
                if self.conn.execute("INSERT OR IGNORE INTO announced VALUES (?, ?, ?)",
                                     (revision, by, time.time())).rowcount == 1:
                    claimed.add(revision)
        return claimed

    def assign_groups(self, subject_id: str, groups: tuple[str, ...]) -> None:
        """Door groups whose devices may hold the subject (none: all). Takes effect for a
        device with the subject's next revision (re-enrollment) or the device's next snapshot."""
        with self.transaction():
            self.execute("DELETE FROM subject_groups WHERE subject_id = ?", (subject_id,))
            self.conn.executemany("INSERT INTO subject_groups VALUES (?, ?)", [(subject_id, g) for g in groups])

    def groups(self, subject_id: str) -> frozenset[str]:
        return frozenset(r[0] for r in self.execute("SELECT grp FROM subject_groups WHERE subject_id = ?",
                                                    (subject_id,)))


@dataclass(frozen=True)
class Profile:
    local_consent: bool
    groups: frozenset[str]
    display: str
    claim: str

    def allows(self, group: str) -> bool:
        return self.local_consent and (not self.groups or group in self.groups)


class SyncEngine:
    """The revision stream for devices, without transport (the service and tests share it)."""

    def __init__(self, data: ProtectedData, store: SyncStore, pack_id: str, pack_version: str,
                 snapshot_after: int = 5000, principal: Principal | None = None):
        self.data, self.store = data, store
        self.pack_id, self.pack_version = pack_id, pack_version
        self.snapshot_after = snapshot_after
        self.principal = principal or Principal("sync", Role.OPERATOR)
        self._profiles: dict[tuple[str, int], Profile] = {}
        self._lock = threading.RLock()

    # -- what a device may hold -----------------------------------------------------------
    def head(self) -> int:
        return self.data.biometric.revision

    def profile(self, subject_id: str, revision: int) -> Profile:
        key = (subject_id, revision)
        found = self._profiles.get(key)
        if found is None:
            identity = self.data.identity
            try:
                person = identity.person(self.principal, subject_id)
                consents = identity.consents(self.principal, subject_id)
            except Exception:  # noqa: BLE001 - no identity record: never on a device
                return Profile(False, frozenset(), "", "")
            local = any(c.active and c.scope == LOCAL_MATCH_SCOPE for c in consents)
            found = Profile(local, self.store.groups(subject_id), mask_name(person.name), claim_hash(person.card_no))
            if len(self._profiles) > 200_000:
                self._profiles.clear()
            self._profiles[key] = found
        return found

    def _rows(self, sql: str, params: tuple) -> list[tuple[str, int]]:
        return [(r[0], int(r[1])) for r in self.data.biometric.execute(sql, params)]

    def _entry(self, subject_id: str, revision: int, profile: Profile) -> dict:
        template = self.data.biometric.template(self.principal, subject_id, self.pack_id, self.pack_version,
                                                self.data.vault)
        return {"s": subject_id, "r": revision, "t": messages.MatchRequest.pack_vector(template.vector),
                "n": profile.display, "c": profile.claim}

    def expected_digest(self, group: str) -> str:
        rows = self._rows("SELECT subject_id, revision FROM templates WHERE pack_id = ? AND pack_version = ?",
                          (self.pack_id, self.pack_version))
        return cache_digest([(s, self.pack_id, self.pack_version, r) for s, r in rows
                             if self.profile(s, r).allows(group)])

    # -- answers --------------------------------------------------------------------------
    def answer(self, request: messages.SyncRequest, group: str) -> tuple[list[messages.Delta], str]:
        """The deltas that answer a device's request, and why (for stats)."""
        with self._lock:
            head = self.head()
            if request.snapshot_id and request.snapshot_revision == head:
                return self.snapshot(request.request_id, request.snapshot_id, request.snapshot_revision,
                                     request.cursor, group, head), "snapshot"
            if request.snapshot_id:
                # the templates moved on since the device began staging: pages read now would
                # mix two states (an overwritten template's old version is gone), so start over
                return self.snapshot(request.request_id, messages.new_id(), head, "", group, head), "snapshot_restart"
            if request.revision > head or head - request.revision > self.snapshot_after:
                return self.snapshot(request.request_id, messages.new_id(), head, "", group, head), "snapshot"
            if request.revision < head:
                return self.changes(request.request_id, request.revision, group, head), "changes"
            if request.digest and request.digest != self.expected_digest(group):
                return self.snapshot(request.request_id, messages.new_id(), head, "", group, head), "digest_mismatch"
            return [self._delta(request.request_id, "changes", head, head, head)], "current"

    def _delta(self, request_id: str, kind: str, base: int, revision: int, head: int, **extra) -> messages.Delta:
        return messages.Delta(request_id, kind, base, revision, head, self.pack_id, self.pack_version, **extra)

    def _per_message(self) -> int:
        dimension = max(1, self.data.biometric.execute(
            "SELECT length(sealed) FROM templates LIMIT 1").fetchone()[0] // 4) if self.head() else 512
        return max(1, ENTRIES_BYTES // (dimension * 4 * 4 // 3 + 200))

    def changes(self, request_id: str, after: int, group: str, head: int) -> list[messages.Delta]:
        per = self._per_message()
        limit = per * MESSAGES_PER_ANSWER
        ups = self._rows("SELECT subject_id, revision FROM templates WHERE pack_id = ? AND pack_version = ? "
                         "AND revision > ? AND revision <= ? ORDER BY revision LIMIT ?",
                         (self.pack_id, self.pack_version, after, head, limit))
        tombs = self._rows("SELECT subject_id, revision FROM tombstones WHERE revision > ? AND revision <= ? "
                           "ORDER BY revision LIMIT ?", (after, head, limit))
        items = sorted([(r, s, True) for s, r in ups] + [(r, s, False) for s, r in tombs])
        exhausted = len(ups) < limit and len(tombs) < limit and len(items) <= limit
        items = items[:limit]
        out, base = [], after
        for start in range(0, max(len(items), 1), per):
            chunk = items[start:start + per]
            upserts, tombstones = [], []
            for revision, subject, is_upsert in chunk:
                profile = self.profile(subject, revision) if is_upsert else None
                if is_upsert and profile.allows(group):
                    upserts.append(self._entry(subject, revision, profile))
                else:  # deleted, or not allowed on this device (any older copy must go)
                    tombstones.append({"s": subject, "r": revision})
            final = start + per >= len(items)
            revision = head if final and exhausted else (chunk[-1][0] if chunk else base)
            out.append(self._delta(request_id, "changes", base, revision, head, upserts=upserts,
                                   tombstones=tombstones, last=final))
            base = revision
        return out

    def snapshot(self, request_id: str, snapshot_id: str, revision: int, cursor: str, group: str,
                 head: int) -> list[messages.Delta]:
        """Pages of the cache contents at ``revision`` (= head). Pages can only be read at the
        head, so if the head moves while they are read, the snapshot starts over."""
        for _ in range(SNAPSHOT_ATTEMPTS):
            pages = self._snapshot_pages(request_id, snapshot_id, revision, cursor, group, head)
            now = self.head()
            if now == revision:
                return pages
            snapshot_id, revision, cursor, head = messages.new_id(), now, "", now
        log.warning("snapshot for %s not served: enrollment changed under %d attempts", request_id, SNAPSHOT_ATTEMPTS)
        return []  # the device asks again on its next sync round

    def _snapshot_pages(self, request_id: str, snapshot_id: str, revision: int, cursor: str, group: str,
                        head: int) -> list[messages.Delta]:
        per = self._per_message()
        out = []
        for index in range(MESSAGES_PER_ANSWER):
            page: list[dict] = []
            after = cursor
            while len(page) < per:
                rows = self._rows("SELECT subject_id, revision FROM templates WHERE pack_id = ? AND "
                                  "pack_version = ? AND subject_id > ? ORDER BY subject_id LIMIT ?",
                                  (self.pack_id, self.pack_version, cursor, per))
                if not rows:
                    break
                for subject, rev in rows:
                    cursor = subject
                    profile = self.profile(subject, rev)
                    if profile.allows(group):
                        page.append(self._entry(subject, rev, profile))
                        if len(page) == per:
                            break
            complete = len(page) < per
            out.append(self._delta(request_id, "snapshot", 0, revision, head, upserts=page, snapshot_id=snapshot_id,
                                   after=after, cursor=cursor, complete=complete,
                                   last=complete or index == MESSAGES_PER_ANSWER - 1))
            if complete:
                break
        return out

    # -- acknowledgements and deletion confirmations --------------------------------------
    def acknowledge(self, device: str, revision: int, now: float | None = None) -> None:
        with self._lock:
            previous = self.store.device_revision(device)
            tombs = self._rows("SELECT subject_id, revision FROM tombstones WHERE revision > ? AND revision <= ?",
                               (previous, revision)) if revision > previous else []
            self.store.record_ack(device, revision, tombs, time.time() if now is None else now)

    def deletion_report(self, receipt_id: str, devices: list[str]) -> dict:
        """The deletion receipt with every device's confirmation (None = not yet), signed."""
        receipt = load_receipt(self.data.root / RECEIPTS_DIR / f"{receipt_id}.json")
        confirmed = self.store.confirmations(receipt.tombstone_revision)
        report = {"receipt": json.loads(receipt.to_json()),
                  "devices": {d: confirmed.get(d) for d in sorted(devices)},
                  "complete": all(d in confirmed for d in devices),
                  "reported_at": time.time()}
        body = _REPORT_DOMAIN + json.dumps(report, sort_keys=True, separators=(",", ":")).encode("utf-8")
        report["signature"] = self.data.node.signing.sign(body).hex()
        return report

    def unconfirmed(self, devices: list[str]) -> list[dict]:
        """Deletions some device has not confirmed yet (for administrators)."""
        out = []
        for subject, revision, deleted_at in self.data.biometric.execute(
                "SELECT subject_id, revision, deleted_at FROM tombstones ORDER BY revision"):
            confirmed = self.store.confirmations(revision)
            missing = sorted(d for d in devices if d not in confirmed)
            if missing:
                out.append({"subject_id": subject, "revision": revision, "deleted_at": deleted_at,
                            "age_s": round(time.time() - deleted_at, 1), "missing": missing})
        return out


def verify_report(report: dict, public_key) -> bool:
    body = dict(report)
    signature = body.pop("signature", "")
    try:
        public_key.verify(bytes.fromhex(signature), _REPORT_DOMAIN + json.dumps(
            body, sort_keys=True, separators=(",", ":")).encode("utf-8"))
        return True
    except Exception:  # noqa: BLE001
        return False


class _NoCounterGuard(ReplayGuard):
    """Outbox events are deduplicated by their id in the sync store, not by counters: an event
    sealed before a restart, or resent, is recorded once whatever its counter."""

    def check_time(self, sender: str, timestamp_ms: int) -> None:
        return None

    def check(self, sender: str, counter: int) -> None:
        return None

    def record(self, sender: str, counter: int) -> None:
        return None


class SyncingMatcher(MatcherService):
    """The matcher service with offline operation: serves device sync, keeps its gallery on
    the revision stream, records outbox events exactly once, announces changes."""

    def __init__(self, *args, sync_store: SyncStore, snapshot_after: int = 5000,
                 group_of: Callable[[str], str] | None = None,
                 devices: Callable[[], list[str]] | None = None, poll_s: float = POLL_S, **kwargs):
        super().__init__(*args, **kwargs)
        if self.data is None:
            raise ValueError("a syncing matcher needs the central protected data")
        gallery = self.loaded.gallery
        self.sync = SyncEngine(self.data, sync_store, gallery.pack_id, gallery.pack_version, snapshot_after,
                               self.principal)
        self.store = sync_store
        self.group_of = group_of or (lambda device: DEFAULT_GROUP)
        self.devices = devices or (lambda: [p.node_id for p in self.directory.devices()])
        self.poll_s = poll_s
        self.revision = self.sync.head()  # the gallery was loaded at (at least) this revision
        self.outbox_opener = Opener(self.keys, self.directory.devices(), window_s=OUTBOX_WINDOW_DAYS * 86400,
                                    guard=_NoCounterGuard())
        self._gallery_lock = threading.RLock()
        self._audit_lock = threading.Lock()
        self._sync_work: queue.Queue[Incoming] = queue.Queue(10_000)
        self._event_work: queue.Queue[Incoming] = queue.Queue(100_000)
        self._threads = [threading.Thread(target=self._sync_loop, name=f"{self.name}-sync", daemon=True),
                         threading.Thread(target=self._event_loop, name=f"{self.name}-events", daemon=True)]
        self.endpoint.subscriptions = (*self.endpoint.subscriptions,
                                       topics.shared(topics.all_devices(topics.SYNC_ACK)))
        secret = hashlib.sha256(self.keys.signing.private_bytes_raw() + b"|integration-pseudonyms").digest()
        self._ref_key = secret

    def start(self) -> None:
        for thread in self._threads:
            thread.start()
        super().start()

    def _enqueue(self, incoming: Incoming) -> None:
        kind = incoming.topic.rsplit("/", 1)[-1]
        target = {topics.SYNC_ACK: self._sync_work, topics.EVENT: self._event_work,
                  topics.ALARM: self._event_work}.get(kind)
        if target is None:
            return super()._enqueue(incoming)
        try:
            target.put_nowait(incoming)
        except queue.Full:
            self.stats["dropped_overload"] += 1

    def _audit(self, *args, **kwargs) -> None:
        with self._audit_lock:  # the request worker and the event thread share the audit log
            super()._audit(*args, **kwargs)

    def _decide(self, device, request, header):
        with self._gallery_lock:
            return super()._decide(device, request, header)

    # -- sync requests and acks -----------------------------------------------------------
    def _open_from(self, incoming: Incoming, opener: Opener, expect: MessageType) -> tuple[str, bytes] | None:
        device = topics.device_of(incoming.topic)
        if device is None:
            self.stats["rejected:topic"] += 1
            return None
        try:
            opened = opener.open(incoming.payload, expect=expect)
        except EnvelopeRejected as exc:
            self.stats[f"rejected:{exc.reason.name.lower()}"] += 1
            return None
        if opened.header.sender != device:
            self.stats["rejected:sender_topic_mismatch"] += 1
            return None
        return device, opened.payload

    def _sync_loop(self) -> None:
        next_poll = 0.0
        while not self._stop.is_set():
            try:
                incoming = self._sync_work.get(timeout=self.poll_s / 2)
            except queue.Empty:
                incoming = None
            try:
                if incoming is not None:
                    self._on_sync(incoming)
                if time.monotonic() >= next_poll:
                    next_poll = time.monotonic() + self.poll_s
                    self.follow()
            except Exception:  # noqa: BLE001
                self.stats["internal_error"] += 1
                log.exception("%s: sync failure", self.name)

    def _on_sync(self, incoming: Incoming) -> None:
        opened = self._open_from(incoming, self.opener, MessageType.SYNC_ACK)
        if opened is None:
            return
        device, payload = opened
        try:
            message = messages.decode(payload)
            if not isinstance(message, (messages.SyncRequest, messages.SyncAck)) or message.device_id != device:
                raise ValueError("not a sync message of this device")
        except (ValueError, Exception) as exc:  # noqa: BLE001 - MESSAGE_REJECTED or foreign type
            self.stats["rejected:malformed"] += 1
            log.warning("%s: bad sync message from %s: %s", self.name, device, exc)
            return
        if isinstance(message, messages.SyncAck):
            self.sync.acknowledge(device, message.revision)
            self.stats["sync_acks"] += 1
            return
        if not any(self.device_allowed(device, mode) for mode in ("verify", "identify")):
            self.stats["sync:refused_device"] += 1  # revoked or without a policy: no deltas
            log.warning("%s: sync refused for %s (not provisioned or revoked)", self.name, device)
            return
        if not message.snapshot_id:
            self.sync.acknowledge(device, message.revision)  # what it holds, committed
        deltas, why = self.sync.answer(message, self.group_of(device))
        self.stats[f"sync:{why}"] += 1
        for delta in deltas:
            self._send(device, MessageType.SYNC, delta)

    def _send(self, device: str, message_type: MessageType, message: messages.Message) -> None:
        sealed = self.sealer.seal(self.directory.get(device), message_type, message.encode())
        self.endpoint.publish(topics.device_topic(device, topics.SYNC), sealed)

    # -- the revision stream on this replica ----------------------------------------------
    def follow(self) -> int:
        """Apply new revisions to the in-memory gallery; announce them if this replica is first."""
        head = self.sync.head()
        if head <= self.revision:
            return 0
        applied = 0
        after = self.revision
        ups = self.sync._rows("SELECT subject_id, revision FROM templates WHERE pack_id = ? AND pack_version = ? "
                              "AND revision > ? AND revision <= ? ORDER BY revision",
                              (self.sync.pack_id, self.sync.pack_version, after, head))
        tombs = self.sync._rows("SELECT subject_id, revision FROM tombstones WHERE revision > ? AND revision <= ? "
                                "ORDER BY revision", (after, head))
        gallery = self.loaded.gallery
        for subject, revision in ups:
            template = self.data.biometric.template(self.principal, subject, gallery.pack_id, gallery.pack_version,
                                                    self.data.vault)
            profile = self.sync.profile(subject, revision)
            try:
                person = self.data.identity.person(self.principal, subject)
            except Exception:  # noqa: BLE001
                person = None
            with self._gallery_lock:
                gallery.upsert(subject, Template(template.vector, gallery.pack_id, gallery.pack_version))
                self.loaded.display_names[subject] = profile.display
                if person is not None and person.card_no:
                    self.loaded.claims[person.card_no] = subject
            applied += 1
        for subject, _ in tombs:
            with self._gallery_lock:
                gallery.remove(subject)
                self.loaded.display_names.pop(subject, None)
                for card in [c for c, s in self.loaded.claims.items() if s == subject]:
                    del self.loaded.claims[card]
            applied += 1
        self.revision = head
        self.stats["revisions_followed"] += applied
        claimed = self.store.claim_announcements([r for _, r in ups + tombs] or [head], self.name)
        if claimed:
            self._announce([u for u in ups if u[1] in claimed], [t for t in tombs if t[1] in claimed], head)
        return applied

    def _announce(self, ups: list[tuple[str, int]], tombs: list[tuple[str, int]], head: int) -> None:
        upserted = set(ups)
        for subject, revision in ups + tombs:
            enrolled = (subject, revision) in upserted
            event = messages.EnrollmentEvent(
                messages.new_id(), "enrolled" if enrolled else "deleted", self.subject_ref(subject),
                self.sync.profile(subject, revision).display if enrolled else "", revision, time.time())
            body = event.encode()
            envelope = json.dumps({"event": json.loads(body), "signer": self.name,
                                   "signature": self.keys.signing.sign(body).hex()}, separators=(",", ":"))
            try:
                self.endpoint.publish(topics.ENROLLMENT_EVENTS, envelope.encode("utf-8"))
                self.stats["enrollment_events"] += 1
            except Exception as exc:  # noqa: BLE001
                log.warning("%s: enrollment event not published: %s", self.name, exc)
        for device in self.devices():
            try:
                self._send(device, MessageType.SYNC,
                           messages.Delta(messages.new_id(), "notice", head, head, head))
            except Exception as exc:  # noqa: BLE001 - an offline device asks on reconnect
                log.debug("%s: notice to %s: %s", self.name, device, exc)

    def subject_ref(self, subject_id: str) -> str:
        """The pseudonym integrations see: a keyed hash, stable, not the internal id."""
        return hmac.new(self._ref_key, subject_id.encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    # -- outbox events, exactly once ------------------------------------------------------
    def _event_loop(self) -> None:
        batch: list[tuple[str, str, messages.Message]] = []
        while not self._stop.is_set():
            try:
                incoming = self._event_work.get(timeout=0.05)
            except queue.Empty:
                incoming = None
            if incoming is not None:
                kind = incoming.topic.rsplit("/", 1)[-1]
                expect = MessageType.EVENT if kind == topics.EVENT else MessageType.ALARM
                opened = self._open_from(incoming, self.outbox_opener, expect)
                if opened is not None:
                    device, payload = opened
                    try:
                        message = messages.decode(payload, messages.Event if kind == topics.EVENT else messages.Alarm)
                        if message.device_id != device:
                            raise ValueError("device id does not match the sender")
                        batch.append((device, kind, message))
                    except Exception:  # noqa: BLE001
                        self.stats["rejected:malformed"] += 1
            if batch and (incoming is None or len(batch) >= EVENT_BATCH):
                try:
                    self._flush(batch)
                except Exception:  # noqa: BLE001 - not acked: the devices send again
                    self.stats["internal_error"] += 1
                    log.exception("%s: event batch not recorded", self.name)
                batch = []

    def _flush(self, batch: list[tuple[str, str, messages.Message]]) -> None:
        new, duplicates = self.store.record_events(batch, time.time())
        self.stats["event"] += sum(1 for _, k, _ in batch if k == topics.EVENT)
        self.stats["events_recorded"] += new
        self.stats["events_duplicate"] += duplicates
        for device, kind, message in batch:
            if kind == topics.ALARM:
                self._audit(device, f"alarm.{message.kind}", "-", "received")
        acks: dict[str, list[str]] = defaultdict(list)
        for device, kind, message in batch:
            acks[device].append(message.event_id if kind == topics.EVENT else message.alarm_id)
        for device, ids in acks.items():
            for start in range(0, len(ids), 1000):
                try:
                    self._send(device, MessageType.SYNC, messages.OutboxAck(ids[start:start + 1000]))
                except Exception as exc:  # noqa: BLE001 - the device resends; recorded once anyway
                    log.warning("%s: ack to %s not sent: %s", self.name, device, exc)


def open_sync_store(data: ProtectedData, keys) -> SyncStore:
    return SyncStore.open(Path(data.root) / SYNC_FILE, keys)


__all__ = ["LOCAL_MATCH_SCOPE", "SyncEngine", "SyncStore", "SyncingMatcher", "open_sync_store", "verify_report"]

"""``appliance matcher``: the central matcher as an MQTT 5 service.

Requests arrive on a shared subscription (``$share/matchers/...``) so N replicas split the
load. Each request is an envelope sealed to the matcher and signed by a provisioned device;
it is opened (signature, freshness, anti-replay), decoded strictly, decided by
``MatchEngine`` and answered with a sealed, signed ``Decision`` on the device's response
topic. Anything malformed, forged or replayed is counted and logged, never fatal.
Idempotent: a retried request id gets the same decision again without a second count.
"""
from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.decisions import MatchEngine, Verdict
from appliance.matcher.gallery import Gallery
from appliance.packs import ModelPack
from appliance.protocol import messages, topics
from appliance.protocol.directory import NodeDirectory
from appliance.security.envelope import EnvelopeRejected, MessageType, NodeKeys, Opener, ReplayGuard, Sealer
from appliance.security.masking import mask_name
from appliance.security.roles import Principal, Role
from appliance.stores.protected import ProtectedData
from appliance.transport.mqtt import Incoming, MqttEndpoint, MqttSettings
from appliance.vision.templates import Template

log = logging.getLogger(__name__)

RECENT_DECISIONS = 4096  # request ids remembered for idempotent retries
QUEUE_LIMIT = 10_000


@dataclass(frozen=True)
class LoadedGallery:
    gallery: Gallery
    claims: dict[str, str]  # credential (card number) -> subject pseudonym
    display_names: dict[str, str]  # subject pseudonym -> masked name


def load_gallery(data: ProtectedData, principal: Principal, pack: ModelPack) -> LoadedGallery:
    """Decrypt the enrolled templates of ``pack`` into memory; masked names only."""
    gallery = Gallery(pack.id, pack.version, pack.embedding_size or 0)
    claims, names = {}, {}
    for subject_id in data.identity.subject_ids(principal):
        person = data.identity.person(principal, subject_id)
        rows = [r for r in data.biometric.rows(subject_id) if (r.pack_id, r.pack_version) == (pack.id, pack.version)]
        if not rows:
            continue
        gallery.upsert(subject_id, data.biometric.template(principal, subject_id, pack.id, pack.version, data.vault))
        if person.card_no:
            claims[person.card_no] = subject_id
        names[subject_id] = mask_name(person.name)
    return LoadedGallery(gallery, claims, names)


class MatcherService:
    def __init__(self, name: str, mqtt: MqttSettings, keys: NodeKeys, directory: NodeDirectory,
                 loaded: LoadedGallery, threshold: float, data: ProtectedData | None = None,
                 replay_window_s: float = 120.0, liveness_check=None,
                 device_allowed: Callable[[str, str], bool] | None = None):
        self.name = name
        self.keys = keys
        self.directory = directory
        self.loaded = loaded
        self.data = data
        self.principal = Principal(name, Role.OPERATOR, device=name)
        self.engine = MatchEngine(loaded.gallery, threshold, loaded.claims.get)
        # nothing sealed before this process started is accepted: its predecessor may have
        # accepted it already (the replay state is not carried across restarts)
        self.opener = Opener(keys, directory.devices(), window_s=replay_window_s,
                             guard=ReplayGuard(not_before=time.time()))
        # every replica signs under its own name with the shared matcher keys
        self.sealer = Sealer(NodeKeys(name, keys.signing, keys.agreement))
        self.liveness_check = liveness_check  # second judgement on the device's evidence
        # provisioning policy: is this device (still) allowed this matching mode?
        self.device_allowed = device_allowed or (lambda device, mode: True)
        self.stats: Counter[str] = Counter()
        self._recent: OrderedDict[str, bytes] = OrderedDict()
        self._work: queue.Queue[Incoming] = queue.Queue(QUEUE_LIMIT)
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name=f"{name}-worker", daemon=True)
        subscriptions = tuple(topics.shared(topics.all_devices(kind)) for kind in (topics.REQUEST, topics.EVENT, topics.ALARM))
        self.endpoint = MqttEndpoint(mqtt, on_message=self._enqueue, subscriptions=subscriptions)

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        self._worker.start()
        self.endpoint.connect()
        log.info("%s: serving %d enrolled subjects", self.name, len(self.loaded.gallery))

    def stop(self) -> None:
        self._stop.set()
        self.endpoint.close(announce_offline=False)
        self._worker.join(timeout=5)

    def _enqueue(self, incoming: Incoming) -> None:
        try:
            self._work.put_nowait(incoming)
        except queue.Full:
            self.stats["dropped_overload"] += 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                incoming = self._work.get(timeout=0.2)
            except queue.Empty:
                continue
            try:
                self.handle(incoming)
            except Exception:  # noqa: BLE001 - a bug for one message must not stop the service
                self.stats["internal_error"] += 1
                log.exception("%s: failed on a message for %s", self.name, incoming.topic)

    @property
    def queue_depth(self) -> int:
        return self._work.qsize()

    # -- messages -------------------------------------------------------------------------
    def handle(self, incoming: Incoming) -> None:
        device = topics.device_of(incoming.topic)
        kind = incoming.topic.rsplit("/", 1)[-1]
        if device is None:
            self.stats["rejected:topic"] += 1
            return
        try:
            opened = self.opener.open(incoming.payload)
        except EnvelopeRejected as exc:
            self.stats[f"rejected:{exc.reason.name.lower()}"] += 1
            log.warning("%s: rejected message on %s: %s", self.name, incoming.topic, exc)
            self._audit(device, f"message.{kind}", "-", "rejected", exc.reason.name)
            return
        if opened.header.sender != device:
            self.stats["rejected:sender_topic_mismatch"] += 1
            self._audit(device, f"message.{kind}", "-", "rejected", "sender is not the topic owner")
            return
        try:
            if kind == topics.REQUEST:
                self._on_request(device, opened, incoming)
            elif kind in (topics.EVENT, topics.ALARM):
                message = messages.decode(opened.payload, messages.Event if kind == topics.EVENT else messages.Alarm)
                self.stats[kind] += 1
                self._audit(device, f"{kind}.{message.kind}", "-", "received")
        except ApplianceError as exc:
            self.stats["rejected:malformed"] += 1
            log.warning("%s: malformed %s from %s: %s", self.name, kind, device, exc)
            self._audit(device, f"message.{kind}", "-", "rejected", "malformed")

    def _on_request(self, device: str, opened, incoming: Incoming) -> None:
        request = messages.decode(opened.payload, messages.MatchRequest)
        if request.device_id != device:
            raise ApplianceError(ErrorCode.MESSAGE_REJECTED, "device id does not match the sender")
        cached = self._recent.get(request.request_id)
        if cached is not None:  # a retry: same answer, counted once
            self.stats["retries"] += 1
            self._reply(device, incoming, cached)
            return
        verdict = self._decide(device, request, opened.header)
        decision = messages.Decision(
            request_id=request.request_id,
            accepted=verdict.accepted,
            reason=verdict.reason,
            display_name=self.loaded.display_names.get(verdict.subject_id, "") if verdict.accepted else "",
            retry_after_s=round(verdict.retry_after_s, 1),
        )
        sealed = self.sealer.seal(self.directory.get(device), MessageType.DECISION, decision.encode(),
                                  opened.header.pack_id, opened.header.pack_version)
        self._recent[request.request_id] = sealed
        while len(self._recent) > RECENT_DECISIONS:
            self._recent.popitem(last=False)
        self.stats["accepted" if verdict.accepted else "rejected"] += 1
        self._audit(device, f"decision.{request.mode}", verdict.subject_id or "-",
                    "pass" if verdict.accepted else "fail", verdict.reason)
        self._reply(device, incoming, sealed)

    def _decide(self, device: str, request: messages.MatchRequest, header) -> Verdict:
        gallery = self.loaded.gallery
        if not self.device_allowed(device, request.mode):
            return Verdict(False, messages.Reason.BAD_REQUEST)
        if (header.pack_id, header.pack_version) != (gallery.pack_id, gallery.pack_version):
            return Verdict(False, messages.Reason.PACK_MISMATCH)
        if self.liveness_check is not None and not self.liveness_check(device, request.liveness):
            return Verdict(False, messages.Reason.LIVENESS_FAILED)
        vector = request.vector()
        if len(vector) != gallery.dimension:
            return Verdict(False, messages.Reason.BAD_REQUEST)
        template = Template(vector, gallery.pack_id, gallery.pack_version)
        return self.engine.decide(device, template, request.claim, time.time())

    def _reply(self, device: str, incoming: Incoming, sealed: bytes) -> None:
        topic = topics.device_topic(device, topics.DECISION)  # never trust a foreign response topic
        # paho retransmits until the broker acknowledges; the worker need not wait for it
        self.endpoint.publish(topic, sealed, correlation=incoming.correlation, wait=False)

    def _audit(self, device: str, action: str, obj: str, result: str, detail: str = "") -> None:
        if self.data is None:
            return
        principal = Principal(self.name, Role.OPERATOR, device=device)
        self.data.audit.append(principal, action, obj, result, detail)

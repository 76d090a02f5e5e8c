"""The door's side of a remote wipe: a door being revoked destroys what it holds, for good.

A stolen door would keep its encrypted cache (the templates of the people it matches
locally) and, beside it, the key that opens it. Revocation therefore sends a ``WipeOrder``
first (``matcher.wipe_sender``), while the door can still receive it. An order counts only
when it opens (sealed to this door, signed by a matcher replica - the opener knows no other
sender - fresh and never seen: the envelope's counter and time window) on this door's own
``wipe`` topic, and names this door. Then, in this order:

1. the door stops deciding: ``WipeGate`` refuses every pass (``unavailable``; the card still
   works) and a pass already deciding finishes first (``DoorWipe.lock``);
2. the marker ``wiped.json`` is written and synced: from here the door never opens its stores
   again, whatever happens next (``refuse_if_wiped`` runs before anything is opened);
3. the sync client and the outbox pump stop (no thread touches the stores any more);
4. each store is crypto-shredded (``stores.device.shred_store``): its key first, then the file
   and its WAL/SHM companions - the cache, and the outbox, whose pending events name who
   passed the door;
5. a ``WipeDone`` goes back, sealed to the matcher and signed by the door.

A power loss after step 2 leaves the marker: the next start finishes steps 4 (idempotent) and
refuses to run (PKI_ERROR saying to re-provision the door under a new name). A power loss
before it leaves the door as it was; the central side records "wipe not confirmed".
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from appliance.durable_file import write_durably
from appliance.edge.cache_decider import DoorStatus
from appliance.errors import ApplianceError, ErrorCode
from appliance.protocol import messages, topics
from appliance.protocol.inbound import open_on_topic
from appliance.protocol.wipe_messages import WipeDone, WipeOrder
from appliance.security.envelope import MessageType, NodeKeys, Opener, ReplayGuard
from appliance.security.keys import KeyProvider
from appliance.stores.device import shred_store
from appliance.transport.mqtt import Incoming

log = logging.getLogger(__name__)

WIPED_MARKER = "wiped.json"
WIPED = "wiped"  # the cache state a wiped door reports (DoorStatus.cache)


def _wiped_error(folder: Path, record: dict[str, Any]) -> ApplianceError:
    return ApplianceError(ErrorCode.PKI_ERROR, (
        f"{folder.name} was wiped remotely (order {record.get('wipe_id', '?')} at "
        f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(record.get('at', 0)))} UTC): its cache and keys are "
        "destroyed and its certificate revoked; re-provision this door under a new name "
        "('appliance provision device NEW --bundle FILE', then 'appliance provision import FILE' here)"))


def refuse_if_wiped(folder: Path, stores: Sequence[tuple[Path, KeyProvider, str]]) -> None:
    """Before a door opens anything: when ``folder`` holds the wipe marker, finish shredding
    ``stores`` ((file, key provider, key name): a wipe cut by a power loss) and raise PKI_ERROR."""
    marker = Path(folder) / WIPED_MARKER
    if not marker.exists():
        return
    try:
        record = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        record = {}
    for path, keys, key_name in stores:
        shred_store(path, keys, key_name)
    raise _wiped_error(Path(folder), record if isinstance(record, dict) else {})


def _write_marker(folder: Path, record: dict[str, Any]) -> None:
    """The marker, durably (``durable_file``: a power cut leaves none or all of it)."""
    write_durably(folder / WIPED_MARKER, json.dumps(record, sort_keys=True).encode("utf-8"))


class DoorWipe:
    """Receives wipe orders on the door's link and carries out the first valid one.

    ``stores``: the door's open stores (each with ``destroy(keys)``); ``halt``: stops every
    worker that uses them. ``on_wiped``: called once the wipe is done (the serving loop's
    stop, for one)."""

    def __init__(self, link, keys: NodeKeys, directory, folder: Path, provider: KeyProvider,
                 stores: Sequence[Any], halt: Callable[[], None], replay_window_s: float = 120.0) -> None:
        self.link, self.folder, self.provider = link, Path(folder), provider
        self.device_id = link.device_id
        self.stores, self.halt = tuple(stores), halt
        self.opener = Opener(keys, directory.matchers(), window_s=replay_window_s,
                             guard=ReplayGuard(not_before=time.time()))
        self.done = threading.Event()  # set before anything is destroyed: no decision after it
        self.finished = threading.Event()  # the stores are shredded and the confirmation was tried
        self.lock = threading.Lock()  # held by a decision in progress and by the wipe
        self.stats: Counter[str] = Counter()
        self.on_wiped: list[Callable[[], None]] = []
        self.last_done: WipeDone | None = None
        link.on_wipe = self.on_message

    def on_message(self, incoming: Incoming) -> None:
        """On the MQTT thread: check the order, then wipe on a thread of its own (stopping the
        workers waits for them, and the confirmation waits for the broker's PUBACK)."""
        try:
            inbound = open_on_topic(self.opener, incoming.topic, incoming.payload, expect=MessageType.WIPE)
            order = messages.decode(inbound.payload, WipeOrder)
            if inbound.device != self.device_id or order.device_id != self.device_id:
                raise ApplianceError(ErrorCode.MESSAGE_REJECTED, f"a wipe order for {order.device_id}")
        except ApplianceError as exc:  # EnvelopeRejected included
            self.stats["rejected"] += 1
            log.warning("%s: refused a wipe order: %s", self.device_id, exc)
            return
        if self.done.is_set():
            self.stats["repeated"] += 1
            return
        self.done.set()
        threading.Thread(target=self._carry_out, args=(order, inbound.header.sender), name="door-wipe",
                         daemon=True).start()

    def _carry_out(self, order: WipeOrder, sender: str) -> None:
        log.warning("%s: wipe order %s from %s (%s): destroying the cache", self.device_id, order.wipe_id, sender,
                    order.requested_by)
        removed: list[str] = []
        with self.lock:  # a pass deciding now finishes first; none starts after ``done``
            try:
                _write_marker(self.folder, {"wipe_id": order.wipe_id, "sender": sender,
                                            "requested_by": order.requested_by, "at": time.time()})
            except Exception:  # noqa: BLE001 - a full disk must not stop a wipe: destroying needs no room
                self.stats["marker_not_written"] += 1
                log.exception("%s: wipe order %s: the marker was not written (a restart is not refused by it); "
                              "destroying the cache all the same", self.device_id, order.wipe_id)
            try:
                self.halt()
                for store in self.stores:
                    removed += store.destroy(self.provider)
            except Exception:  # the door still refuses every pass; the confirmation says no key went
                self.stats["wipe_failed"] += 1
                log.exception("%s: wipe order %s failed part-way", self.device_id, order.wipe_id)
        key_destroyed = not any(self.provider.exists(store.KEY_NAME) for store in self.stores)
        done = WipeDone(order.wipe_id, self.device_id, time.time(), key_destroyed, removed)
        self.last_done = done
        self.stats["wiped"] += 1
        try:
            sealed = self.link.sealer.seal(self.link.matcher, MessageType.WIPE_DONE, done.encode())
            self.link.endpoint.publish(topics.device_topic(self.device_id, topics.WIPE_DONE), sealed)
        except ApplianceError as exc:  # the revocation goes on without it: recorded unconfirmed
            log.warning("%s: wipe done, confirmation not sent: %s", self.device_id, exc)
        self.finished.set()
        for callback in self.on_wiped:
            callback()

    def guard_emit(self, emit: Callable[[str, messages.Message], None]) -> Callable[[str, messages.Message], None]:
        """``emit`` that drops what a pass reports once the outbox is being destroyed."""

        def guarded(kind: str, message: messages.Message) -> None:
            if not self.done.is_set():
                emit(kind, message)

        return guarded


class WipeGate:
    """The door's decider behind the wipe: every pass is refused once a wipe order was
    accepted; until then everything goes to the wrapped decider (``CacheDecider``)."""

    def __init__(self, decider, wipe: DoorWipe) -> None:
        self.decider, self.wipe = decider, wipe

    def request(self, request: messages.MatchRequest, pack: tuple[str, str]) -> messages.Decision:
        with self.wipe.lock:
            if self.wipe.done.is_set():
                self.wipe.stats["refused_passes"] += 1
                return messages.Decision(request.request_id, False, messages.Reason.UNAVAILABLE)
            return self.decider.request(request, pack)

    @property
    def status(self) -> DoorStatus:
        if self.wipe.done.is_set():
            return DoorStatus(False, False, WIPED)
        return self.decider.status

    @property
    def decision_available(self) -> bool:
        return not self.wipe.done.is_set() and self.decider.decision_available

    def __getattr__(self, name: str) -> Any:  # the rest of the decider (mode, stats, ...) as it is
        return getattr(self.decider, name)

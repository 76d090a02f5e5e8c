"""Events and alarms leave the door through the SQLCipher outbox, online or not.

``submit`` seals the message to the matcher and commits it to the outbox in one durable
transaction (it survives a killed process and power loss) before returning. A pump thread
sends the oldest pending events first, at most ``window`` unacknowledged at a time
(back-pressure: the broker and the matcher are never flooded after a long outage), several of
one kind per MQTT message (``protocol.bundles``: each still sealed on its own), and drops
an event only when the matcher acknowledges its id - after recording it exactly once. A lost
acknowledgement means a resend, which the matcher recognises by the id. Beyond
``max_events`` pending, the oldest are spilled (counted; see docs/offline.md).
"""
from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from dataclasses import replace

from appliance.errors import ApplianceError
from appliance.protocol import bundles, messages, topics
from appliance.security import device_reports
from appliance.security.envelope import MessageType
from appliance.stores.device import Outbox
from appliance.workers import QueueWorker, Ticker

log = logging.getLogger(__name__)

KINDS = {topics.EVENT: MessageType.EVENT, topics.ALARM: MessageType.ALARM}
PUMP_EVERY_S = 0.1  # besides every submit and ack: notice reconnections and resend timeouts
_WAKE = "pump"  # the one kind of item: "look at the outbox now" (one queued is enough)


class OutboxPump:
    def __init__(self, link, outbox: Outbox, max_events: int = 100_000, window: int = 200, resend_s: float = 5.0):
        self.link = link
        self.outbox = outbox
        self.max_events, self.window, self.resend_s = max_events, window, resend_s
        self.sent = self.acked = self.resent = 0
        self._inflight: OrderedDict[str, float] = OrderedDict()  # ref -> first send (monotonic)
        self._last_row = 0
        self._generation = -1
        self._probing = False  # no acknowledgement lately: one event at a time, oldest first (keeps order)
        self._lock = threading.Lock()
        self._worker: QueueWorker[str] = QueueWorker("outbox-pump", self._run_once, 1)
        self._ticker = Ticker("outbox-pump-check", PUMP_EVERY_S, self._wake)

    def start(self) -> "OutboxPump":
        self._worker.start()
        self._ticker.start()
        return self

    def stop(self) -> None:
        self._ticker.stop()
        self._worker.stop()

    def _wake(self) -> None:
        self._worker.put(_WAKE)  # already one waiting: that one will see this too

    def submit(self, kind: str, message: messages.Message) -> int:
        """Sign (the device's own signature over the event, kept in the centre's audit log),
        seal, commit to the outbox, wake the pump; returns the queue depth."""
        ref = message.ref  # an Event or an Alarm (messages.Report)
        if not message.signature:
            message = replace(message, signature=device_reports.sign(self.link.sealer.keys.signing, message.document()))
        sealed = self.link.sealer.seal(self.link.matcher, KINDS[kind], message.encode())
        self.outbox.put(kind, ref, sealed, self.max_events)
        self._wake()
        return self.outbox.depth()

    def on_ack(self, refs: list[str]) -> None:
        self.outbox.acknowledge(refs)
        with self._lock:
            for ref in refs:
                if self._inflight.pop(ref, None) is not None:
                    self.acked += 1
                    self._probing = False
        self._wake()

    @property
    def depth(self) -> int:
        return self.outbox.depth()

    def _restart_from_oldest(self) -> None:
        with self._lock:
            self._inflight.clear()
        self._last_row = 0

    def _run_once(self, _: str) -> None:
        try:
            self._pump()
        except Exception:  # keep pumping; the events stay queued
            log.exception("outbox pump failure")
            self._restart_from_oldest()

    def _pump(self) -> None:
        endpoint = self.link.endpoint
        if not endpoint.connected.is_set():
            self._restart_from_oldest()
            return
        if endpoint.connections != self._generation:  # reconnected: unacked ones go again, in order
            self._generation = endpoint.connections
            self._restart_from_oldest()
        with self._lock:
            oldest = next(iter(self._inflight.values()), None)
        if oldest is not None and time.monotonic() - oldest > self.resend_s:
            # the matcher may be away: resend from the oldest, one at a time until it answers,
            # so nothing newer overtakes what it has not recorded yet
            self.resent += len(self._inflight)
            self._restart_from_oldest()
            self._probing = True
        while not self._worker.stopping:
            with self._lock:
                room = (1 if self._probing else self.window) - len(self._inflight)
            if room <= 0:
                return
            rows = self.outbox.next_after(self._last_row, room)
            if not rows:
                return
            for group in _bundled(rows):
                kind, envelopes = group[0][1], [sealed for *_, sealed in group]
                with self._lock:
                    for _, _, ref, _ in group:
                        self._inflight.setdefault(ref, time.monotonic())
                payload = envelopes[0] if len(envelopes) == 1 else bundles.pack(envelopes)
                try:
                    endpoint.publish(topics.device_topic(self.link.device_id, kind), payload, wait=False)
                except ApplianceError as exc:
                    log.info("outbox: not delivered now (%s); %d queued", exc, self.outbox.depth())
                    self._restart_from_oldest()
                    return
                self._last_row = group[-1][0]
                self.sent += len(group)


def _bundled(rows: list[tuple]) -> list[list[tuple]]:
    """Consecutive rows of one kind, as many together as a bundle holds (``protocol.bundles``),
    in outbox order."""
    groups: list[list[tuple]] = []
    for row in rows:
        group = groups[-1] if groups else None
        if group is not None and group[0][1] == row[1] and bundles.fits([r[3] for r in group] + [row[3]]):
            group.append(row)
        else:
            groups.append([row])
    return groups

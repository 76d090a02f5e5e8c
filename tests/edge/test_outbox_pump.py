"""The outbox pump sends a backlog in bundles (``protocol.bundles``): in outbox order, one kind
per message, never more in flight than its window, and only what the matcher acknowledged
leaves the outbox. The outbox is the real SQLCipher store; the link is a stand-in that keeps
what would have been published."""
from __future__ import annotations

import threading
from types import SimpleNamespace

from appliance.edge.outbox_pump import OutboxPump
from appliance.protocol import bundles, topics
from appliance.stores.device import Outbox

WINDOW = 150


class Endpoint:
    def __init__(self):
        self.connected, self.connections, self.sent = threading.Event(), 1, []
        self.connected.set()

    def publish(self, topic: str, payload: bytes, **options) -> None:
        self.sent.append((topic.rsplit("/", 1)[-1], payload))


def envelopes(sent: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    out = []
    for kind, payload in sent:
        out += [(kind, e) for e in (bundles.unpack(payload) if bundles.is_bundle(payload) else [payload])]
    return out


def test_a_backlog_goes_out_in_bundles_in_order_within_the_window(tmp_path, keys):
    outbox = Outbox.open(tmp_path / "outbox.db", keys)
    link = SimpleNamespace(endpoint=Endpoint(), device_id="door-a")
    pump = OutboxPump(link, outbox, window=WINDOW)
    queued = [(topics.EVENT, f"e{i}", b"FAEV-event-%d" % i) for i in range(100)]
    queued += [(topics.ALARM, "a0", b"FAEV-alarm"), *[(topics.EVENT, f"e{i}", b"FAEV-event-%d" % i)
                                                    for i in range(100, 220)]]
    try:
        for kind, ref, sealed in queued:
            outbox.put(kind, ref, sealed, 10_000)
        pump._run_once("pump")
        sent = link.endpoint.sent
        assert [(kind, bundles.count(payload)) for kind, payload in sent] == \
            [(topics.EVENT, 64), (topics.EVENT, 36), (topics.ALARM, 1), (topics.EVENT, 49)]  # window: 150
        assert not bundles.is_bundle(sent[2][1])  # one alone goes as it is
        assert envelopes(sent) == [(kind, sealed) for kind, _, sealed in queued[:WINDOW]]
        pump.on_ack([ref for _, ref, _ in queued[:WINDOW]])
        pump._run_once("pump")
        assert envelopes(link.endpoint.sent) == [(kind, sealed) for kind, _, sealed in queued]
        assert pump.sent == len(queued) and outbox.depth() == len(queued) - WINDOW  # the rest not yet acked
    finally:
        outbox.close()

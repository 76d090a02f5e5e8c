"""Fuzz every network input a door or a matcher reads (issue 12: "a fuzz test of every REST and
MQTT input (hypothesis) runs in the suite with a fixed budget").

There is no REST API in the product: its only network inputs are MQTT messages. Covered
elsewhere and not repeated here: ``Opener.open`` on arbitrary bytes, bit flips and truncations
(tests/security/test_envelope.py), ``messages.decode`` on arbitrary JSON under common field
names (tests/protocol/test_rejection.py). Added here:

* ``open_on_topic`` on any topic with any bytes, and with genuine envelopes on any topic;
* ``messages.decode`` on any bytes for every expected type, and on each type's own fields with
  wrong values (one-field mutations of valid samples); an accepted delta's entries read back
  with ``sync_entries`` without error;
* the matcher as ``matcher.app.build`` makes it for a site (router, request, event and sync
  handlers, its liveness judgement), and the door's matcher link and sync client, fed without
  a broker: arbitrary bytes, envelopes signed by an unknown key or by another device, and
  genuine envelopes carrying wrong messages.

The property is always the same: a clean rejection (``ApplianceError``, ``EnvelopeRejected``)
and never another exception; nothing unsigned is accepted (it is counted as rejected, nothing
is sent, nothing applied). The budget is fixed: derandomized, ``max_examples``, a deadline.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.edge.link import MatcherLink
from appliance.edge.sync_client import SyncClient
from appliance.errors import ApplianceError, ErrorCode
from appliance.matcher.app import MatcherApp, build
from appliance.matcher.events import IDLE_FLUSH_S
from appliance.protocol import messages, topics
from appliance.protocol.inbound import open_on_topic
from appliance.protocol.sync_entries import TombstoneEntry, UpsertEntry, decode_template
from appliance.security.envelope import EnvelopeRejected, MessageType, NodeKeys, Opener, Sealer
from appliance.security.keys import CACHE_DB, FileKeyProvider, ensure_keys
from appliance.site import Site
from appliance.stores.device import DeviceCache
from appliance.transport.mqtt import Incoming

PURE = settings(max_examples=250, derandomize=True, deadline=timedelta(milliseconds=500),
                suppress_health_check=[HealthCheck.too_slow])
# the handlers write audit rows (SQLCipher, synchronous=FULL): a generous deadline, fewer examples
HANDLERS = settings(max_examples=120, derandomize=True, deadline=timedelta(seconds=3),
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

DOOR, OTHER_DOOR, UNKNOWN_DOOR, REPLICA = "door-a", "door-b", "door-x", "matcher-1"
KINDS = (*topics.DEVICE_PUBLISHES, *topics.DEVICE_SUBSCRIBES, "junk")
# the device topics a matcher reads, and the envelope type each carries
TYPE_OF_KIND = {topics.REQUEST: MessageType.PROBE, topics.EVENT: MessageType.EVENT, topics.ALARM: MessageType.ALARM,
                topics.SYNC_ACK: MessageType.SYNC_ACK}
# the message types each topic carries
READS = {topics.REQUEST: ("match_request",), topics.EVENT: ("event",), topics.ALARM: ("alarm",),
         topics.SYNC_ACK: ("sync_ack", "sync_request"),
         topics.DECISION: ("decision",), topics.SYNC: ("delta", "outbox_ack")}
MATCHER_KEYS = NodeKeys.generate("matcher")
DOOR_KEYS = NodeKeys.generate(DOOR)
ROGUE_DOOR = NodeKeys.generate(DOOR)  # a key nobody provisioned, under a provisioned name
ROGUE_REPLICA = NodeKeys.generate(REPLICA)
UNIT = (np.ones(512, np.float32) / np.sqrt(512)).astype(np.float32)
GENEROUS_BUDGETS = {"device_requests_per_s": 10_000.0, "device_request_burst": 100_000,
                    "device_rejects_per_window": 1_000_000}
# what a device's own stats and a matcher's count when a message was taken as genuine
ACCEPTANCE = ("accepted", "rejected", "retries", "event", "alarm", "events_recorded", "events_duplicate", "sync_acks")

SCALARS = st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats() | st.text(max_size=40)
JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


def _body(message: messages.Message) -> dict:
    return json.loads(message.encode())


SAMPLES = {message.TYPE: _body(message) for message in (
    messages.MatchRequest(messages.new_id(), DOOR, "identify", messages.MatchRequest.pack_vector(UNIT), 1.0),
    messages.Event(messages.new_id(), DOOR, "pass", 1.0, {"result": "granted"}),
    messages.Alarm(messages.new_id(), DOOR, "tamper", 1.0),
    messages.Telemetry(DOOR, 1.0, 2.0, 15.0, {"detect": 3.5}, {"outbox": 1}, "pack"),
    messages.SyncRequest(messages.new_id(), DOOR, 0),
    messages.SyncAck(DOOR, 0, 1.0),
    messages.Decision(messages.new_id(), False, messages.Reason.NO_MATCH),
    messages.Delta(messages.new_id(), "changes", 0, 2, 2, "pack", "1",
                   upserts=[UpsertEntry("s-1", 1, UNIT[:8] / np.linalg.norm(UNIT[:8]), "A**").to_wire()],
                   tombstones=[TombstoneEntry("s-2", 2).to_wire()]),
    messages.OutboxAck([messages.new_id()]),
    messages.EnrollmentEvent(messages.new_id(), "enrolled", "ref", "A**", 1, 1.0),
)}
FIELDS = {name: [f.name for f in dataclasses.fields(messages.MESSAGE_TYPES[name])] for name in SAMPLES}


@st.composite
def wrong_bodies(draw, names: tuple[str, ...] = tuple(sorted(SAMPLES))) -> dict:
    """A message that is almost right: a valid sample of one of ``names`` with one field
    replaced, dropped or added, or a type's own field names with any values (NaN and
    infinities included: the JSON parser reads them) - and now and then the sample as it is,
    so that the paths that accept and answer are fuzzed too."""
    name = draw(st.sampled_from(names))
    body = dict(SAMPLES[name])
    how = draw(st.sampled_from(("as is", "replace", "drop", "add", "fields")))
    if how == "as is":
        return body
    if how == "fields":
        return {"v": 1, "type": name} | draw(st.dictionaries(st.sampled_from(FIELDS[name]), JSON))
    key = draw(st.sampled_from(sorted(body)))
    if how == "replace":
        body[key] = draw(JSON)
    elif how == "drop":
        del body[key]
    else:
        body[draw(st.text(max_size=8))] = draw(JSON)
    return body


def _encoded(body: dict) -> bytes:
    return json.dumps(body).encode()


PAYLOADS = st.one_of(st.binary(max_size=600), wrong_bodies().map(_encoded))
TOPICS = st.one_of(
    st.builds(topics.device_topic, st.sampled_from((DOOR, OTHER_DOOR, UNKNOWN_DOOR, "+", "#", "")),
              st.sampled_from(KINDS)),
    st.sampled_from((topics.ENROLLMENT_EVENTS, topics.shared(topics.device_topic(DOOR, topics.REQUEST)),
                     topics.device_topic(DOOR, topics.REQUEST) + "/extra", "$SYS/broker/load", "")),
    st.text(max_size=60),
)


# -- the one "open and check the sender" step ------------------------------------------------

@PURE
@given(topic=TOPICS, payload=st.binary(max_size=600))
def test_open_on_topic_refuses_any_unsigned_bytes_on_any_topic(topic, payload):
    opener = Opener(MATCHER_KEYS, [DOOR_KEYS.public()])
    with pytest.raises(EnvelopeRejected):
        open_on_topic(opener, topic, payload)
    assert sum(opener.rejections.values()) == 1


@PURE
@given(topic=TOPICS, kind=st.sampled_from(MessageType), payload=PAYLOADS)
def test_a_genuine_envelope_opens_only_where_its_sender_may_write(topic, kind, payload):
    opener = Opener(MATCHER_KEYS, [DOOR_KEYS.public()])
    sealed = Sealer(DOOR_KEYS).seal(MATCHER_KEYS.public(), kind, payload)
    try:
        inbound = open_on_topic(opener, topic, sealed)
    except EnvelopeRejected:
        return
    assert inbound.device == topics.device_of(topic)
    assert inbound.kind not in topics.DEVICE_PUBLISHES or inbound.device == DOOR
    assert inbound.payload == payload


# -- strict decoding of every message type ---------------------------------------------------

@PURE
@given(data=st.one_of(st.binary(max_size=600), wrong_bodies().map(_encoded), JSON.map(_encoded)),
       expect=st.sampled_from((None, *messages.MESSAGE_TYPES.values())))
def test_decode_accepts_a_valid_message_or_refuses_cleanly(data, expect):
    try:
        message = messages.decode(data, expect)
    except ApplianceError as refused:
        assert refused.code is ErrorCode.MESSAGE_REJECTED
        return
    assert expect is None or type(message) is expect
    if isinstance(message, messages.Delta):  # what decode accepted, the device can read
        for entry in message.upserts:
            assert np.isfinite(UpsertEntry.from_wire(entry).vector).all()
        for entry in message.tombstones:
            TombstoneEntry.from_wire(entry)


@PURE
@given(text=st.one_of(st.text(max_size=120), st.binary(max_size=90).map(lambda raw: base64.b64encode(raw).decode())))
def test_a_template_on_the_wire_is_a_float32_vector_or_a_value_error(text):
    try:
        vector = decode_template(text)
    except ValueError:  # binascii.Error and a length not a multiple of 4 included
        return
    assert vector.dtype == np.float32


NON_FINITE = st.sampled_from((float("nan"), float("inf"), float("-inf")))


@PURE
@given(name=st.sampled_from(sorted(SAMPLES)), value=NON_FINITE, data=st.data())
def test_decode_refuses_numbers_that_are_not_finite(name, value, data):
    numbers = [key for key, field in SAMPLES[name].items() if isinstance(field, float)]
    if not numbers:
        return
    body = SAMPLES[name] | {data.draw(st.sampled_from(numbers)): value}
    with pytest.raises(ApplianceError):
        messages.decode(_encoded(body))


# -- the matcher, as built for a site, without a broker --------------------------------------

@dataclass
class Parts:
    app: MatcherApp
    sent: list[str]  # topics the matcher published on
    door: NodeKeys  # door-a's real keys
    other: NodeKeys  # door-b's real keys
    replica: NodeKeys  # the matcher's keys under the name "matcher-1"
    link: MatcherLink
    client: SyncClient
    cache: DeviceCache

    @property
    def stats(self) -> Counter[str]:
        return self.app.matcher.stats


def unthrottled(config):
    """The configuration with the matcher's per-device budgets out of the way: the fuzz must
    reach the decoders behind the gate (the gate has its own tests, tests/matcher)."""
    known = {f.name for f in dataclasses.fields(config.matcher)}
    generous = {name: value for name, value in GENEROUS_BUDGETS.items() if name in known}
    return dataclasses.replace(config, matcher=dataclasses.replace(config.matcher, **generous))


@pytest.fixture
def parts(tmp_path, config):
    """A site's matcher and door-a's link and sync client, fresh for each test (the budgets
    and replay state of one test do not leak into the next)."""
    folder = tmp_path / "site"
    site = Site(folder)
    site.provision((DOOR, OTHER_DOOR))
    app = build(unthrottled(config), site)
    sent: list[str] = []
    app.matcher.service.courier.attach(lambda topic, payload, **options: sent.append(topic))
    door = site.device_keys(DOOR)
    central = site.central_keys()
    provider = FileKeyProvider(folder / "nodes" / DOOR)
    ensure_keys(provider, (CACHE_DB,))
    link = MatcherLink(DOOR, site.mqtt(DOOR), door, site.directory)  # never connected
    cache = DeviceCache.open(folder / "nodes" / DOOR / "cache.db", provider)
    client = SyncClient(link, cache, door, site.directory)  # not started: its entry is called here
    yield Parts(app, sent, door, site.device_keys(OTHER_DOOR), NodeKeys(REPLICA, central.signing, central.agreement),
                link, client, cache)
    link.close()
    cache.close()
    app.close()


def deliver(parts: Parts, topic: str, payload: bytes, tick: bool = False) -> None:
    """Route as the matcher's MQTT callback does, then run each queued item through its
    handler here, as the route's worker thread would - so an exception reaches the test
    instead of the worker's ``internal_error`` count. ``tick``: then, once the queue has been
    quiet for the events' flush delay, the tickers' item too (events are recorded in batches)."""
    service = parts.app.matcher.service
    service.route(Incoming(topic, payload, 1, False, correlation=b"c"))
    for route in service.routes:
        route.worker.run_queued_here()
    if tick:
        time.sleep(IDLE_FLUSH_S)
        for route in service.routes:
            if route.ticker is not None:
                route.worker._handle(None)


def _rejected(stats: Counter[str]) -> int:
    return sum(count for key, count in stats.items() if key.startswith("rejected:"))


def _accepted(stats: Counter[str]) -> dict[str, int]:
    return {key: count for key, count in stats.items() if key in ACCEPTANCE or key.startswith("sync:")}


@HANDLERS
@given(topic=TOPICS, payload=st.one_of(
    st.binary(max_size=600).map(lambda raw: ("bytes", raw)),
    st.tuples(st.just("rogue key"), st.sampled_from(MessageType), PAYLOADS),
    st.tuples(st.just("another door"), st.sampled_from(MessageType), PAYLOADS)))
def test_the_matcher_accepts_nothing_unsigned(parts, topic, payload):
    how, *rest = payload
    if how == "bytes":
        data = rest[0]
    elif how == "rogue key":  # door-a's name, not door-a's key
        data = Sealer(ROGUE_DOOR).seal(parts.replica.public(), rest[0], rest[1])
    else:  # door-b's genuine envelope, on any topic but door-b's own
        if topics.device_of(topic) == OTHER_DOOR:
            topic = topics.device_topic(DOOR, topic.rsplit("/", 1)[-1])
        data = Sealer(parts.other).seal(parts.replica.public(), rest[0], rest[1])
    before, accepted, sent = _rejected(parts.stats), _accepted(parts.stats), len(parts.sent)
    deliver(parts, topic, data)
    assert _rejected(parts.stats) > before and _accepted(parts.stats) == accepted and len(parts.sent) == sent


@HANDLERS
@given(kind=st.sampled_from(sorted(TYPE_OF_KIND)), data=st.data(),
       retyped=st.one_of(st.none(), st.none(), st.sampled_from(MessageType)))
def test_the_matcher_refuses_wrong_messages_from_a_provisioned_door_cleanly(parts, kind, data, retyped):
    body = data.draw(st.one_of(wrong_bodies(READS[kind]), wrong_bodies()))  # mostly what the topic carries
    data = Sealer(parts.door).seal(parts.replica.public(), retyped or TYPE_OF_KIND[kind], _encoded(body))
    sent, failures = len(parts.sent), parts.stats["internal_error"]
    deliver(parts, topics.device_topic(DOOR, kind), data, tick=kind in (topics.EVENT, topics.ALARM))
    own = {topics.device_topic(DOOR, topics.DECISION), topics.device_topic(DOOR, topics.SYNC)}
    assert set(parts.sent[sent:]) <= own  # an answer, if any, only to the door that asked
    assert parts.stats["internal_error"] == failures  # nothing failed inside, e.g. recording an event


# -- the door: its matcher link and its sync client --------------------------------------------

@HANDLERS
@given(kind=st.sampled_from((topics.DECISION, topics.SYNC)), payload=st.one_of(
    st.binary(max_size=600).map(lambda raw: ("bytes", raw)),
    st.tuples(st.just("rogue replica"), st.sampled_from(MessageType), PAYLOADS),
    st.tuples(st.just("a door"), st.sampled_from(MessageType), PAYLOADS)))
def test_the_door_accepts_nothing_unsigned(parts, kind, payload):
    how, *rest = payload
    if how == "bytes":
        data = rest[0]
    else:  # a replica's name with a key nobody provisioned, or a provisioned door posing as one
        sender = ROGUE_REPLICA if how == "rogue replica" else parts.other
        data = Sealer(sender).seal(parts.door.public(), rest[0], rest[1])
    incoming = Incoming(topics.device_topic(DOOR, kind), data, 1, False)
    link, client = parts.link.stats.copy(), parts.client.stats.copy()
    revision = parts.cache.revision
    if kind == topics.DECISION:
        parts.link._on_message(incoming)
        assert parts.link.stats["rejected_answers"] == link["rejected_answers"] + 1
    else:
        parts.client._handle(incoming)  # what the sync worker runs for the item
        assert parts.client.stats["rejected"] == client["rejected"] + 1
    assert parts.link.stats["unexpected_answers"] == link["unexpected_answers"]
    assert parts.cache.revision == revision and not parts.client.current.is_set()


@HANDLERS
@given(kind=st.sampled_from((topics.DECISION, topics.SYNC)), data=st.data(),
       retyped=st.one_of(st.none(), st.none(), st.sampled_from(MessageType)), awaited=st.booleans())
def test_the_door_refuses_wrong_messages_from_a_replica_cleanly(parts, kind, data, retyped, awaited):
    body = data.draw(st.one_of(wrong_bodies(READS[kind]), wrong_bodies()))
    if awaited and body.get("type") == messages.Delta.TYPE:  # reach the cache, not only the stale check
        parts.client.request()  # not sent (no broker): it only sets the id awaited
        body = body | {"request_id": parts.client._awaiting}
    expected = MessageType.DECISION if kind == topics.DECISION else MessageType.SYNC
    data = Sealer(parts.replica).seal(parts.door.public(), retyped or expected, _encoded(body))
    incoming = Incoming(topics.device_topic(DOOR, kind), data, 1, False)
    try:
        if kind == topics.DECISION:
            parts.link._on_message(incoming)
        else:
            parts.client._handle(incoming)
    except ApplianceError:  # a clean refusal from the cache (the sync worker counts it)
        pass

"""Simulated doors for ``bench load``, run as their own process so that their TLS, envelope
and MQTT work does not share the matcher's interpreter:

    python -m appliance.bench.load_devices SPEC_JSON

``SPEC_JSON`` names the site folder, broker port, the devices this process runs, when to start
and for how long, each door's pace, the mix of passes and the gallery (``load_mix``). Every
device is one provisioned door on its own TLS connection with its own keys and counters, asking
at its pace with one pass in progress at a time (a late answer delays its next pass) until the
run ends: a person enrolled in
the gallery (accepted), a stranger (no match), a presentation attack (the device's signed
liveness evidence says "not live": the matcher's own judgement refuses it), or a door back
from an outage sending its outbox: ``CATCH_UP_EVENTS`` events sealed ``OFFLINE_S`` ago, each
signed by the door, which the matcher records once and acknowledges on the sync topic. Each
door makes one pass before the start, not counted (``WARM_UP_TIMEOUT_S``): its session is set up,
as at a door online before the rush.

The doors are a load generator, kept light because they share the machine's two cores with the
matcher being measured: one thread per process does everything - it seals and publishes every
door's requests (QoS 1 without blocking on the PUBACK: the decision is what a door waits for),
and does every door's socket I/O (``transport.mqtt_shared_loop``), opening each answer and
timing it as it is read. A network thread per door cost two thread switches per request and
made the doors' CPU per request larger than the matcher's (issue 17). What goes over the
wire is what a door sends (``edge.link.MatcherLink``): the same envelopes, topics, MQTT 5
response topic and correlation data, signed liveness evidence and signed outbox events.

It prints one JSON object: every request's send time, round trip and whether the answer was
the one its kind expects; events sent and acknowledged; this process's CPU seconds.
"""
from __future__ import annotations

import functools
import heapq
import json
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from appliance import heap
from appliance.bench.device_load import cpu_seconds
from appliance.bench.load_mix import ATTACK, CATCH_UP, ENROLLED, KINDS, STRANGER, Mix
from appliance.bench.probes import PACK
from appliance.errors import ApplianceError
from appliance.liveness.evidence import Ed25519Signer, sign_summary
from appliance.protocol import bundles, messages, topics
from appliance.protocol.directory import MATCHER_NODE
from appliance.protocol.inbound import open_on_topic
from appliance.security import device_reports
from appliance.security.envelope import MessageType, Opener, ReplayGuard, Sealer
from appliance.site import Site
from appliance.transport.mqtt import CONNECT_TIMEOUT_S, Incoming, MqttEndpoint
from appliance.transport.mqtt_shared_loop import SharedLoop

ANSWER_TIMEOUT_S = 5.0  # no retry: a lost answer is an error of the run, never hidden by one
CATCH_UP_EVENTS = 20  # one outbox window's worth of events after a short outage
OFFLINE_S = 600.0  # how long ago the catch-up events were sealed (the door was offline)
LIVE_SCORE, SPOOF_SCORE, LIVENESS_THRESHOLD = 0.93, 0.08, 0.5
LIVENESS_LEVEL = "passive"
CHECK_S = 0.05  # the scheduler looks for overdue answers at least this often
# while passes are due back to back (a door late after a slow answer), answers that have arrived are
# read at least this often: each is timed when read, and the one thread asks ~0.4 ms per pass
READ_EVERY_S = 0.002
# probes made per kind before the run, each pass drawing one at random: the doors' CPU during the
# run goes to what a pass must do afresh (signed evidence, envelope, TLS), not to the noise of a
# synthetic face (~70 us a probe, a tenth of a door's work); the matcher keeps nothing between requests
PROBE_POOL = 256
# Before the measured minute every door makes one pass, not counted: a door online before the rush
# holds its session (the envelope epoch both ways, renewed every ``EPOCH_LIFETIME_S``, 10 min),
# where a hundred doors starting cold at once put ~100 ms of key agreement into the first second
WARM_UP_TIMEOUT_S = 10.0
# the answer each kind of pass must get
EXPECTED = {ENROLLED: (True, messages.Reason.MATCH), STRANGER: (False, messages.Reason.NO_MATCH),
            ATTACK: (False, messages.Reason.LIVENESS_FAILED)}


def _evidence(signer, live: bool) -> dict:
    """The door's signed liveness summary, as the edge sends it (``edge.door_pass``)."""
    now = time.time()
    summary = {"started_at": now - 0.3, "decided_at": now, "calibration": "", "level": LIVENESS_LEVEL,
               "live": live, "score": LIVE_SCORE if live else SPOOF_SCORE, "threshold": LIVENESS_THRESHOLD,
               "reasons": [] if live else ["passive_score_low"]}
    return sign_summary(summary, signer).as_dict()


@dataclass
class Results:
    """What the process reports, filled by its one thread (passes made, answers read)."""

    samples: list[list] = field(default_factory=list)  # [sent at (epoch s), round trip ms, kind index, as expected]
    unanswered: list[list] = field(default_factory=list)  # [sent at, kind index]
    reasons: dict[str, int] = field(default_factory=dict)
    events_sent: int = 0


@dataclass(frozen=True)
class _Asked:
    request_id: str
    kind: str
    sent_at: float  # epoch seconds
    began: float  # perf_counter, before the request was made


class Door:
    """One simulated door: its identity, keys and TLS connection, and its one open pass."""

    def __init__(self, site: Site, name: str, mix: Mix, probes: dict[str, list[str]], seed: int, results: Results,
                 network: SharedLoop):
        keys = site.device_keys(name)
        self.name, self.mix, self.probes, self.results = name, mix, probes, results
        self.matcher = site.directory.get(MATCHER_NODE)
        self.sealer = Sealer(keys)
        self.opener = Opener(keys, site.directory.matchers(), guard=ReplayGuard(not_before=time.time()))
        self.signer = Ed25519Signer(keys.signing.private_bytes_raw(), key_id=name)
        self.signing_key = keys.signing
        self.random = random.Random(seed)
        self.acks = 0
        self.request_topic = topics.device_topic(name, topics.REQUEST)
        self.event_topic = topics.device_topic(name, topics.EVENT)
        self.decision_topic = topics.device_topic(name, topics.DECISION)
        self.sync_topic = topics.device_topic(name, topics.SYNC)
        self._asked: _Asked | None = None
        self.on_free: Callable[[], None] = lambda: None  # the open pass closed (the scheduler's)
        self.endpoint = MqttEndpoint(site.mqtt(name), on_message=self._on_message,
                                     subscriptions=(self.decision_topic, self.sync_topic), network=network.attach)

    @property
    def busy(self) -> bool:
        return self._asked is not None

    def ask(self, kind: str) -> None:
        """Seal and publish one request (written at once); its answer is timed as it is read."""
        began, sent_at = time.perf_counter(), time.time()
        probes = self.probes[kind]
        request = messages.MatchRequest(messages.new_id(), self.name, "identify",
                                        probes[self.random.randrange(len(probes))], sent_at,
                                        liveness=_evidence(self.signer, live=kind != ATTACK))
        sealed = self.sealer.seal(self.matcher, MessageType.PROBE, request.encode(), *PACK)
        self._asked = _Asked(request.request_id, kind, sent_at, began)
        try:
            self.endpoint.publish(self.request_topic, sealed, response_topic=self.decision_topic,
                                  correlation=request.request_id.encode("ascii"), wait=False)
        except ApplianceError:
            self._give_up()

    def overdue(self, now: float) -> None:
        """The open pass is unanswered after ``ANSWER_TIMEOUT_S`` (``now``: perf_counter)."""
        asked = self._asked
        if asked is not None and now - asked.began > ANSWER_TIMEOUT_S:
            self._give_up()

    def _give_up(self) -> None:
        asked, self._asked = self._asked, None
        if asked is not None:
            self.results.unanswered.append([asked.sent_at, KINDS.index(asked.kind)])
            self.on_free()

    def _on_message(self, incoming: Incoming) -> None:
        """An answer (timed now) or an outbox acknowledgement, read by the process's one thread."""
        arrived = time.perf_counter()
        if incoming.topic == self.sync_topic:
            self._acknowledged(incoming)
            return
        try:
            inbound = open_on_topic(self.opener, incoming.topic, incoming.payload, expect=MessageType.DECISION)
            decision = messages.decode(inbound.payload, messages.Decision)
        except ApplianceError:  # never an answer: the pass stays open until it times out
            return
        asked = self._asked
        if asked is None or asked.request_id != decision.request_id:
            return  # late (already counted unanswered) or not ours
        self._asked = None
        right = (decision.accepted, decision.reason) == EXPECTED[asked.kind]
        self.results.samples.append([asked.sent_at, (arrived - asked.began) * 1000, KINDS.index(asked.kind), right])
        self.results.reasons[decision.reason] = self.results.reasons.get(decision.reason, 0) + 1
        self.on_free()

    def _acknowledged(self, incoming: Incoming) -> None:
        try:
            inbound = open_on_topic(self.opener, incoming.topic, incoming.payload)
            ack = messages.decode(inbound.payload, messages.OutboxAck)
        except Exception:  # noqa: BLE001 - what does not open (or is a notice) acknowledges nothing
            return
        self.acks += len(ack.ids)

    def catch_up(self) -> int:
        """The outbox of a door back online: events sealed while it was offline, each signed,
        sent together as the outbox pump sends them (``protocol.bundles``)."""
        sealed_at = time.time() - OFFLINE_S
        envelopes = []
        for index in range(CATCH_UP_EVENTS):
            event = messages.Event(messages.new_id(), self.name, "door_held_open", sealed_at + index,
                                   {"seconds": 12})
            event = replace(event, signature=device_reports.sign(self.signing_key, event.document()))
            envelopes.append(self.sealer.seal(self.matcher, MessageType.EVENT, event.encode(), now=sealed_at))
        self.endpoint.publish(self.event_topic, bundles.pack(envelopes), wait=False)  # paho resends until the PUBACK
        return CATCH_UP_EVENTS


def probe_pool(mix: Mix, seed: int) -> dict[str, list[str]]:
    """``PROBE_POOL`` packed probes for each kind of pass that asks (an attack shows an enrolled face)."""
    numbers = np.random.default_rng(seed)
    return {kind: [messages.MatchRequest.pack_vector(mix.probe(kind, numbers)) for _ in range(PROBE_POOL)]
            for kind in (ENROLLED, STRANGER, ATTACK)}


def _schedule(doors: list[Door], network: SharedLoop, rate: float, start_at: float, end_at: float,
              results: Results) -> None:
    """Every door's passes at its pace, on the thread that also does the doors' I/O: a door is not
    in step with the others (a random phase within its period), and a door whose pass is still
    open is put back only when it closes (answered or overdue), at its next slot or at once if
    that has passed."""
    period = 1.0 / rate
    phases = [door.random.random() * period for door in doors]
    passes = [0] * len(doors)
    queue = [(start_at + phase, index) for index, phase in enumerate(phases)]
    heapq.heapify(queue)
    freed: deque[int] = deque()
    for index, door in enumerate(doors):
        door.on_free = functools.partial(freed.append, index)
    checked = polled = time.perf_counter()
    while queue or any(door.busy for door in doors) or freed:
        while freed:
            index = freed.popleft()
            heapq.heappush(queue, (start_at + phases[index] + passes[index] * period, index))
        if time.perf_counter() - checked >= CHECK_S:
            checked = time.perf_counter()
            for door in doors:
                door.overdue(checked)
        now = time.time()
        if not queue or queue[0][0] > now:
            network.poll(min(queue[0][0] - now, CHECK_S) if queue else CHECK_S)
            polled = time.perf_counter()
            continue
        if time.perf_counter() - polled >= READ_EVERY_S:
            network.poll(0.0)
            polled = time.perf_counter()
        at, index = heapq.heappop(queue)
        if at >= end_at:
            continue  # this door's run is over (a pass due before the end is made, late or not)
        door = doors[index]
        passes[index] += 1
        kind = door.mix.pick(door.random)
        if kind == CATCH_UP:
            sent = door.catch_up()
            results.events_sent += sent
            heapq.heappush(queue, (start_at + phases[index] + passes[index] * period, index))
        else:
            door.ask(kind)


def _warm_up(doors: list[Door], network: SharedLoop) -> None:
    """One pass per door before the start, each answered as its kind must be (else no run)."""
    for door in doors:
        door.ask(ENROLLED)
    if not network.run_until(lambda: not any(door.busy for door in doors), WARM_UP_TIMEOUT_S):
        raise SystemExit(f"warm-up passes unanswered within {WARM_UP_TIMEOUT_S:g} s")
    if any(not sample[3] for door in doors for sample in door.results.samples):
        raise SystemExit(f"warm-up answers other than a match: {doors[0].results.reasons}")


def run(spec: dict) -> dict:
    site = Site(Path(spec["folder"]), port=int(spec["port"]))
    mix = Mix.from_spec(spec["mix"])
    network = SharedLoop()
    probes = probe_pool(mix, spec["seed"])
    doors = [Door(site, name, mix, probes, spec["seed"] + index, Results(), network)
             for index, name in enumerate(spec["names"])]
    for door in doors:
        door.endpoint.connect(wait=False)
    if not network.run_until(lambda: all(door.endpoint.connected.is_set() for door in doors), CONNECT_TIMEOUT_S):
        raise SystemExit(f"doors not connected within {CONNECT_TIMEOUT_S:g} s")
    start_at = spec["start_at"]
    _warm_up(doors, network)
    # as a door's own process does once built (``appliance edge``): this function is the door
    # process's whole run (``main``), so its start-up heap stays out of every full collection
    frozen = heap.settle()
    network.serve(start_at - time.time())
    cpu_before = cpu_seconds()
    results = Results()  # the warm-up passes are not the run's: each door's own results stay behind
    for door in doors:
        door.results = results
    _schedule(doors, network, float(spec["rate_per_door"]), start_at, start_at + spec["seconds"], results)
    cpu = cpu_seconds() - cpu_before
    network.serve(spec.get("ack_grace_s", 1.0))  # the last acknowledgements are on their way
    acks = sum(door.acks for door in doors)
    for door in doors:
        door.endpoint.close(announce_offline=False)
    return {"samples": results.samples, "unanswered": results.unanswered, "reasons": results.reasons,
            "events_sent": results.events_sent, "events_acknowledged": acks, "cpu_s": cpu, "frozen": frozen}


def main(argv: list[str]) -> int:
    json.dump(run(json.loads(argv[0])), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

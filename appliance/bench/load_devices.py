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
signed by the door, which the matcher records once and acknowledges on the sync topic.

It prints one JSON object: every request's send time, round trip and whether the answer was
the one its kind expects; events sent and acknowledged; this process's CPU seconds.
"""
from __future__ import annotations

import json
import random
import sys
import threading
import time
from pathlib import Path

from appliance.bench.device_load import cpu_seconds, sleep_until
from appliance.bench.load_mix import ATTACK, CATCH_UP, ENROLLED, KINDS, STRANGER, Mix

ANSWER_TIMEOUT_S = 5.0
ATTEMPTS = 1  # a lost answer is an error of the run, never hidden by a retry
CATCH_UP_EVENTS = 20  # one outbox window's worth of events after a short outage
OFFLINE_S = 600.0  # how long ago the catch-up events were sealed (the door was offline)
LIVE_SCORE, SPOOF_SCORE, LIVENESS_THRESHOLD = 0.93, 0.08, 0.5
LIVENESS_LEVEL = "passive"


def _evidence(signer, live: bool) -> dict:
    """The door's signed liveness summary, as the edge sends it (``edge.door_pass``)."""
    from appliance.liveness.evidence import sign_summary

    now = time.time()
    summary = {"started_at": now - 0.3, "decided_at": now, "calibration": "", "level": LIVENESS_LEVEL,
               "live": live, "score": LIVE_SCORE if live else SPOOF_SCORE, "threshold": LIVENESS_THRESHOLD,
               "reasons": [] if live else ["passive_score_low"]}
    return sign_summary(summary, signer).as_dict()


class Door:
    """One simulated door: its link to the matcher and what it needs to make each kind of pass."""

    def __init__(self, site, name: str, mix: Mix, seed: int):
        from appliance.edge.link import MatcherLink
        from appliance.liveness.evidence import Ed25519Signer

        keys = site.device_keys(name)
        self.name, self.mix = name, mix
        self.link = MatcherLink(name, site.mqtt(name), keys, site.directory)
        self.signer = Ed25519Signer(keys.signing.private_bytes_raw(), key_id=name)
        self.signing_key = keys.signing
        self.random = random.Random(seed)
        self.acks = 0
        self.link.on_sync = self._acknowledged

    def _acknowledged(self, incoming) -> None:
        from appliance.protocol import messages
        from appliance.protocol.inbound import open_on_topic

        try:
            inbound = open_on_topic(self.link.opener, incoming.topic, incoming.payload)
            ack = messages.decode(inbound.payload, messages.OutboxAck)
        except Exception:  # noqa: BLE001 - what does not open (or is a notice) acknowledges nothing
            return
        self.acks += len(ack.ids)

    def request(self, kind: str) -> tuple[bool, str]:
        """Ask once; True when the answer is the one this kind of pass must get."""
        from appliance.bench.probes import PACK
        from appliance.protocol import messages

        vector = self.mix.probe(kind, self.random)
        request = messages.MatchRequest(messages.new_id(), self.name, "identify",
                                        messages.MatchRequest.pack_vector(vector), time.time(),
                                        liveness=_evidence(self.signer, live=kind != ATTACK))
        decision = self.link.request(request, PACK, timeout=ANSWER_TIMEOUT_S, attempts=ATTEMPTS)
        expected = {ENROLLED: (True, messages.Reason.MATCH), STRANGER: (False, messages.Reason.NO_MATCH),
                    ATTACK: (False, messages.Reason.LIVENESS_FAILED)}[kind]
        return (decision.accepted, decision.reason) == expected, decision.reason

    def catch_up(self) -> int:
        """The outbox of a door back online: events sealed while it was offline, each signed."""
        from appliance.protocol import messages, topics
        from appliance.security import device_reports
        from appliance.security.envelope import MessageType

        sealed_at = time.time() - OFFLINE_S
        topic = topics.device_topic(self.name, topics.EVENT)
        for index in range(CATCH_UP_EVENTS):
            event = messages.Event(messages.new_id(), self.name, "door_held_open", sealed_at + index,
                                   {"seconds": 12})
            event = messages.Event(event.event_id, event.device_id, event.kind, event.at, event.details,
                                   device_reports.sign(self.signing_key, event.document()))
            sealed = self.link.sealer.seal(self.link.matcher, MessageType.EVENT, event.encode(), now=sealed_at)
            self.link.endpoint.publish(topic, sealed)
        return CATCH_UP_EVENTS


def run(spec: dict) -> dict:
    from appliance.site import Site

    site = Site(Path(spec["folder"]), port=int(spec["port"]))
    mix = Mix.from_spec(spec["mix"])
    doors = [Door(site, name, mix, spec["seed"] + index) for index, name in enumerate(spec["names"])]
    for door in doors:
        door.link.connect()
    start_at, end_at = spec["start_at"], spec["start_at"] + spec["seconds"]
    samples: list[list] = []  # [sent at (epoch s), round trip ms, kind index, answer as expected]
    unanswered: list[list] = []  # [sent at, kind index]
    reasons: dict[str, int] = {}
    events = [0]
    lock = threading.Lock()

    rate = float(spec["rate_per_door"])

    def door_loop(door: Door, phase: float) -> None:
        index = 0
        while time.time() < end_at:
            # at the door's pace; a late answer delays the next pass, as at a real door
            sleep_until(start_at + phase + index / rate)
            index += 1
            now = time.time()
            if now >= end_at:
                return
            kind = door.mix.pick(door.random)
            if kind == CATCH_UP:
                sent = door.catch_up()
                with lock:
                    events[0] += sent
                continue
            begin = time.perf_counter()
            try:
                right, reason = door.request(kind)
            except Exception:  # noqa: BLE001 - unanswered (or refused): an error of the run
                with lock:
                    unanswered.append([now, KINDS.index(kind)])
                continue
            with lock:
                samples.append([now, (time.perf_counter() - begin) * 1000, KINDS.index(kind), right])
                reasons[reason] = reasons.get(reason, 0) + 1

    mix.probe(ENROLLED, random.Random(0))  # the gallery, made once before the doors start
    # doors are not in step: each starts at a random point of its period
    threads = [threading.Thread(target=door_loop, args=(door, door.random.random() / rate), name=door.name)
               for door in doors]
    sleep_until(start_at)
    cpu_before = cpu_seconds()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cpu = cpu_seconds() - cpu_before
    time.sleep(spec.get("ack_grace_s", 1.0))  # the last acknowledgements are on their way
    acks = sum(door.acks for door in doors)
    for door in doors:
        door.link.close()
    return {"samples": samples, "unanswered": unanswered, "reasons": reasons, "events_sent": events[0],
            "events_acknowledged": acks, "cpu_s": cpu}


def main(argv: list[str]) -> int:
    json.dump(run(json.loads(argv[0])), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

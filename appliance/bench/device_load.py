"""Simulated doors for ``bench matcher``, each mode in its own process so that the clients'
TLS, envelope and MQTT work does not share the matcher's interpreter (and GIL).

    python -m appliance.bench.device_load SITE PORT NAMES PER_DEVICE
        every device asks PER_DEVICE times back to back (throughput)
    python -m appliance.bench.device_load steady SITE PORT NAMES RATE SECONDS START
        every device asks RATE times a second from the epoch time START for SECONDS, one
        attempt each (a legitimate door at a steady pace): each request's send time and
        round trip, and the send times of those never answered
    python -m appliance.bench.device_load flood SITE PORT NAME RATE SECONDS START
        one provisioned device floods its own request topic at RATE messages a second from
        START for SECONDS: random junk, replays of one genuine envelope and fresh, validly
        sealed requests, through its own hand-made MQTT client (``bench.raw_mqtt``); what it
        sent, and when it began and ended

Each prints one JSON object on stdout.
"""
from __future__ import annotations

import json
import os
import random
import resource
import sys
import threading
import time
from pathlib import Path

JUNK, REPLAY, FRESH = "junk", "replay", "fresh"
FLOOD_MIX = ((JUNK, 0.45), (REPLAY, 0.45), (FRESH, 0.10))  # a compromised door: mostly cheap garbage
JUNK_BYTES = (1, 2000)
STEADY_ATTEMPTS = 1  # a lost answer is counted as unanswered, never hidden by a retry
STEADY_TIMEOUT_S = 5.0
SEED = 11
FLOOD_SLICE_S = 0.001  # the flooder's pacing step (it reads and pings meanwhile)


def _site(folder: str, port: str):
    from appliance.site import Site

    return Site(Path(folder), port=int(port))


def _links(site, names: list[str]):
    from appliance.edge.link import MatcherLink

    links = []
    for name in names:
        link = MatcherLink(name, site.mqtt(name), site.device_keys(name), site.directory)
        link.connect()
        links.append(link)
    return links


def burst(argv: list[str]) -> dict:
    from appliance.bench.probes import PACK, probe, random_templates

    site, names, per_device = _site(argv[0], argv[1]), argv[2].split(","), int(argv[3])
    links = _links(site, names)
    probes = random_templates(per_device, SEED)
    samples: list[float] = []
    failures = 0
    lock = threading.Lock()

    def device_loop(link) -> None:
        nonlocal failures
        for vector in probes:
            start = time.perf_counter()
            try:
                link.request(probe(link.device_id, vector), PACK, timeout=10.0)
            except Exception:  # a lost or refused answer is counted and reported, not raised
                with lock:
                    failures += 1
                continue
            with lock:
                samples.append((time.perf_counter() - start) * 1000)

    threads = [threading.Thread(target=device_loop, args=(link,)) for link in links]
    start_all = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start_all
    for link in links:
        link.close()
    return {"samples_ms": samples, "failures": failures, "elapsed_s": elapsed}


def cpu_seconds() -> float:
    """CPU seconds this process used (user + system): its share of the shared machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def sleep_until(epoch: float) -> None:
    delay = epoch - time.time()
    if delay > 0:
        time.sleep(delay)


def steady(argv: list[str]) -> dict:
    """Every device on its own thread asks at ``rate`` per second; a late answer delays the
    next request (as at a door), so the schedule is kept only while the matcher keeps up."""
    from appliance.bench.probes import PACK, probe, random_templates

    site, names = _site(argv[0], argv[1]), argv[2].split(",")
    rate, seconds, start_at = float(argv[3]), float(argv[4]), float(argv[5])
    links = _links(site, names)
    probes = random_templates(max(1, int(rate * seconds) + 1), SEED)
    samples: list[tuple[float, float]] = []  # (sent at, epoch; round trip, ms)
    unanswered: list[float] = []  # sent at
    lock = threading.Lock()

    def device_loop(link, phase: float) -> None:
        index = 0
        while time.time() < start_at + seconds:
            sleep_until(start_at + phase + index / rate)
            vector = probes[index % len(probes)]
            index += 1
            sent_at, begin = time.time(), time.perf_counter()
            try:
                link.request(probe(link.device_id, vector), PACK, timeout=STEADY_TIMEOUT_S,
                             attempts=STEADY_ATTEMPTS)
            except Exception:  # a lost or refused answer is counted and reported, not raised
                with lock:
                    unanswered.append(sent_at)
                continue
            with lock:
                samples.append((sent_at, (time.perf_counter() - begin) * 1000))

    # doors are not in step: their schedules are spread evenly over one period
    threads = [threading.Thread(target=device_loop, args=(link, index / (rate * len(links))))
               for index, link in enumerate(links)]
    sleep_until(start_at)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for link in links:
        link.close()
    return {"samples": samples, "unanswered": unanswered, "cpu_s": cpu_seconds()}


def flood(argv: list[str]) -> dict:
    """Paced in slices of a millisecond: ``rate`` messages a second, each slice's in one write
    of hand-made PUBLISH packets (``bench.raw_mqtt``: an attacker's client, whose CPU is on
    another machine on a site, costs the shared CPUs as little as it can)."""
    from appliance.bench.probes import PACK, probe, random_templates
    from appliance.bench.raw_mqtt import RawPublisher
    from appliance.protocol import topics
    from appliance.security.envelope import MessageType, Sealer

    site, name = _site(argv[0], argv[1]), argv[2]
    rate, seconds, start_at = float(argv[3]), float(argv[4]), float(argv[5])
    random.seed(SEED)
    sealer, matcher = Sealer(site.device_keys(name)), site.directory.get("matcher")
    vectors = random_templates(64, SEED + 1)

    def fresh() -> bytes:
        vector = vectors[random.randrange(len(vectors))]
        return sealer.seal(matcher, MessageType.PROBE, probe(name, vector).encode(), *PACK)

    topic = topics.device_topic(name, topics.REQUEST)
    replay = RawPublisher.publish_packet(topic, fresh())  # one genuine envelope, sent again and again
    kinds, weights = zip(*FLOOD_MIX)
    sent = {kind: 0 for kind in kinds}
    publisher = RawPublisher(site.mqtt(name))
    publisher.idle_until(start_at)
    begin = time.time()
    try:
        while (now := time.time()) < start_at + seconds:
            due = int((now - begin) * rate) - sum(sent.values())
            if due <= 0:
                publisher.idle(FLOOD_SLICE_S)  # reads what the broker sends, keeps the connection alive
                continue
            packets = []
            for kind in random.choices(kinds, weights, k=due):
                packets.append(replay if kind == REPLAY else RawPublisher.publish_packet(
                    topic, os.urandom(random.randint(*JUNK_BYTES)) if kind == JUNK else fresh()))
                sent[kind] += 1
            publisher.send(packets)
    finally:
        end = time.time()
        publisher.close()
    return {"sent": sent, "began": begin, "ended": end, "cpu_s": cpu_seconds()}


MODES = {"steady": steady, "flood": flood}


def main(argv: list[str]) -> int:
    mode = MODES.get(argv[0]) if argv else None
    result = mode(argv[1:]) if mode is not None else burst(argv)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

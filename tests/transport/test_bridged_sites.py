"""Two sites bridged to a centre (docs/deployment.md): three real Mosquitto processes on
loopback, rendered and started by the project's own code - a central broker and two site
brokers, each site's bridge with its own certificate and rules - doors on both sites, and two
matcher replicas in processes of their own on the centre's shared subscription.

Under a steady stream of requests one replica is SIGKILLed: the doors' own retries carry the
requests it held to the other, every request gets exactly one decision (an auditor on the
central broker sees every decision published, by request id), and none is lost. Then the
central broker goes down and comes back: the events the doors sent meanwhile wait in their
site broker's bridge queue - through a restart of site A's broker too - and all arrive.
"""
from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from appliance.broker.bridge import BridgeSettings, provision_bridge
from appliance.broker.process import ManagedBroker
from appliance.capture.images import read_image
from appliance.edge.link import MatcherLink
from appliance.errors import ApplianceError
from appliance.protocol import messages, topics
from appliance.security.envelope import MessageType
from appliance.site import Site
from appliance.transport.mqtt import Incoming, MqttEndpoint, settings_for

import bridgekit
from polling import wait_for
from sitekit import passing_image

PACK = ("w600k-mbf", "1.0.0")
HOST = "127.0.0.1"
SITES = {"site-a": ("door-a", "door-a2"), "site-b": ("door-b", "door-b2")}
MATCHERS = ("matcher-1", "matcher-2")
LOAD_S = 6.0  # the steady stream of requests
# each door's pace: under the matcher's per-device budget (10 requests/s per replica, Limits),
# which the one replica left after the kill must still grant every door
DOOR_RATE_PER_S = 8.0
KILL_AFTER_S = 2.0  # matcher-1 is SIGKILLed this far into it
EVENTS_PER_DOOR = 25  # sent while the central broker is down
SPARE_BRIDGE = "bridge-spare"
BRIDGE_UP_S = 15.0  # a bridge (re)connects within its back-off (1..2 s here) plus a TLS handshake
SUBACK_WAIT_S = 0.3  # a witness's subscription is sent after its CONNACK; the SUBACK follows


@dataclass
class Topology:
    central: Site  # the transport tests' site: central broker, PKI, directory, stores
    sites: dict[str, ManagedBroker]
    links: dict[str, MatcherLink] = field(default_factory=dict)

    def site_of(self, door: str) -> str:
        return next(name for name, doors in SITES.items() if door in doors)


def bridge_name(site: str) -> str:
    return f"bridge-{site}"


def bridges_connected(central_broker: ManagedBroker, since: int) -> bool:
    log = (central_broker.folder / "broker" / "mosquitto.log").read_text(errors="replace")[since:]
    return all(f" as {bridge_name(site)} " in log for site in SITES)


def log_size(broker: ManagedBroker) -> int:
    path = broker.folder / "broker" / "mosquitto.log"
    return len(path.read_text(errors="replace")) if path.exists() else 0


@pytest.fixture(scope="module")
def topology(site, tmp_path_factory):
    pki = site.broker.pki
    site.provision(tuple(d for doors in SITES.values() for d in doors), matchers=MATCHERS, auditors=("auditor-1",))
    for name, doors in SITES.items():
        provision_bridge(pki, bridge_name(name), doors)
    provision_bridge(pki, SPARE_BRIDGE, ("door-a2",))  # on no site broker: the rules' own test
    since = log_size(site.broker)
    site.broker.restart()  # the central broker reads the bridges' rules at its start
    sites = {name: ManagedBroker(tmp_path_factory.mktemp(name), pki=pki,
                                 bridge=BridgeSettings(bridge_name(name), HOST, site.broker.port,
                                                       restart_base_s=1, restart_cap_s=2))
             for name in SITES}
    world = Topology(site, sites)
    try:
        for broker in sites.values():
            broker.start()
        assert wait_for(lambda: bridges_connected(site.broker, since), timeout=BRIDGE_UP_S)
        for name, doors in SITES.items():
            for door in doors:
                link = MatcherLink(door, settings_for(pki, door, HOST, sites[name].port, reconnect_max_s=1),
                                   site.device_keys(door), site.directory)
                link.connect()
                world.links[door] = link
        yield world
    finally:
        for link in world.links.values():
            link.close()
        for broker in sites.values():
            broker.stop()


class Witness:
    """An auditor on the central broker: every message published there on ``kind`` topics."""

    def __init__(self, central: Site, kind: str, session_expiry_s: int = 0):
        self.seen: list[Incoming] = []
        self.endpoint = MqttEndpoint(settings_for(central.broker.pki, "auditor-1", HOST, central.broker.port,
                                                  session_expiry_s=session_expiry_s, reconnect_max_s=1),
                                     on_message=self.seen.append, subscriptions=(topics.all_devices(kind),))

    def __enter__(self) -> "Witness":
        self.endpoint.connect()
        time.sleep(SUBACK_WAIT_S)
        return self

    def __exit__(self, *exc) -> None:
        self.endpoint.close()


def genuine_vector(pipeline, faces) -> str:
    image = passing_image(pipeline, faces / "celeba-dev" / "id07229", skip=5)
    return messages.MatchRequest.pack_vector(pipeline.template(read_image(image))[1].vector)


def test_the_central_broker_grants_a_bridge_only_its_own_doors_topics(topology):
    pki = topology.central.broker.pki
    bridge = MqttEndpoint(settings_for(pki, SPARE_BRIDGE, HOST, topology.central.broker.port))
    bridge.connect()
    try:
        bridge.publish(topics.device_topic("door-a2", topics.TELEMETRY), b"x")  # its own door, upwards: granted
        for topic in (topics.device_topic("door-a", topics.REQUEST),  # a door it does not carry
                      topics.device_topic("door-a2", topics.DECISION),  # downwards is the matchers' to send
                      topics.ENROLLMENT_EVENTS):
            with pytest.raises(ApplianceError):
                bridge.publish(topic, b"x")
    finally:
        bridge.close()


def test_a_replica_killed_mid_load_loses_no_request_and_answers_none_twice(topology, pipeline, faces, tmp_path):
    central = topology.central
    packed = genuine_vector(pipeline, faces)
    stats = {name: tmp_path / f"{name}.json" for name in MATCHERS}
    replicas = {}
    answered: dict[str, list[tuple[str, messages.Decision, float]]] = defaultdict(list)
    failed: list[str] = []
    stop = threading.Event()

    def door(name: str) -> None:
        link, next_at = topology.links[name], time.monotonic()
        while not stop.is_set():
            next_at += 1 / DOOR_RATE_PER_S
            time.sleep(max(0.0, next_at - time.monotonic()))
            request = messages.MatchRequest(messages.new_id(), name, "identify", packed, time.time())
            started = time.perf_counter()
            try:
                decision = link.request(request, PACK)  # the door's own retry rules
            except ApplianceError as exc:
                failed.append(f"{name} {request.request_id}: {exc}")
                continue
            answered[name].append((request.request_id, decision, time.perf_counter() - started))

    try:
        for name in MATCHERS:
            replicas[name] = bridgekit.spawn(central.folder, name, HOST, central.broker.port, pipeline.threshold,
                                             stats[name])
        with Witness(central, topics.DECISION) as witness:
            doors = [threading.Thread(target=door, args=(name,)) for name in topology.links]
            for thread in doors:
                thread.start()
            time.sleep(KILL_AFTER_S)
            before_kill = bridgekit.read_stats(stats["matcher-1"])
            os.kill(replicas["matcher-1"].pid, signal.SIGKILL)
            killed_at = time.perf_counter()
            time.sleep(LOAD_S - KILL_AFTER_S)
            stop.set()
            for thread in doors:
                thread.join()
            requests = {rid: decision for per_door in answered.values() for rid, decision, _ in per_door}
            assert wait_for(lambda: {m.correlation.decode() for m in witness.seen} >= set(requests), timeout=5)
            decisions_of = defaultdict(set)
            for message in witness.seen:
                decisions_of[message.correlation.decode()].add(message.payload)
    finally:
        stop.set()
        for process in replicas.values():
            bridgekit.stop(process)
    survivor = bridgekit.read_stats(stats["matcher-2"])
    latencies = sorted(s for per_door in answered.values() for _, _, s in per_door)
    retries = sum(link.stats["timeouts"] for link in topology.links.values())
    print(f"\nbridged: {len(requests)} requests in {LOAD_S:.0f} s from {len(answered)} doors on 2 sites; "
          f"matcher-1 had decided {before_kill.get('accepted', 0)} when killed, matcher-2 decided "
          f"{survivor.get('accepted', 0)} ({survivor.get('retries', 0)} retries answered from its cache); "
          f"door retries {retries}; p50 {statistics.median(latencies) * 1000:.1f} ms, "
          f"p95 {latencies[int(len(latencies) * 0.95)] * 1000:.1f} ms, "
          f"max {latencies[-1] * 1000:.0f} ms; {time.perf_counter() - killed_at:.1f} s after the kill")
    assert not failed, failed[:3]  # no request lost: every one answered within the door's retries
    assert {topology.site_of(d) for d in answered} == set(SITES) and all(answered[d] for d in topology.links)
    assert all(decision.accepted and decision.display_name == "A** L***" for decision in requests.values())
    assert len(requests) == sum(len(per_door) for per_door in answered.values())  # request ids are unique
    twice = {rid: len(sealed) for rid, sealed in decisions_of.items() if len(sealed) > 1}
    assert not twice, twice  # never two different decisions for one request
    assert before_kill.get("accepted", 0) > 0 and survivor.get("accepted", 0) > 0  # both served before the kill
    assert retries <= len(topology.links)  # only the requests in flight at the killed replica: one per door at most
    assert all(link.stats["rejected_answers"] == 0 for link in topology.links.values())


def test_events_queued_while_the_centre_is_down_survive_a_site_broker_restart_and_all_arrive(topology):
    central = topology.central
    with Witness(central, topics.EVENT, session_expiry_s=600) as witness:
        central.broker.stop()  # the link of both bridges is cut; the sites keep their doors
        for door, link in topology.links.items():
            for _ in range(EVENTS_PER_DOOR):
                event = messages.Event(messages.new_id(), door, "door_state", time.time())
                link.send(topics.EVENT, event, MessageType.EVENT)  # acknowledged by the site broker
        topology.sites["site-a"].restart()  # what site A holds for its bridge survives its own restart too
        since = log_size(central.broker)
        central.broker.start()
        expected = EVENTS_PER_DOOR * len(topology.links)
        started = time.perf_counter()
        assert wait_for(lambda: len({m.payload for m in witness.seen}) >= expected, timeout=BRIDGE_UP_S)
        print(f"\nbridged: {expected} events sent during the outage arrived "
              f"{time.perf_counter() - started:.1f} s after the central broker came back")
        assert bridges_connected(central.broker, since)
        per_door = defaultdict(set)
        for message in witness.seen:
            per_door[topics.device_of(message.topic)].add(message.payload)
        assert {door: len(payloads) for door, payloads in per_door.items()} == \
            {door: EVENTS_PER_DOOR for door in topology.links}

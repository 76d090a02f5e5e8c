"""``appliance bench sync``: enrollment sync and outbox figures on a real broker and real
SQLCipher stores (synthetic unit-length templates of the default pack's size).

* sync of N enrollments to a fresh device (snapshot) and catch-up after M changes;
* E events queued offline (one durable commit each), surviving a restart of the device's
  stores, then drained to the matcher exactly once (counted by id).
"""
from __future__ import annotations

import json
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from appliance.config import OfflineConfig, load_config
from appliance.protocol import messages, topics

PACK = ("w600k-mbf", "1.0.0")
DIMENSION = 512


def _site(folder: Path, people: int):
    from appliance.matcher.eligibility import LOCAL_MATCH_SCOPE
    from appliance.security.consent import ENROLL_SCOPE, AgeBand, Alternative, ConsentRecord, Person, new_subject_id
    from appliance.security.roles import Principal, Role
    from appliance.site import Site
    from appliance.vision.templates import Template

    site = Site(folder)
    site.provision(("door-bench",), matchers=("matcher-1",))
    data = site.protected_data(load_config())
    operator = Principal("bench", Role.OPERATOR)
    rng = np.random.default_rng(0)
    for store in data.stores.values():  # setup only: the measured parts run with synchronous=FULL
        store.set_synchronous("OFF")

    def enroll(count: int) -> list[str]:
        subjects = []
        for index in range(count):
            subject = new_subject_id()
            data.register_person(operator, Person(subject, f"Bench Person{index}", AgeBand.ADULT, Alternative.CARD,
                                                  card_no=f"B-{index}"))
            for scope in (ENROLL_SCOPE, LOCAL_MATCH_SCOPE):
                data.record_consent(operator, ConsentRecord(subject, scope, "v1", time.time(), "bench"))
            vector = rng.normal(size=DIMENSION).astype(np.float32)
            data.enroll(operator, subject, Template(vector / np.linalg.norm(vector), *PACK), np.zeros(1, np.float32))
            subjects.append(subject)
        return subjects

    enroll(people)
    site.broker.start()
    return site, data, enroll


def _matcher(site, data):
    from appliance.matcher.app import compose
    from appliance.matcher.loaded import LoadedGallery
    from appliance.matcher.sync_store import open_sync_store
    from appliance.matching import Gallery
    from appliance.security.keys import FileKeyProvider
    from appliance.security.roles import Principal, Role
    from appliance.stores.protected import KEYS_DIR, ProtectedData

    own = ProtectedData(site.central, FileKeyProvider(site.central / KEYS_DIR), data.security)
    principal = Principal("matcher-1", Role.OPERATOR)
    gallery = Gallery(*PACK, DIMENSION)
    for row in own.biometric.rows(pack=PACK):
        gallery.upsert(row.subject_id, own.biometric.template(principal, row.subject_id, *PACK, own.vault))
    service = compose("matcher-1", site.mqtt("matcher-1"), own.node, site.directory, LoadedGallery(gallery, {}, {}),
                      0.4, data=own, sync_store=open_sync_store(own, FileKeyProvider(site.central / KEYS_DIR)),
                      snapshot_after=5000)
    service.start()
    return service, own


def run(enrollments: int = 10_000, changes: int = 1_000, events: int = 50_000, progress=print) -> dict:
    from appliance.edge.offline import open_door

    config = OfflineConfig(digest_every_s=3600, outbox_max_events=max(events * 2, 1), outbox_window=500)
    with tempfile.TemporaryDirectory() as tmp:
        progress(f"enrolling {enrollments} synthetic templates ...")
        site, data, enroll = _site(Path(tmp) / "site", enrollments)
        matcher, own = _matcher(site, data)
        results: dict = {"enrollments": enrollments, "changes": changes, "events": events,
                         "machine": f"{platform.machine()}, {platform.processor() or platform.system()}"}
        try:
            progress("fresh device sync ...")
            start = time.perf_counter()
            door = open_door(site, "door-bench", config, 0.4)
            assert door.sync.wait_current(600), "fresh sync did not finish"
            results["fresh_sync_s"] = time.perf_counter() - start
            results["fresh_cached"] = door.cache.count()
            results["fresh_mode"] = "snapshot" if matcher.stats["sync:snapshot"] else "changes"
            door.close()
            progress(f"{changes} changes while the device is offline, then catch-up ...")
            enrolled = sorted(row.subject_id for row in data.biometric.rows())
            deleted = random.Random(1).sample(enrolled, min(changes // 10, len(enrolled)))
            from appliance.security.roles import Principal, Role

            admin = Principal("bench-admin", Role.SECURITY_ADMIN)
            for subject in deleted:
                data.delete_subject(admin, subject)
            enroll(changes - len(deleted))
            start = time.perf_counter()
            door = open_door(site, "door-bench", config, 0.4)
            head = data.biometric.revision
            deadline = time.monotonic() + 600
            while not (door.sync.current.is_set() and door.cache.revision >= head) and time.monotonic() < deadline:
                time.sleep(0.005)
            results["catch_up_s"] = time.perf_counter() - start
            results["catch_up_ok"] = door.cache.revision >= head and not set(deleted) & set(door.cache.subject_ids())
            door.close()
            progress(f"queue {events} events offline ...")
            door = open_door(site, "door-bench", config, 0.4, connect=False)
            start = time.perf_counter()
            sent = []
            for index in range(events):
                event = messages.Event(messages.new_id(), "door-bench", "pass", time.time(), {"n": index})
                door.pump.submit(topics.EVENT, event)
                sent.append(event.event_id)
            results["enqueue_s"] = time.perf_counter() - start
            door.close()
            progress("restart and drain ...")
            start = time.perf_counter()
            door = open_door(site, "door-bench", config, 0.4)
            results["queued_after_restart"] = door.outbox.depth()
            deadline = time.monotonic() + 1800
            while door.outbox.depth() and time.monotonic() < deadline:
                time.sleep(0.05)
            results["drain_s"] = time.perf_counter() - start
            door.close()
            time.sleep(0.5)
            ids = matcher.store.event_ids("door-bench")
            results["recorded"] = len(ids)
            results["recorded_distinct"] = len(set(ids))
            results["lost"] = len(set(sent) - set(ids))
            results["duplicates_seen"] = matcher.stats["events_duplicate"]
        finally:
            matcher.stop()
            own.close()
            data.close()
            site.broker.stop()
    return results


def write_report(results: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    (out / "sync.json").write_text(json.dumps(results, indent=2))
    r = results
    lines = [
        "# Sync and outbox benchmark",
        "",
        f"`appliance bench sync --enrollments {r['enrollments']} --changes {r['changes']} --events {r['events']}` "
        f"on {r['machine']}; real Mosquitto (TLS, localhost), real SQLCipher stores (WAL, synchronous=FULL), "
        f"{DIMENSION}-d templates.",
        "",
        "| measure | value |",
        "|---|---|",
        f"| fresh device: {r['enrollments']} enrollments ({r['fresh_mode']}) | {r['fresh_sync_s']:.1f} s "
        f"({r['fresh_cached'] / max(r['fresh_sync_s'], 1e-9):.0f} templates/s), {r['fresh_cached']} cached |",
        f"| catch-up after {r['changes']} changes (10 % deletions) | {r['catch_up_s']:.2f} s, "
        f"correct: {r['catch_up_ok']} |",
        f"| {r['events']} events queued offline (one durable commit each) | {r['enqueue_s']:.1f} s "
        f"({r['events'] / max(r['enqueue_s'], 1e-9):.0f} events/s) |",
        f"| queued after a restart of the device stores | {r['queued_after_restart']} |",
        f"| drain to the matcher after reconnection | {r['drain_s']:.1f} s "
        f"({r['events'] / max(r['drain_s'], 1e-9):.0f} events/s) |",
        f"| recorded at the matcher / distinct / lost | {r['recorded']} / {r['recorded_distinct']} / {r['lost']} |",
        f"| duplicate deliveries recognised by id | {r['duplicates_seen']} |",
        "",
    ]
    path = out / "sync.md"
    path.write_text("\n".join(lines))
    return path
